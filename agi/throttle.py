"""The per-minute half of the fraud throttle: how many calls a tenant sent out in the last 60 s.

Kept in the process that answers the dialplan's outbound check (one `vipbx serve` per Asterisk),
so it sees every call that leaves that Asterisk. It forgets on restart: at worst one extra
minute's worth of calls, while the simultaneous limit (counted by Asterisk) still holds.
"""

from __future__ import annotations

from collections import deque

WINDOW_SECONDS = 60.0


class MinuteThrottle:
    """Admits at most `limit` calls per tenant in any WINDOW_SECONDS; only admitted calls count."""

    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}

    def admit(self, tenant_id: str, limit: int, now: float) -> bool:
        sent = self._sent.setdefault(tenant_id, deque())
        while sent and sent[0] <= now - WINDOW_SECONDS:
            sent.popleft()
        if len(sent) >= limit:
            return False
        sent.append(now)
        return True

    def recent(self, tenant_id: str, now: float) -> int:
        """Calls admitted for the tenant in the window ending `now`."""
        return sum(1 for at in self._sent.get(tenant_id, ()) if at > now - WINDOW_SECONDS)
