"""Find or build an Asterisk and run instances of it, each with its own asterisk.conf, by pid."""

from asterisk_host.instance import AsteriskError, AsteriskInstance
from asterisk_host.runtime import AsteriskRuntime, RuntimeUnavailable

__all__ = ["AsteriskError", "AsteriskInstance", "AsteriskRuntime", "RuntimeUnavailable"]
