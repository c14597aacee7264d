"""ConferenceState: the PIN of each user's conference room and its own lockout.

A user's room is closed until its owner sets a PIN (on the home page): nobody can enter a room
whose PIN nobody was told. The PIN is kept here, not in the YAML, because the owner changes it;
it is shown to the owner (who dials in with it) and never written to the audit trail or the log.
Wrong PINs count like voicemail PINs (`pin.py`: a series of wrong ones locks the room for 15 min,
1 h, 24 h, then until the owner sets a new PIN, which also clears the counter and the level).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from base.model import MAX_PIN_DIGITS, Tenant, User

from .audit import SETTING_CHANGED
from .db import Tx
from .errors import SettingsError
from .pin import (
    PIN_OK,
    PIN_REFUSED,
    LockoutPolicy,
    PinCheck,
    PinStatus,
    attempt,
    effective,
    pin_matches,
)
from .store import Event, StateStore, log, log_changes
from .times import from_text, to_text
from .users import Origin, find_user

AUDIT_PREFIX = "conference."
PIN_FIELD = AUDIT_PREFIX + "pin"
PIN_SET = "set"  # the audit's word for "a PIN is set"; the PIN itself is never written there
DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ConferenceRoom:
    pin: str | None  # None: no PIN set yet, the room is closed
    status: PinStatus  # the room's lockout, as it holds now

    @property
    def open(self) -> bool:
        return self.pin is not None


def shortest_pin(tenant: Tenant, platform_digits: int) -> int:
    return tenant.pin_digits or platform_digits


def check_room_pin(pin: object, tenant: Tenant, user: User, platform_digits: int) -> str:
    """The PIN as stored; SettingsError for one that is not `pin_digits` to 10 digits or is weak."""
    shortest = shortest_pin(tenant, platform_digits)
    if not isinstance(pin, str) or not DIGITS.fullmatch(pin) or not shortest <= len(pin) <= MAX_PIN_DIGITS:
        raise SettingsError(f"a conference PIN is {shortest} to {MAX_PIN_DIGITS} digits")
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(pin)}
    if len(steps) == 1 and steps <= {0, 1, 9}:
        raise SettingsError("a conference PIN may not be one digit repeated or a run such as 123456")
    if pin in (user.extension, user.mailbox) or user.mailbox.endswith(pin):
        raise SettingsError("a conference PIN may not be the user's own number or extension")
    return pin


class ConferenceState:
    def __init__(self, store: StateStore, policy: LockoutPolicy) -> None:
        self._store = store
        self._policy = policy

    def room(self, tenant_id: str, user_id: str) -> ConferenceRoom:
        find_user(self._store.config, tenant_id, user_id)
        pin, stored = self._store.read(lambda tx: _load(tx, tenant_id, user_id))
        return ConferenceRoom(pin, effective(stored, self._store.now()))

    def set_pin(self, tenant_id: str, user_id: str, pin: str, *, actor: str, source: str) -> ConferenceRoom:
        """Sets the room's PIN and clears its lockout; SettingsError (nothing written) for a PIN
        the rules refuse."""
        store = self._store
        tenant, user = find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        new_pin = check_room_pin(pin, tenant, user, store.config.platform.pin_digits)

        def work(tx: Tx) -> list[Event]:
            now = store.now()
            old_pin, _ = _load(tx, tenant_id, user_id)
            _store(tx, tenant_id, user_id, new_pin, PinStatus(), now)
            events = [Event(SETTING_CHANGED, PIN_FIELD, PIN_SET if old_pin else None, PIN_SET)]
            store.record(tx, now, tenant_id, user_id, origin, events)
            return events

        log_changes(tenant_id, user_id, origin, store.write(work))
        return ConferenceRoom(new_pin, PinStatus())

    def check_pin(self, tenant_id: str, user_id: str, pin: str, *, actor: str, source: str) -> PinCheck:
        """One attempt to enter the room. A closed room (no PIN) or a locked one refuses without
        comparing; a wrong PIN counts towards the room's lockout."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        if not isinstance(pin, str):
            raise SettingsError(f"a PIN is text, not {type(pin).__name__}")

        def work(tx: Tx) -> tuple[PinCheck, list[Event]]:
            now = store.now()
            expected, stored = _load(tx, tenant_id, user_id)
            status = effective(stored, now)
            if expected is None or status.locked:
                events = [Event(PIN_REFUSED, PIN_FIELD, None, status.describe() if expected else "no PIN")]
                store.record(tx, now, tenant_id, user_id, origin, events)
                return PinCheck(False, status), events
            ok = pin_matches(expected, pin)
            new, found = attempt(status, ok, now, self._policy)
            events = [Event(event, PIN_FIELD, old, value) for event, old, value in found]
            if new != stored:
                _store(tx, tenant_id, user_id, expected, new, now)
            store.record(tx, now, tenant_id, user_id, origin, events)
            return PinCheck(ok, new), events

        result, events = store.write(work)
        for e in events:
            line = "conference PIN %s: %s/%s by %s via %s (%s -> %s)"
            (log.info if e.event == PIN_OK else log.warning)(line, e.event, tenant_id, user_id, origin.actor,
                                                             origin.source, e.old, e.new)
        return result


def _load(tx: Tx, tenant_id: str, user_id: str) -> tuple[str | None, PinStatus]:
    row = tx.one("SELECT pin, failures, locked_until, lock_level, held FROM conference_rooms "
                 "WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))
    if row is None:
        return None, PinStatus()
    until = from_text(row[2]) if row[2] is not None else None
    return str(row[0]), PinStatus(int(row[1]), until, int(row[3]), bool(row[4]))


def _store(tx: Tx, tenant_id: str, user_id: str, pin: str, status: PinStatus, now: datetime) -> None:
    until = to_text(status.locked_until) if status.locked_until is not None else None
    tx.run("INSERT INTO conference_rooms (tenant_id, user_id, pin, failures, locked_until, lock_level, held, "
           "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, user_id) DO UPDATE SET "
           "pin = excluded.pin, failures = excluded.failures, locked_until = excluded.locked_until, "
           "lock_level = excluded.lock_level, held = excluded.held, updated_at = excluded.updated_at",
           (tenant_id, user_id, pin, status.failures, until, status.level, int(status.held), to_text(now)))
