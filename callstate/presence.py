"""Presence: a user's activity (from the tenant's list), its optional end time and own note."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from base.model import AVAILABLE, Tenant

from .errors import SettingsError
from .times import aware_utc

NOTE_MAX = 100
UNTIL_MAX = timedelta(days=400)  # an end time further away is a typing error, not a plan
AUDIT_PREFIX = "presence."


@dataclass(frozen=True)
class Presence:
    activity: str = AVAILABLE
    until: datetime | None = None  # UTC; after it the activity is AVAILABLE again
    note: str = ""  # the user's own note, shown to colleagues with the presence

    @property
    def available(self) -> bool:
        return self.activity == AVAILABLE


def effective(activity: str | None, until: datetime | None, note: str | None, now: datetime,
              tenant: Tenant) -> Presence:
    """The stored values as they hold `now`: an end time that has passed, or an activity the
    tenant no longer has, reads as Available (the note stays)."""
    if activity is None or tenant.activity(activity) is None or (until is not None and until <= now):
        return Presence(AVAILABLE, None, note or "")
    return Presence(activity, until, note or "")


def check_activity(tenant: Tenant, key: str) -> str:
    if not isinstance(key, str) or tenant.activity(key) is None:
        known = ", ".join(a.key for a in tenant.activities)
        raise SettingsError(f"unknown activity {key!r} for {tenant.id} (known: {known})")
    return key


def check_until(activity: str, until: datetime | None, now: datetime) -> datetime | None:
    if until is None:
        return None
    if not isinstance(until, datetime):
        raise SettingsError(f"an end time is a date and time, not {until!r}")
    try:
        moment = aware_utc(until)
    except ValueError as exc:
        raise SettingsError("an end time needs its time zone") from exc
    if activity == AVAILABLE:
        raise SettingsError("Available has no end time")
    if moment <= now:
        raise SettingsError("the end time has already passed")
    if moment - now > UNTIL_MAX:
        raise SettingsError(f"the end time is more than {UNTIL_MAX.days} days away")
    return moment


def check_note(note: str) -> str:
    if not isinstance(note, str):
        raise SettingsError(f"a note is text, not {type(note).__name__}")
    note = note.strip()
    if len(note) > NOTE_MAX:
        raise SettingsError(f"a note is at most {NOTE_MAX} characters")
    if not note.isprintable():
        raise SettingsError("a note is one line of printable text")
    return note
