"""VoicemailState: a user's voicemail settings and PIN (check, lockout, an operator's unlock).

The rules are in `voicemail.py` and `pin.py`; this module reads and writes them in one short,
audited transaction each (see `store.py`).
"""

from __future__ import annotations

from typing import Any

from . import rows
from .audit import SETTING_CHANGED
from .db import Tx
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
from .store import Event, StateStore, log, log_changes
from .times import to_text
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

    def pin_status(self, tenant_id: str, user_id: str) -> PinStatus:
        find_user(self._store.config, tenant_id, user_id)
        stored = self._store.read(lambda tx: rows.load_pin(tx, tenant_id, user_id))
        return effective(stored, self._store.now())

    def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str,
                  actor: str = "caller") -> PinCheck:
        """One login attempt against the user's PIN from the configuration.

        While locked the PIN is not even compared. `actor` is who tried (e.g. the calling number).
        An unknown tenant or user raises UnknownUserError: there is no counter to lock.
        """
        store = self._store
        _, user = find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        if not isinstance(pin, str):
            raise SettingsError(f"a PIN is text, not {type(pin).__name__}")

        def work(tx: Tx) -> tuple[PinCheck, list[Event]]:
            now = store.now()  # inside the lock: the order of attempts is the order of their times
            stored = rows.load_pin(tx, tenant_id, user_id)
            status = effective(stored, now)
            if status.locked_until is not None:
                events = [Event(PIN_REFUSED, "pin", None, to_text(status.locked_until))]
                store.record(tx, now, tenant_id, user_id, origin, events)
                return PinCheck(False, status), events
            ok = pin_matches(user.pin, pin)
            new = PinStatus() if ok else after_failure(status, now, self._policy)
            events = [Event(PIN_OK if ok else PIN_FAILED, "pin", str(status.failures), str(new.failures))]
            if new.locked_until is not None:
                events.append(Event(PIN_LOCKED, "pin", None, to_text(new.locked_until)))
            if new != stored:
                rows.store_pin(tx, tenant_id, user_id, new, now)
            store.record(tx, now, tenant_id, user_id, origin, events)
            return PinCheck(ok, new), events

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
                log.warning("PIN locked until %s after %d failures: %s", e.new, attempts, who)
            else:
                log.warning("PIN login refused, locked until %s: %s", e.new, who)

    def reset_pin_lockout(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> PinStatus:
        """Clears the failure counter and any lock (an operator's "unlock")."""
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
            log.info("PIN counter and lock cleared: %s/%s by %s via %s", tenant_id, user_id,
                     origin.actor, origin.source)
        return PinStatus()
