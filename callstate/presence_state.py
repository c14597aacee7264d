"""PresenceState: a user's activity, its end time and note, and the timer that ends activities.

The rules are in `presence.py`; this module reads and writes them in one short, audited
transaction each (see `store.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from base.model import AVAILABLE, Tenant

from . import presence as presence_rules
from . import rows
from .audit import SETTING_CHANGED
from .db import Tx
from .presence import Presence
from .store import Event, StateStore, log, log_changes
from .times import to_text
from .users import Origin, find_user


class PresenceState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def presence(self, tenant_id: str, user_id: str) -> Presence:
        """The user's activity as it holds now (an end time that passed reads as Available)."""
        tenant, _ = find_user(self._store.config, tenant_id, user_id)
        stored = self._store.read(lambda tx: rows.load_presence(tx, tenant_id, user_id))
        return presence_at(tenant, stored, self._store.now)

    def set_presence(self, tenant_id: str, user_id: str, activity: str, *, actor: str, source: str,
                     until: datetime | None = None, note: str | None = None) -> Presence:
        """Sets the activity (a key of the tenant's list) with an optional end time; `note` None
        keeps the note. SettingsError (nothing written) for an unknown activity, an end time
        in the past, over 400 days away or given with Available, or a note that is not one line."""
        store = self._store
        tenant, _ = find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        key = presence_rules.check_activity(tenant, activity)
        new_note = presence_rules.check_note(note) if note is not None else None
        presence_rules.check_until(key, until, store.now())

        def work(tx: Tx) -> tuple[Presence, list[Event]]:
            now = store.now()
            moment = presence_rules.check_until(key, until, now)
            before = presence_at(tenant, rows.load_presence(tx, tenant_id, user_id), lambda: now)
            after = Presence(key, moment, before.note if new_note is None else new_note)
            events = _events(before, after)
            if events:
                rows.store_presence(tx, tenant_id, user_id, after.activity, after.until, after.note, now)
                store.record(tx, now, tenant_id, user_id, origin, events)
            return after, events

        after, events = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return after

    def end_presences(self) -> list[tuple[str, str]]:
        """Activities whose end time has passed become Available in the database too (audited as
        the timer's doing); the (tenant, user) of each, so that Asterisk can be told."""
        store = self._store
        origin = Origin("system", "timer")

        def work(tx: Tx) -> list[tuple[str, str]]:
            now = store.now()
            ended = rows.ended_presences(tx, now)
            for tenant_id, user_id, activity, until in ended:
                note_row = rows.load_presence(tx, tenant_id, user_id)
                note = note_row[2] if note_row else ""
                rows.store_presence(tx, tenant_id, user_id, AVAILABLE, None, note, now)
                store.record(tx, now, tenant_id, user_id, origin, [
                    Event(SETTING_CHANGED, presence_rules.AUDIT_PREFIX + "activity", activity, AVAILABLE),
                    Event(SETTING_CHANGED, presence_rules.AUDIT_PREFIX + "until", to_text(until), None)])
            return [(t, u) for t, u, _, _ in ended]

        ended = store.write(work)
        for tenant_id, user_id in ended:
            log.info("%s/%s presence.activity: end time reached, available again", tenant_id, user_id)
        return ended

    def next_presence_end(self) -> datetime | None:
        """The earliest end time still to come (or passed and not yet ended)."""
        return self._store.read(rows.next_presence_end)


def presence_at(tenant: Tenant, stored: rows.StoredPresence | None,
                now: Callable[[], datetime]) -> Presence:
    """The stored row as it holds `now()`; no row is Available without a note (and asks no clock)."""
    if stored is None:
        return Presence()
    return presence_rules.effective(*stored, now(), tenant)


def _events(before: Presence, after: Presence) -> list[Event]:
    prefix = presence_rules.AUDIT_PREFIX
    changes = [
        ("activity", before.activity, after.activity),
        ("until", to_text(before.until) if before.until else None, to_text(after.until) if after.until else None),
        ("note", before.note or None, after.note or None),
    ]
    return [Event(SETTING_CHANGED, prefix + name, old, new) for name, old, new in changes if old != new]
