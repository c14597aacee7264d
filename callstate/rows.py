"""Reading and writing the per-user rows; "no row" reads as the defaults."""

from __future__ import annotations

from datetime import datetime

from .db import Tx
from .pin import PinStatus
from .routing import KINDS
from .times import from_text, to_text
from .voicemail import VoicemailSettings


def load_voicemail(tx: Tx, tenant_id: str, user_id: str) -> VoicemailSettings:
    row = tx.one("SELECT play_activity, press1_number, notify_sms, notify_email, always_ask_pin "
                 "FROM voicemail_settings WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))
    if row is None:
        return VoicemailSettings()
    return VoicemailSettings(play_activity=bool(row[0]), press1_number=row[1], notify_sms=bool(row[2]),
                             notify_email=bool(row[3]), always_ask_pin=bool(row[4]))


def store_voicemail(tx: Tx, tenant_id: str, user_id: str, settings: VoicemailSettings,
                    now: datetime) -> None:
    # Every column, from values read in this same (serializable) transaction: nothing is lost.
    tx.run("INSERT INTO voicemail_settings (tenant_id, user_id, play_activity, press1_number, "
           "notify_sms, notify_email, always_ask_pin, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (tenant_id, user_id) DO UPDATE SET play_activity = excluded.play_activity, "
           "press1_number = excluded.press1_number, notify_sms = excluded.notify_sms, "
           "notify_email = excluded.notify_email, always_ask_pin = excluded.always_ask_pin, "
           "updated_at = excluded.updated_at",
           (tenant_id, user_id, int(settings.play_activity), settings.press1_number,
            int(settings.notify_sms), int(settings.notify_email), int(settings.always_ask_pin),
            to_text(now)))


def load_pin(tx: Tx, tenant_id: str, user_id: str) -> PinStatus:
    row = tx.one("SELECT failures, locked_until, lock_level, held FROM pin_lockout "
                 "WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))
    return PinStatus() if row is None else _pin_status(row[0], row[1], row[2], row[3])


def _pin_status(failures: int, locked_until: str | None, level: int, held: int) -> PinStatus:
    return PinStatus(int(failures), from_text(locked_until) if locked_until is not None else None,
                     int(level), bool(held))


def store_pin(tx: Tx, tenant_id: str, user_id: str, status: PinStatus, now: datetime) -> None:
    locked_until = to_text(status.locked_until) if status.locked_until is not None else None
    tx.run("INSERT INTO pin_lockout (tenant_id, user_id, failures, locked_until, lock_level, held, "
           "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, user_id) DO UPDATE SET "
           "failures = excluded.failures, locked_until = excluded.locked_until, "
           "lock_level = excluded.lock_level, held = excluded.held, updated_at = excluded.updated_at",
           (tenant_id, user_id, status.failures, locked_until, status.level, int(status.held),
            to_text(now)))


def pin_rows(tx: Tx) -> list[tuple[str, str, PinStatus]]:
    """(tenant, user, stored status) of every user with a PIN row, in a stable order."""
    return [(r[0], r[1], _pin_status(r[2], r[3], r[4], r[5])) for r in tx.all(
        "SELECT tenant_id, user_id, failures, locked_until, lock_level, held FROM pin_lockout "
        "ORDER BY tenant_id, user_id")]


# The stored routing columns, in this order: each forward kind, the delay, call waiting.
ROUTING_COLUMNS = (*(f"fwd_{kind}" for kind in KINDS), "no_answer_seconds", "call_waiting")
StoredRouting = dict[str, object]  # column → value; a missing or None value means "the default"


def load_routing(tx: Tx, tenant_id: str, user_id: str) -> StoredRouting:
    row = tx.one(f"SELECT {', '.join(ROUTING_COLUMNS)} FROM call_routing "
                 "WHERE tenant_id = ? AND user_id = ?", (tenant_id, user_id))
    return dict(zip(ROUTING_COLUMNS, row)) if row is not None else {}


def store_routing(tx: Tx, tenant_id: str, user_id: str, stored: StoredRouting, now: datetime) -> None:
    values = [stored.get(column) for column in ROUTING_COLUMNS]
    updates = ", ".join(f"{c} = excluded.{c}" for c in ROUTING_COLUMNS)
    tx.run(f"INSERT INTO call_routing (tenant_id, user_id, {', '.join(ROUTING_COLUMNS)}, updated_at) "
           f"VALUES (?, ?, {', '.join('?' for _ in ROUTING_COLUMNS)}, ?) "
           f"ON CONFLICT (tenant_id, user_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
           (tenant_id, user_id, *values, to_text(now)))


StoredPresence = tuple[str, datetime | None, str]  # activity, until, note


def load_presence(tx: Tx, tenant_id: str, user_id: str) -> StoredPresence | None:
    row = tx.one("SELECT activity, until_at, note FROM presence WHERE tenant_id = ? AND user_id = ?",
                 (tenant_id, user_id))
    if row is None:
        return None
    return row[0], from_text(row[1]) if row[1] is not None else None, row[2]


def store_presence(tx: Tx, tenant_id: str, user_id: str, activity: str, until: datetime | None,
                   note: str, now: datetime) -> None:
    tx.run("INSERT INTO presence (tenant_id, user_id, activity, until_at, note, updated_at) "
           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, user_id) DO UPDATE SET "
           "activity = excluded.activity, until_at = excluded.until_at, note = excluded.note, "
           "updated_at = excluded.updated_at",
           (tenant_id, user_id, activity, to_text(until) if until is not None else None, note,
            to_text(now)))


def ended_presences(tx: Tx, now: datetime) -> list[tuple[str, str, str, datetime]]:
    """(tenant, user, activity, until) of every activity whose end time has passed."""
    return [(r[0], r[1], r[2], from_text(r[3])) for r in tx.all(
        "SELECT tenant_id, user_id, activity, until_at FROM presence "
        "WHERE until_at IS NOT NULL AND until_at <= ? ORDER BY until_at", (to_text(now),))]


def next_presence_end(tx: Tx) -> datetime | None:
    row = tx.one("SELECT MIN(until_at) FROM presence WHERE until_at IS NOT NULL")
    return from_text(row[0]) if row and row[0] is not None else None
