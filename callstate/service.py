"""CallStateService: the one writer of per-user call state.

Every entry point (IVRs, feature codes, the FastAGI router, the CLI, the web page) calls this, so
they cannot disagree. Each change is one short transaction that also writes its audit rows; the
Python log gets a line after the commit. Methods are synchronous and fast (one small transaction);
asyncio callers that must never block can run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any, Self

from base.model import AVAILABLE, Config, Tenant, User

from . import audit as audit_log
from . import rows
from .audit import SETTING_CHANGED, AuditEntry
from .db import Backend, Database, Tx
from .errors import SettingsError
from .pin import (
    PIN_FAILED,
    PIN_LOCKED,
    PIN_OK,
    PIN_REFUSED,
    PIN_UNLOCKED,
    LockoutPolicy,
    PinCheck,
    PinStatus,
    after_failure,
    effective,
    pin_matches,
)
from . import presence as presence_rules
from . import routing as routing_rules
from .presence import Presence
from .routing import CALL_WAITING_FIELD, Routing
from .times import Clock, aware_utc, to_text, utc_now
from .targets import LOOP, TargetRefused
from .users import Origin, find_user
from .voicemail import (
    AUDIT_PREFIX,
    FIELDS,
    VoicemailSettings,
    apply_changes,
    to_audit_text,
)

log = logging.getLogger(__name__)

AUDIT_LIMIT_MAX = 10_000


@dataclass(frozen=True)
class _Event:
    """An audit row about to be written, kept to log the same facts after the commit."""

    event: str
    field: str
    old: str | None
    new: str | None


class CallStateService:
    def __init__(
        self,
        db: Path | str | Backend,
        config: Config,
        *,
        lockout_attempts: int = 5,
        lockout_minutes: int = 15,
        clock: Clock = utc_now,
        busy_timeout: float = 5.0,
    ) -> None:
        self._policy = LockoutPolicy(lockout_attempts, lockout_minutes)
        self._clock = clock
        self._config = config
        # A path is the SQLite file; anything else is a ready backend (see `open_service`), which
        # the service then owns and closes.
        self._db: Backend = (Database(Path(db), busy_timeout=busy_timeout)
                             if isinstance(db, (str, PathLike)) else db)

    # ------------------------------------------------------------------ life cycle

    @property
    def config(self) -> Config:
        return self._config

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    def reload(self, config: Config) -> None:
        """Swap in a new configuration; a call in progress keeps the one it started with."""
        self._config = config  # one reference assignment: atomic for other threads

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        return aware_utc(self._clock())

    # ------------------------------------------------------------------ voicemail settings

    def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings:
        find_user(self._config, tenant_id, user_id)
        return self._db.read(lambda tx: rows.load_voicemail(tx, tenant_id, user_id))

    def update_voicemail_settings(self, tenant_id: str, user_id: str, *, actor: str, source: str,
                                  **changes: Any) -> VoicemailSettings:
        """The settings after `changes`; SettingsError (and nothing written) if any is refused."""
        config = self._config
        tenant, user = find_user(config, tenant_id, user_id)
        origin = Origin(actor, source)
        # Every rule is checked before the write lock is taken; none depends on the stored values.
        apply_changes(config, tenant, user, VoicemailSettings(), changes)

        def work(tx: Tx) -> tuple[VoicemailSettings, list[_Event]]:
            current = rows.load_voicemail(tx, tenant_id, user_id)
            new = apply_changes(config, tenant, user, current, changes)
            events = [_Event(SETTING_CHANGED, AUDIT_PREFIX + name, to_audit_text(getattr(current, name)),
                             to_audit_text(getattr(new, name)))
                      for name in FIELDS if getattr(current, name) != getattr(new, name)]
            if events:
                now = self._now()
                rows.store_voicemail(tx, tenant_id, user_id, new, now)
                self._record(tx, now, tenant_id, user_id, origin, events)
            return new, events

        new, events = self._db.write(work)
        _log_changes(tenant_id, user_id, origin, events)
        return new

    # ------------------------------------------------------------------ PIN and lockout

    def pin_status(self, tenant_id: str, user_id: str) -> PinStatus:
        find_user(self._config, tenant_id, user_id)
        stored = self._db.read(lambda tx: rows.load_pin(tx, tenant_id, user_id))
        return effective(stored, self._now())

    def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str,
                  actor: str = "caller") -> PinCheck:
        """One login attempt against the user's PIN from the configuration.

        While locked the PIN is not even compared. `actor` is who tried (e.g. the calling number).
        An unknown tenant or user raises UnknownUserError: there is no counter to lock.
        """
        _, user = find_user(self._config, tenant_id, user_id)
        origin = Origin(actor, source)
        if not isinstance(pin, str):
            raise SettingsError(f"a PIN is text, not {type(pin).__name__}")

        def work(tx: Tx) -> tuple[PinCheck, list[_Event]]:
            now = self._now()  # inside the lock: the order of attempts is the order of their times
            stored = rows.load_pin(tx, tenant_id, user_id)
            status = effective(stored, now)
            if status.locked_until is not None:
                events = [_Event(PIN_REFUSED, "pin", None, to_text(status.locked_until))]
                self._record(tx, now, tenant_id, user_id, origin, events)
                return PinCheck(False, status), events
            ok = pin_matches(user.pin, pin)
            new = PinStatus() if ok else after_failure(status, now, self._policy)
            events = [_Event(PIN_OK if ok else PIN_FAILED, "pin", str(status.failures), str(new.failures))]
            if new.locked_until is not None:
                events.append(_Event(PIN_LOCKED, "pin", None, to_text(new.locked_until)))
            if new != stored:
                rows.store_pin(tx, tenant_id, user_id, new, now)
            self._record(tx, now, tenant_id, user_id, origin, events)
            return PinCheck(ok, new), events

        result, events = self._db.write(work)
        who = f"{tenant_id}/{user_id} by {origin.actor} via {origin.source}"
        for e in events:
            if e.event == PIN_OK:
                log.info("PIN login ok: %s", who)
            elif e.event == PIN_FAILED:
                log.warning("PIN login failed (%s of %d): %s", e.new, self._policy.attempts, who)
            elif e.event == PIN_LOCKED:
                log.warning("PIN locked until %s after %d failures: %s", e.new, self._policy.attempts, who)
            else:
                log.warning("PIN login refused, locked until %s: %s", e.new, who)
        return result

    def reset_pin_lockout(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> PinStatus:
        """Clears the failure counter and any lock (an operator's "unlock")."""
        find_user(self._config, tenant_id, user_id)
        origin = Origin(actor, source)

        def work(tx: Tx) -> list[_Event]:
            stored = rows.load_pin(tx, tenant_id, user_id)
            if stored == PinStatus():
                return []
            now = self._now()
            events = [_Event(PIN_UNLOCKED, "pin", str(stored.failures), "0")]
            rows.store_pin(tx, tenant_id, user_id, PinStatus(), now)
            self._record(tx, now, tenant_id, user_id, origin, events)
            return events

        if self._db.write(work):
            log.info("PIN counter and lock cleared: %s/%s by %s via %s", tenant_id, user_id,
                     origin.actor, origin.source)
        return PinStatus()

    # ------------------------------------------------------------------ forwards, call waiting

    def routing(self, tenant_id: str, user_id: str) -> Routing:
        """The user's forwards and call waiting (defaults where nothing was changed)."""
        _, user = find_user(self._config, tenant_id, user_id)
        stored = self._db.read(lambda tx: rows.load_routing(tx, tenant_id, user_id))
        return routing_rules.effective(self._config, user, stored)

    def set_forward(self, tenant_id: str, user_id: str, kind: str, target: str, *, actor: str,
                    source: str, no_answer_seconds: int | None = None) -> Routing:
        """Sets one forward: `target` is a number as dialled (national, E.164 or a colleague's
        extension), 'voicemail' or 'none'. TargetRefused (a SettingsError with a `reason`) when the
        number may not be used; nothing is written then."""
        config = self._config
        tenant, user = find_user(config, tenant_id, user_id)
        origin = Origin(actor, source)
        stored_target = routing_rules.check_forward(config, tenant, user, kind, target)
        if kind == routing_rules.IMMEDIATE and stored_target.startswith("+"):
            self._refuse_loop(tenant_id, user_id, stored_target)
        changes: dict[str, object] = {f"fwd_{kind}": stored_target}
        if no_answer_seconds is not None:
            if kind != "no_answer":
                raise SettingsError("a delay belongs to the no_answer forward only")
            changes["no_answer_seconds"] = routing_rules.check_delay(no_answer_seconds)
        return self._change_routing(tenant_id, user_id, user, origin, changes)

    def reset_routing(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> Routing:
        """Back to the defaults: every forward, the no-answer delay and call waiting."""
        _, user = find_user(self._config, tenant_id, user_id)
        return self._change_routing(tenant_id, user_id, user, Origin(actor, source),
                                    {column: None for column in rows.ROUTING_COLUMNS})

    def _refuse_loop(self, tenant_id: str, user_id: str, target: str) -> None:
        """TargetRefused when the target's immediate forwards lead back to this user (A→B→A).
        The router stops loops anyway; refusing here tells the user at once."""
        config = self._config
        seen = {(tenant_id, user_id)}
        for _ in range(routing_rules.LOOP_CHECK_HOPS):
            owner = config.find_number(target)
            if owner is None:
                return
            key = (owner[0].id, owner[1].id)
            if key in seen:
                raise TargetRefused(LOOP, f"{target} forwards calls back to {user_id}")
            seen.add(key)
            target = self.routing(*key).immediate
            if not target.startswith("+"):
                return

    def set_call_waiting(self, tenant_id: str, user_id: str, enabled: bool, *, actor: str,
                         source: str) -> Routing:
        _, user = find_user(self._config, tenant_id, user_id)
        if not isinstance(enabled, bool):
            raise SettingsError(f"call waiting is on or off (true or false), not {enabled!r}")
        return self._change_routing(tenant_id, user_id, user, Origin(actor, source),
                                    {"call_waiting": int(enabled)})

    def _change_routing(self, tenant_id: str, user_id: str, user: User, origin: Origin,
                        changes: dict[str, object]) -> Routing:
        config = self._config

        def work(tx: Tx) -> tuple[Routing, list[_Event]]:
            stored = rows.load_routing(tx, tenant_id, user_id)
            before = routing_rules.effective(config, user, stored)
            after = routing_rules.effective(config, user, {**stored, **changes})
            events = [_Event(SETTING_CHANGED, _routing_field(name), _text(getattr(before, name)),
                             _text(getattr(after, name)))
                      for name in _ROUTING_FIELDS if getattr(before, name) != getattr(after, name)]
            # Stored even when the effective value is unchanged: an explicit choice outlives a
            # later change of the defaults.
            if any(stored.get(column) != value for column, value in changes.items()):
                now = self._now()
                rows.store_routing(tx, tenant_id, user_id, {**stored, **changes}, now)
                self._record(tx, now, tenant_id, user_id, origin, events)
            return after, events

        after, events = self._db.write(work)
        _log_changes(tenant_id, user_id, origin, events)
        return after

    # ------------------------------------------------------------------ presence

    def presence(self, tenant_id: str, user_id: str) -> Presence:
        """The user's activity as it holds now (an end time that passed reads as Available)."""
        tenant, _ = find_user(self._config, tenant_id, user_id)
        stored = self._db.read(lambda tx: rows.load_presence(tx, tenant_id, user_id))
        return self._presence_now(tenant, stored)

    def call_state(self, tenant_id: str, user_id: str) -> tuple[Routing, Presence]:
        """Forwards, call waiting and presence in one read: what routing a call needs."""
        tenant, user = find_user(self._config, tenant_id, user_id)

        def work(tx: Tx) -> tuple[dict[str, object], rows.StoredPresence | None]:
            return rows.load_routing(tx, tenant_id, user_id), rows.load_presence(tx, tenant_id, user_id)

        stored_routing, stored_presence = self._db.read(work)
        return (routing_rules.effective(self._config, user, stored_routing),
                self._presence_now(tenant, stored_presence))

    def set_presence(self, tenant_id: str, user_id: str, activity: str, *, actor: str, source: str,
                     until: datetime | None = None, note: str | None = None) -> Presence:
        """Sets the activity (a key of the tenant's list) with an optional end time; `note` None
        keeps the note. SettingsError (nothing written) for an unknown activity, an end time
        in the past, over 400 days away or given with Available, or a note that is not one line."""
        tenant, _ = find_user(self._config, tenant_id, user_id)
        origin = Origin(actor, source)
        key = presence_rules.check_activity(tenant, activity)
        new_note = presence_rules.check_note(note) if note is not None else None
        presence_rules.check_until(key, until, self._now())

        def work(tx: Tx) -> tuple[Presence, list[_Event]]:
            now = self._now()
            moment = presence_rules.check_until(key, until, now)
            before = self._presence_now(tenant, rows.load_presence(tx, tenant_id, user_id), now)
            after = Presence(key, moment, before.note if new_note is None else new_note)
            events = _presence_events(before, after)
            if events:
                rows.store_presence(tx, tenant_id, user_id, after.activity, after.until, after.note, now)
                self._record(tx, now, tenant_id, user_id, origin, events)
            return after, events

        after, events = self._db.write(work)
        _log_changes(tenant_id, user_id, origin, events)
        return after

    def end_presences(self) -> list[tuple[str, str]]:
        """Activities whose end time has passed become Available in the database too (audited as
        the timer's doing); the (tenant, user) of each, so that Asterisk can be told."""
        origin = Origin("system", "timer")

        def work(tx: Tx) -> list[tuple[str, str]]:
            now = self._now()
            ended = rows.ended_presences(tx, now)
            for tenant_id, user_id, activity, until in ended:
                note_row = rows.load_presence(tx, tenant_id, user_id)
                note = note_row[2] if note_row else ""
                rows.store_presence(tx, tenant_id, user_id, AVAILABLE, None, note, now)
                self._record(tx, now, tenant_id, user_id, origin, [
                    _Event(SETTING_CHANGED, presence_rules.AUDIT_PREFIX + "activity", activity, AVAILABLE),
                    _Event(SETTING_CHANGED, presence_rules.AUDIT_PREFIX + "until", to_text(until), None)])
            return [(t, u) for t, u, _, _ in ended]

        ended = self._db.write(work)
        for tenant_id, user_id in ended:
            log.info("%s/%s presence.activity: end time reached, available again", tenant_id, user_id)
        return ended

    def next_presence_end(self) -> datetime | None:
        """The earliest end time still to come (or passed and not yet ended)."""
        return self._db.read(rows.next_presence_end)

    def _presence_now(self, tenant: Tenant, stored: rows.StoredPresence | None,
                      now: datetime | None = None) -> Presence:
        if stored is None:
            return Presence()
        return presence_rules.effective(*stored, now or self._now(), tenant)

    # ------------------------------------------------------------------ audit

    def audit(self, tenant_id: str | None = None, user_id: str | None = None,
              limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` audit rows, newest first, optionally of one tenant and/or user."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= AUDIT_LIMIT_MAX:
            raise SettingsError(f"limit must be 1 to {AUDIT_LIMIT_MAX}, not {limit!r}")
        return self._db.read(lambda tx: audit_log.query(tx, tenant_id, user_id, limit))

    @staticmethod
    def _record(tx: Tx, now: datetime, tenant_id: str, user_id: str, origin: Origin,
                events: list[_Event]) -> None:
        for e in events:
            audit_log.record(tx, now, tenant_id, user_id, origin, e.event, e.field, e.old, e.new)


_ROUTING_FIELDS = ("immediate", "busy", "no_answer", "unreachable", "no_answer_seconds", "call_waiting")


def _routing_field(name: str) -> str:
    return CALL_WAITING_FIELD if name == "call_waiting" else routing_rules.AUDIT_PREFIX + name


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _presence_events(before: Presence, after: Presence) -> list[_Event]:
    prefix = presence_rules.AUDIT_PREFIX
    changes = [
        ("activity", before.activity, after.activity),
        ("until", to_text(before.until) if before.until else None, to_text(after.until) if after.until else None),
        ("note", before.note or None, after.note or None),
    ]
    return [_Event(SETTING_CHANGED, prefix + name, old, new) for name, old, new in changes if old != new]


def _log_changes(tenant_id: str, user_id: str, origin: Origin, events: list[_Event]) -> None:
    """One log line per changed field, after the commit."""
    for e in events:
        log.info("%s/%s %s: %s -> %s (by %s via %s)", tenant_id, user_id, e.field, e.old, e.new,
                 origin.actor, origin.source)
