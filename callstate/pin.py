"""PIN checks and lockout: pure rules over a counter and a lock end; the service stores them."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

# Audit events of a login (field "pin"); the PIN itself is never written anywhere.
PIN_OK = "pin_ok"
PIN_FAILED = "pin_failed"
PIN_LOCKED = "pin_locked"
PIN_REFUSED = "pin_refused"  # an attempt while locked: refused without comparing
PIN_UNLOCKED = "pin_unlocked"  # an operator cleared the counter and the lock


@dataclass(frozen=True)
class PinStatus:
    failures: int = 0  # consecutive wrong PINs since the last success, unlock or lock expiry
    locked_until: datetime | None = None  # UTC; None: not locked

    @property
    def locked(self) -> bool:
        """Whether a lock is in effect; statuses handed out never carry an expired one."""
        return self.locked_until is not None


@dataclass(frozen=True)
class PinCheck:
    ok: bool
    status: PinStatus  # after this attempt

    @property
    def locked(self) -> bool:
        return self.status.locked


@dataclass(frozen=True)
class LockoutPolicy:
    attempts: int = 5
    minutes: int = 15

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.minutes < 1:
            raise ValueError(f"lockout needs at least 1 attempt and 1 minute, not {self}")


def effective(stored: PinStatus, now: datetime) -> PinStatus:
    """A lock that has run out is gone, and with it the failures that caused it."""
    if stored.locked_until is not None and now >= stored.locked_until:
        return PinStatus()
    return stored


def pin_matches(expected: str, given: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII str, and callers may pass anything.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def after_failure(status: PinStatus, now: datetime, policy: LockoutPolicy) -> PinStatus:
    failures = status.failures + 1
    if failures >= policy.attempts:
        return PinStatus(failures, now + timedelta(minutes=policy.minutes))
    return PinStatus(failures)
