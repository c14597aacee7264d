"""CallLogState: each user's calls (the `call_log` table), written from Asterisk's call records
and read newest first in keyset pages.

The rows are records of what happened, written by the system, not settings a person changed:
they are not audited. `prune` drops rows older than the retention the YAML sets
(`platform.web.call_log_days`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .calllog import KINDS, RANK, CallEntry, classify
from .db import Tx
from .errors import SettingsError
from .store import StateStore, log
from .times import from_text, to_text
from .users import find_user

PAGE_MAX = 200
CURSOR_SEP = "|"


@dataclass(frozen=True)
class CallPage:
    calls: list[CallEntry]
    next_cursor: str | None  # the `before` of the next (older) page; None on the last one


def cursor_of(entry: CallEntry) -> str:
    return f"{to_text(entry.started_at)}{CURSOR_SEP}{entry.call_id}"


def _parse_cursor(cursor: str) -> tuple[str, str]:
    started, sep, call_id = cursor.partition(CURSOR_SEP)
    try:
        from_text(started)
    except ValueError:
        raise SettingsError("not a call log page cursor") from None
    if not sep or not call_id or len(call_id) > 72:
        raise SettingsError("not a call log page cursor")
    return started, call_id


def _merge(tx: Tx, entry: CallEntry) -> None:
    key = (entry.tenant_id, entry.user_id, entry.call_id)
    row = tx.one("SELECT started_at, kind_rank, duration FROM call_log "
                 "WHERE tenant_id = ? AND user_id = ? AND call_id = ?", key)
    started = to_text(entry.started_at)
    if row is None:
        tx.run("INSERT INTO call_log (tenant_id, user_id, call_id, started_at, kind, kind_rank, duration, "
               "party_number, party_name, target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (*key, started, entry.kind, RANK[entry.kind], entry.duration, entry.number, entry.name,
                entry.target))
        return
    # The call's earliest start, its longest talk, and the outcome of the highest rank.
    tx.run("UPDATE call_log SET started_at = ?, duration = ? WHERE tenant_id = ? AND user_id = ? AND call_id = ?",
           (min(started, str(row[0])), max(entry.duration, int(row[2])), *key))
    if RANK[entry.kind] > int(row[1]):
        tx.run("UPDATE call_log SET kind = ?, kind_rank = ?, target = ? "
               "WHERE tenant_id = ? AND user_id = ? AND call_id = ?",
               (entry.kind, RANK[entry.kind], entry.target, *key))


def _entry(row: tuple[object, ...]) -> CallEntry:
    tenant_id, user_id, call_id, started, kind, duration, number, name, target = row
    return CallEntry(str(tenant_id), str(user_id), str(call_id), from_text(str(started)), str(kind),
                     int(str(duration)), str(number), str(name), str(target))


class CallLogState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def record_cdr(self, event: dict[str, str]) -> list[CallEntry]:
        """Classifies one CDR (as cdr_manager sends it) and merges its rows into the log; the rows."""
        entries = classify(self._store.config, event)
        if entries:
            self.record(entries)
        return entries

    def record(self, entries: list[CallEntry]) -> None:
        def work(tx: Tx) -> None:
            for entry in entries:
                _merge(tx, entry)

        self._store.write(work)

    def page(self, tenant_id: str, user_id: str, *, kind: str | None = None, since: datetime | None = None,
             until: datetime | None = None, before: str | None = None, limit: int = 25) -> CallPage:
        """The user's calls newest first: of one kind (None: all), started in [since, until), older
        than the cursor `before`; at most `limit`. SettingsError for an unknown kind, a bad cursor
        or limit."""
        find_user(self._store.config, tenant_id, user_id)
        if kind is not None and kind not in KINDS:
            raise SettingsError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
            raise SettingsError(f"limit must be 1 to {PAGE_MAX}, not {limit!r}")
        sql = ("SELECT tenant_id, user_id, call_id, started_at, kind, duration, party_number, party_name, "
               "target FROM call_log WHERE tenant_id = ? AND user_id = ?")
        params: list[object] = [tenant_id, user_id]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        if since is not None:
            sql += " AND started_at >= ?"
            params.append(to_text(since))
        if until is not None:
            sql += " AND started_at < ?"
            params.append(to_text(until))
        if before:
            started, call_id = _parse_cursor(before)
            sql += " AND (started_at < ? OR (started_at = ? AND call_id < ?))"
            params += [started, started, call_id]
        sql += " ORDER BY started_at DESC, call_id DESC LIMIT ?"
        params.append(limit + 1)
        rows = self._store.read(lambda tx: tx.all(sql, tuple(params)))
        calls = [_entry(tuple(row)) for row in rows[:limit]]
        return CallPage(calls, cursor_of(calls[-1]) if len(rows) > limit else None)

    def prune(self, days: int) -> int:
        """Drops the rows of calls that started more than `days` days ago; how many."""
        cutoff = to_text(self._store.now() - timedelta(days=days))
        dropped = self._store.write(lambda tx: tx.run("DELETE FROM call_log WHERE started_at < ?", (cutoff,)))
        if dropped:
            log.info("call log: %d calls older than %d days dropped", dropped, days)
        return dropped
