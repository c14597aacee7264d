"""The call-state service: the one writer of per-user state (voicemail settings, PIN lockout,
forwards, call waiting and presence), with an audit trail; `AsyncCallState` is its view for the
event loop. See docs/callstate.md."""

from __future__ import annotations

from pathlib import Path

from base.paths import Paths

from .aio import AsyncCallState
from .audit import AuditEntry
from .errors import SettingsError, StorageError, UnknownUserError
from .factory import DB_FILE_NAME, open_database, open_service
from .pin import PinCheck, PinStatus
from .presence import Presence
from .routing import KINDS, NONE, VOICEMAIL, Routing, parse_kind
from .service import CallStateService
from .targets import TargetRefused, check_outbound, check_target
from .voicemail import VoicemailSettings, check_press1, parse_value


def default_db_path(home: str | Path | None = None) -> Path:
    """`HOME/state.sqlite3`, HOME being `home`, else $VIPBX_HOME, else the documented default."""
    return Paths.resolve(home).state_db


__all__ = [
    "DB_FILE_NAME",
    "KINDS",
    "NONE",
    "Presence",
    "VOICEMAIL",
    "Routing",
    "TargetRefused",
    "check_outbound",
    "check_target",
    "check_press1",
    "parse_kind",
    "AsyncCallState",
    "AuditEntry",
    "CallStateService",
    "PinCheck",
    "PinStatus",
    "SettingsError",
    "StorageError",
    "UnknownUserError",
    "VoicemailSettings",
    "default_db_path",
    "open_database",
    "open_service",
    "parse_value",
]
