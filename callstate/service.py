"""CallStateService: the one entry to per-user call state.

Every entry point (IVRs, feature codes, the FastAGI router, the CLI, the web page) calls this, so
they cannot disagree. It composes three services that share one database and one audit writer
(`store.py`): `VoicemailState` (voicemail settings, PIN and lockout), `RoutingState` (forwards and
call waiting) and `PresenceState` (activity, end time, note, the end-time timer). A caller that
needs only one concern may hold just that one (`state.routing_state`, ...).

Each change is one short transaction that also writes its audit rows; the Python log gets a line
after the commit. Methods are synchronous and fast (one small transaction); asyncio code calls
them through `callstate.aio.AsyncCallState`, which runs them off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any, Self

from base.model import Config

from . import routing as routing_rules
from . import rows
from .audit import AuditEntry
from .calllog_state import CallLogState
from .contacts_state import ContactsState
from .conference_state import ConferenceState
from .db import Backend, Database, Tx
from .fax_state import FaxState
from .pin import DEFAULT_STEPS, LockoutPolicy, PinCheck, PinStatus
from .presence import Presence
from .presence_state import PresenceState, presence_at
from .recording_state import RecordingState
from .routing import Routing
from .routing_state import RoutingState
from .sms_state import SmsState
from .store import StateStore
from .times import Clock, utc_now
from .users import find_user
from .voicemail import VoicemailSettings
from .voicemail_state import VoicemailState
from .web_accounts import WebAccountState
from .web_logins import WebLoginState


class CallStateService:
    """Each method is the same-named one of `VoicemailState`, `RoutingState` or `PresenceState`
    (see those for arguments and refusals), except `call_state` and `audit`, which span them."""

    def __init__(
        self,
        db: Path | str | Backend,
        config: Config,
        *,
        lockout_attempts: int = 5,
        lockout_minutes: int | Sequence[int] = DEFAULT_STEPS,
        clock: Clock = utc_now,
        busy_timeout: float = 5.0,
    ) -> None:
        # One number: a single timed lock, then held until unlocked.
        steps = (lockout_minutes,) if isinstance(lockout_minutes, int) else tuple(lockout_minutes)
        policy = LockoutPolicy(lockout_attempts, steps)
        # A path is the SQLite file; anything else is a ready backend (see `open_service`), which
        # the service then owns and closes.
        backend: Backend = (Database(Path(db), busy_timeout=busy_timeout)
                            if isinstance(db, (str, PathLike)) else db)
        self.store = StateStore(backend, config, clock)
        self.voicemail_state = VoicemailState(self.store, policy)
        self.routing_state = RoutingState(self.store)
        self.presence_state = PresenceState(self.store)
        # Only the home page (and operators) use these: reached as `service.web_accounts.…`.
        self.web_accounts = WebAccountState(self.store)
        self.sms = SmsState(self.store)  # the Home page's SMS: hourly limit and audit
        self.call_log = CallLogState(self.store)  # the users' calls, from Asterisk's CDRs
        self.fax = FaxState(self.store)
        self.web_logins = WebLoginState(self.store)
        self.contacts = ContactsState(self.store)
        self.recording_state = RecordingState(self.store)  # call recording on/off
        self.conferences = ConferenceState(self.store, policy)  # conference room PINs

    # ------------------------------------------------------------------ life cycle

    @property
    def config(self) -> Config:
        return self.store.config

    @property
    def schema_version(self) -> int:
        return self.store.db.schema_version

    def reload(self, config: Config) -> None:
        """Swap in a new configuration; a call in progress keeps the one it started with."""
        self.store.reload(config)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ voicemail settings, PIN

    def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings:
        return self.voicemail_state.voicemail_settings(tenant_id, user_id)

    def update_voicemail_settings(self, tenant_id: str, user_id: str, *, actor: str, source: str,
                                  **changes: Any) -> VoicemailSettings:
        return self.voicemail_state.update_voicemail_settings(tenant_id, user_id, actor=actor,
                                                              source=source, **changes)

    def pin_status(self, tenant_id: str, user_id: str) -> PinStatus:
        return self.voicemail_state.pin_status(tenant_id, user_id)

    def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str,
                  actor: str = "caller") -> PinCheck:
        return self.voicemail_state.check_pin(tenant_id, user_id, pin, source=source, actor=actor)

    def reset_pin_lockout(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> PinStatus:
        return self.voicemail_state.reset_pin_lockout(tenant_id, user_id, actor=actor, source=source)

    def count_pin_failures(self, tenant_id: str, user_id: str, count: int, *, actor: str,
                           source: str) -> PinStatus:
        return self.voicemail_state.count_failures(tenant_id, user_id, count, actor=actor, source=source)

    def pin_locks(self) -> list[tuple[str, str, PinStatus]]:
        return self.voicemail_state.pin_locks()

    # ------------------------------------------------------------------ forwards, call waiting

    def routing(self, tenant_id: str, user_id: str) -> Routing:
        return self.routing_state.routing(tenant_id, user_id)

    def set_forward(self, tenant_id: str, user_id: str, kind: str, target: str, *, actor: str,
                    source: str, no_answer_seconds: int | None = None) -> Routing:
        return self.routing_state.set_forward(tenant_id, user_id, kind, target, actor=actor,
                                              source=source, no_answer_seconds=no_answer_seconds)

    def reset_routing(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> Routing:
        return self.routing_state.reset_routing(tenant_id, user_id, actor=actor, source=source)

    def set_call_waiting(self, tenant_id: str, user_id: str, enabled: bool, *, actor: str,
                         source: str) -> Routing:
        return self.routing_state.set_call_waiting(tenant_id, user_id, enabled, actor=actor,
                                                   source=source)

    # ------------------------------------------------------------------ presence

    def presence(self, tenant_id: str, user_id: str) -> Presence:
        return self.presence_state.presence(tenant_id, user_id)

    def set_presence(self, tenant_id: str, user_id: str, activity: str, *, actor: str, source: str,
                     until: datetime | None = None, note: str | None = None) -> Presence:
        return self.presence_state.set_presence(tenant_id, user_id, activity, actor=actor,
                                                source=source, until=until, note=note)

    def end_presences(self) -> list[tuple[str, str]]:
        return self.presence_state.end_presences()

    def next_presence_end(self) -> datetime | None:
        return self.presence_state.next_presence_end()

    # ------------------------------------------------------------------ both, for the router

    def call_state(self, tenant_id: str, user_id: str) -> tuple[Routing, Presence]:
        """Forwards, call waiting and presence in one read: what routing a call needs."""
        config = self.store.config
        tenant, user = find_user(config, tenant_id, user_id)

        def work(tx: Tx) -> tuple[dict[str, object], rows.StoredPresence | None]:
            return rows.load_routing(tx, tenant_id, user_id), rows.load_presence(tx, tenant_id, user_id)

        stored_routing, stored_presence = self.store.read(work)
        return (routing_rules.effective(config, user, stored_routing),
                presence_at(tenant, stored_presence, self.store.now))

    # ------------------------------------------------------------------ audit

    def audit(self, tenant_id: str | None = None, user_id: str | None = None,
              limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` audit rows, newest first, optionally of one tenant and/or user."""
        return self.store.audit(tenant_id, user_id, limit)
