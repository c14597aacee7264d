"""The errors callers of the call-state service handle; none of them names a database driver."""

from __future__ import annotations


class SettingsError(ValueError):
    """A change (or a look-up) was refused; the message is fit to show or speak to the person."""


class UnknownUserError(SettingsError):
    """The tenant or user is not in the current configuration."""


class StorageError(RuntimeError):
    """The state database could not be read or written (e.g. locked for longer than the timeout).

    Wraps the driver's exception, so that entry points do not depend on sqlite3 (or, later, on a
    PostgreSQL driver)."""
