"""RecordingState: whether a user's calls are recorded (off by default), and the audit of the
recordings they delete.

The recordings themselves are files Asterisk's MixMonitor writes in the spool (see
`web/recording_service.py` and docs/routing.md); this room keeps only the switch, so that the
FastAGI router, the page and the CLI read and change the same value.
"""

from __future__ import annotations

from base.model import RECORDING_OFF

from .audit import SETTING_CHANGED
from .db import Tx
from .errors import SettingsError
from .store import Event, StateStore, log_changes
from .times import to_text
from .users import Origin, find_user

RECORDING_FIELD = "recording.enabled"
RECORDING_DELETED = "recording_deleted"
RECORDING_FILE_FIELD = "recording.file"


class RecordingForbidden(SettingsError):
    """The tenant's YAML says `call_recording: off`: nothing was written."""


class RecordingState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def allowed(self, tenant_id: str, user_id: str) -> bool:
        """Whether the user's tenant lets its users record calls (`call_recording` in its YAML)."""
        tenant, _ = find_user(self._store.config, tenant_id, user_id)
        return tenant.call_recording != RECORDING_OFF

    def recording(self, tenant_id: str, user_id: str) -> bool:
        """True when the user's calls are recorded: their switch is on (no row is off) and their
        tenant allows recording (a switch left on while it does not records nothing)."""
        if not self.allowed(tenant_id, user_id):
            return False
        return bool(self._store.read(lambda tx: _load(tx, tenant_id, user_id)))

    def set_recording(self, tenant_id: str, user_id: str, enabled: bool, *, actor: str, source: str) -> bool:
        """Turns recording on or off (audited when it changes); the new value."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        if not isinstance(enabled, bool):
            raise SettingsError(f"recording is on or off (true or false), not {enabled!r}")
        if enabled and not self.allowed(tenant_id, user_id):
            raise RecordingForbidden(f"tenant {tenant_id} does not allow call recording (call_recording: forbidden)")
        origin = Origin(actor, source)

        def work(tx: Tx) -> list[Event]:
            before = bool(_load(tx, tenant_id, user_id))
            if before == enabled:
                return []
            now = store.now()
            tx.run("DELETE FROM recording_settings WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))
            tx.run("INSERT INTO recording_settings (tenant_id, user_id, enabled, updated_at) VALUES (?, ?, ?, ?)",
                   (tenant_id, user_id, int(enabled), to_text(now)))
            events = [Event(SETTING_CHANGED, RECORDING_FIELD, _text(before), _text(enabled))]
            store.record(tx, now, tenant_id, user_id, origin, events)
            return events

        log_changes(tenant_id, user_id, origin, store.write(work))
        return enabled

    def note_deleted(self, tenant_id: str, user_id: str, recording_id: str, *, actor: str, source: str) -> None:
        """The audit row of a recording the user deleted (the file is removed by the caller)."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        events = [Event(RECORDING_DELETED, RECORDING_FILE_FIELD, recording_id[:200], None)]
        store.write(lambda tx: store.record(tx, store.now(), tenant_id, user_id, origin, events))
        log_changes(tenant_id, user_id, origin, events)


def _load(tx: Tx, tenant_id: str, user_id: str) -> int:
    row = tx.one("SELECT enabled FROM recording_settings WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))
    return int(row[0]) if row else 0


def _text(enabled: bool) -> str:
    return "on" if enabled else "off"
