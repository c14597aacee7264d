"""`vipbx doctor`: checks a running platform end to end, one line per part (see checks.py)."""

from .checks import ALL, Finding, Platform
from .run import examine

__all__ = ["ALL", "Finding", "Platform", "examine"]
