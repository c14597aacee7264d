"""Imported first by a test module that needs psycopg 3 (the extra vipbx[postgresql]): without
it, the module is skipped, except under CI (CI=true), where `deploy.sh test` installs it and a
skip would hide that it did not."""

from __future__ import annotations

import os

import pytest

try:
    import psycopg  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("psycopg 3 is not installed (the extra vipbx[postgresql])", allow_module_level=True)
