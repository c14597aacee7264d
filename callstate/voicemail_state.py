"""VoicemailState: a user's voicemail settings and PIN (check, lockout, an operator's unlock).

The rules are in `voicemail.py` and `pin.py`; this module reads and writes them in one short,
audited transaction each (see `store.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import rows
from .audit import SETTING_CHANGED
from .db import Tx
from .errors import SettingsError
from .pin import (
    HELD,
    PIN_FAILED,
    PIN_LOCKED,
    PIN_OK,
    PIN_REFUSED,
    PIN_UNLOCKED,
    LockoutPolicy,
    PinCheck,
    PinStatus,
    attempt,
    effective,
    pin_matches,
)
from .store import Event, StateStore, log, log_changes
from .users import Origin, find_user
from .voicemail import (
    AUDIT_PREFIX,
    FIELDS,
    VoicemailSettings,
    apply_changes,
    to_audit_text,
)


class VoicemailState:
    def __init__(self, store: StateStore, policy: LockoutPolicy) -> None:
        self._store = store
        self._policy = policy

    # ------------------------------------------------------------------ settings

    def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings:
        find_user(self._store.config, tenant_id, user_id)
        return self._store.read(lambda tx: rows.load_voicemail(tx, tenant_id, user_id))

    def update_voicemail_settings(self, tenant_id: str, user_id: str, *, actor: str, source: str,
                                  **changes: Any) -> VoicemailSettings:
        """The settings after `changes`; SettingsError (and nothing written) if any is refused."""
        store = self._store
        config = store.config
        tenant, user = find_user(config, tenant_id, user_id)
        origin = Origin(actor, source)
        # Every rule is checked before the write lock is taken; none depends on the stored values.
        apply_changes(config, tenant, user, VoicemailSettings(), changes)

        def work(tx: Tx) -> tuple[VoicemailSettings, list[Event]]:
            current = rows.load_voicemail(tx, tenant_id, user_id)
            new = apply_changes(config, tenant, user, current, changes)
            events = [Event(SETTING_CHANGED, AUDIT_PREFIX + name, to_audit_text(getattr(current, name)),
                            to_audit_text(getattr(new, name)))
                      for name in FIELDS if getattr(current, name) != getattr(new, name)]
            if events:
                now = store.now()
                rows.store_voicemail(tx, tenant_id, user_id, new, now)
                store.record(tx, now, tenant_id, user_id, origin, events)
            return new, events

        new, events = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return new

    # ------------------------------------------------------------------ PIN and lockout

    @property
    def policy(self) -> LockoutPolicy:
        return self._policy

    def pin_status(self, tenant_id: str, user_id: str) -> PinStatus:
        find_user(self._store.config, tenant_id, user_id)
        stored = self._store.read(lambda tx: rows.load_pin(tx, tenant_id, user_id))
        return effective(stored, self._store.now())

    def pin_locks(self) -> list[tuple[str, str, PinStatus]]:
        """(tenant, user, status) of every user locked now, for mirroring to the native fallback."""
        now = self._store.now()
        found = self._store.read(rows.pin_rows)
        return [(t, u, status) for t, u, stored in found if (status := effective(stored, now)).locked]

    def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str,
                  actor: str = "caller") -> PinCheck:
        """One login attempt against the user's PIN from the configuration.

        While locked the PIN is not even compared. `actor` is who tried (e.g. the calling number).
        An unknown tenant or user raises UnknownUserError: there is no counter to lock.
        """
        _, user = find_user(self._store.config, tenant_id, user_id)
        if not isinstance(pin, str):
            raise SettingsError(f"a PIN is text, not {type(pin).__name__}")
        return self._attempts(tenant_id, user_id, Origin(actor, source),
                              lambda: pin_matches(user.pin, pin), 1)

    def count_failures(self, tenant_id: str, user_id: str, count: int, *, source: str,
                       actor: str) -> PinStatus:
        """`count` wrong PINs made elsewhere (the native fallback while the app was down), counted
        as if typed here: they escalate the lock the same way. Attempts while locked are refused."""
        find_user(self._store.config, tenant_id, user_id)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise SettingsError(f"a failure count is 1 to 1000, not {count!r}")
        return self._attempts(tenant_id, user_id, Origin(actor, source), lambda: False, count).status

    def _attempts(self, tenant_id: str, user_id: str, origin: Origin, matches: Callable[[], bool],
                  count: int) -> PinCheck:
        store = self._store

        def work(tx: Tx) -> tuple[PinCheck, list[Event]]:
            now = store.now()  # inside the lock: the order of attempts is the order of their times
            stored = rows.load_pin(tx, tenant_id, user_id)
            status = effective(stored, now)
            events: list[Event] = []
            ok = False
            for _ in range(count):
                if status.locked:
                    events.append(Event(PIN_REFUSED, "pin", None, status.describe()))
                    continue
                ok = matches()
                status, found = attempt(status, ok, now, self._policy)
                events += [Event(event, "pin", old, new) for event, old, new in found]
            if status != stored:
                rows.store_pin(tx, tenant_id, user_id, status, now)
            store.record(tx, now, tenant_id, user_id, origin, events)
            return PinCheck(ok, status), events

        result, events = store.write(work)
        self._log_attempt(f"{tenant_id}/{user_id} by {origin.actor} via {origin.source}", events)
        return result

    def _log_attempt(self, who: str, events: list[Event]) -> None:
        attempts = self._policy.attempts
        for e in events:
            if e.event == PIN_OK:
                log.info("PIN login ok: %s", who)
            elif e.event == PIN_FAILED:
                log.warning("PIN login failed (%s of %d): %s", e.new, attempts, who)
            elif e.event == PIN_LOCKED:
                log.warning("PIN locked %s (lock %s) after %d failures: %s", _until(e.new), e.old,
                            attempts, who)
            else:
                log.warning("PIN login refused, locked %s: %s", _until(e.new), who)

    def reset_pin_lockout(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> PinStatus:
        """Clears the failure counter, any lock and the escalation level (an operator's "unlock")."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)

        def work(tx: Tx) -> list[Event]:
            stored = rows.load_pin(tx, tenant_id, user_id)
            if stored == PinStatus():
                return []
            now = store.now()
            events = [Event(PIN_UNLOCKED, "pin", str(stored.failures), "0")]
            rows.store_pin(tx, tenant_id, user_id, PinStatus(), now)
            store.record(tx, now, tenant_id, user_id, origin, events)
            return events

        if store.write(work):
            log.info("PIN counter, lock and level cleared: %s/%s by %s via %s", tenant_id, user_id,
                     origin.actor, origin.source)
        return PinStatus()


def _until(described: str | None) -> str:
    return HELD if described == HELD else f"until {described}"
