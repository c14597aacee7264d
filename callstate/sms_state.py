"""SmsState: the SMS a user sends from the home page, counted and audited.

No table of its own: each SMS is an audit row (`sms_sent`, field `sms`, new = the target number),
and the hourly limit counts those rows. The count and the new row are one transaction, so two
requests at once cannot both pass the last free slot.
"""

from __future__ import annotations

from datetime import timedelta

from .db import Tx
from .errors import SettingsError
from .store import Event, StateStore, log_changes
from .times import to_text
from .users import Origin, find_user

SMS_SENT = "sms_sent"
SMS_FAILED = "sms_failed"
SMS_FIELD = "sms"


class SmsLimitReached(SettingsError):
    """The user has sent their `limit` SMS in the window already; nothing was recorded."""

    def __init__(self, limit: int, window: timedelta) -> None:
        super().__init__(f"at most {limit} SMS in {int(window.total_seconds() // 60)} minutes")
        self.limit = limit
        self.window = window


class SmsState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def claim(self, tenant_id: str, user_id: str, to: str, *, limit: int, window: timedelta,
              actor: str, source: str) -> int:
        """Records one SMS to `to` (E.164) about to be sent; `SmsLimitReached` (and nothing
        recorded) when `limit` were sent in the last `window`. The number sent in the window."""
        store = self._store
        find_user(store.config, tenant_id, user_id)
        origin = Origin(actor, source)
        events = [Event(SMS_SENT, SMS_FIELD, None, to)]

        def work(tx: Tx) -> int:
            now = store.now()
            row = tx.one("SELECT COUNT(*) FROM audit_log WHERE tenant_id = ? AND user_id = ? AND event = ? "
                         "AND at > ?", (tenant_id, user_id, SMS_SENT, to_text(now - window)))
            sent = int(row[0]) if row else 0
            if sent >= limit:
                raise SmsLimitReached(limit, window)
            store.record(tx, now, tenant_id, user_id, origin, events)
            return sent + 1

        sent = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return sent

    def failed(self, tenant_id: str, user_id: str, to: str, why: str, *, actor: str, source: str) -> None:
        """The gateway did not take a claimed SMS: audited (it still counts towards the limit)."""
        store = self._store
        origin = Origin(actor, source)
        events = [Event(SMS_FAILED, SMS_FIELD, to, why[:200])]
        store.write(lambda tx: store.record(tx, store.now(), tenant_id, user_id, origin, events))
        log_changes(tenant_id, user_id, origin, events)
