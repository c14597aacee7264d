"""The audit trail: one row per changed field and per PIN event, never updated or deleted here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from base import metrics

from .db import Tx
from .times import from_text, to_text
from .users import Origin

SETTING_CHANGED = "set"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime  # UTC
    tenant_id: str
    user_id: str
    actor: str  # who: an operator, a caller's number, a web login
    source: str  # through what: "cli", "ivr", "web", ...
    event: str  # "set" for a setting, "pin_ok" / "pin_failed" / ... for logins (see pin.py)
    field: str  # namespaced: "voicemail.notify_sms", "pin"
    old: str | None
    new: str | None


def record(tx: Tx, at: datetime, tenant_id: str, user_id: str, origin: Origin, event: str,
           field: str, old: str | None, new: str | None) -> None:
    tx.run("INSERT INTO audit_log (at, tenant_id, user_id, actor, source, event, field, old_value, "
           "new_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
           (to_text(at), tenant_id, user_id, origin.actor, origin.source, event, field, old, new))
    metrics.lock_event(event)


def query(tx: Tx, tenant_id: str | None, user_id: str | None, limit: int) -> list[AuditEntry]:
    """Newest first."""
    where: list[str] = []
    params: list[object] = []
    # Fixed fragments only; the values go in as parameters.
    if tenant_id is not None:
        where.append("tenant_id = ?")
        params.append(tenant_id)
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    sql = ("SELECT id, at, tenant_id, user_id, actor, source, event, field, old_value, new_value "
           "FROM audit_log")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [AuditEntry(int(r[0]), from_text(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])
            for r in tx.all(sql, params)]
