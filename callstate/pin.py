"""PIN checks and the escalating lockout: pure rules over a stored status; the service stores it.

A series of `attempts` wrong PINs locks the user for the next step of `steps` (15 min, 1 h, 24 h);
the series after the last step locks until an operator unlocks ("held"). Only a correct PIN or an
operator's unlock brings the level back to zero: a lock running out keeps it, so a guesser who waits
out each lock meets a longer one next time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from .times import to_text

# Audit events of a login (field "pin"); the PIN itself is never written anywhere.
PIN_OK = "pin_ok"
PIN_FAILED = "pin_failed"
PIN_LOCKED = "pin_locked"  # new value: the lock's end, or HELD
PIN_REFUSED = "pin_refused"  # an attempt while locked: refused without comparing
PIN_UNLOCKED = "pin_unlocked"  # an operator cleared the counter, the lock and the level
HELD = "until unlocked"  # the audit's and the log's word for a lock with no end

DEFAULT_STEPS = (15, 60, 24 * 60)  # minutes of the first, second and third lock


@dataclass(frozen=True)
class PinStatus:
    failures: int = 0  # wrong PINs in the current series (since the last success, unlock or lock end)
    locked_until: datetime | None = None  # UTC end of a timed lock; None: no timed lock
    level: int = 0  # locks since the last success or unlock
    held: bool = False  # locked until an operator unlocks

    @property
    def locked(self) -> bool:
        """Whether a lock is in effect; statuses handed out never carry an expired one."""
        return self.held or self.locked_until is not None

    def describe(self) -> str:
        """The lock in words, for logs and the audit trail."""
        if self.held:
            return HELD
        return to_text(self.locked_until) if self.locked_until is not None else "not locked"


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
    steps: tuple[int, ...] = DEFAULT_STEPS  # minutes per lock level; beyond the last: held

    def __post_init__(self) -> None:
        if self.attempts < 1 or not self.steps or min(self.steps) < 1:
            raise ValueError(f"lockout needs at least 1 attempt and locks of at least 1 minute, not {self}")

    def lock_minutes(self, level: int) -> int | None:
        """The length of the `level`-th lock (1-based); None: held until unlocked."""
        return self.steps[level - 1] if level <= len(self.steps) else None


def effective(stored: PinStatus, now: datetime) -> PinStatus:
    """A timed lock that has run out is gone, and with it its series; the level stays."""
    if stored.locked_until is not None and now >= stored.locked_until:
        return PinStatus(level=stored.level)
    return stored


def pin_matches(expected: str, given: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII str, and callers may pass anything.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def after_failure(status: PinStatus, now: datetime, policy: LockoutPolicy) -> PinStatus:
    failures = status.failures + 1
    if failures < policy.attempts:
        return PinStatus(failures, None, status.level)
    level = status.level + 1
    minutes = policy.lock_minutes(level)
    if minutes is None:
        return PinStatus(failures, None, level, held=True)
    return PinStatus(failures, now + timedelta(minutes=minutes), level)


def attempt(status: PinStatus, ok: bool, now: datetime,
            policy: LockoutPolicy) -> tuple[PinStatus, list[tuple[str, str, str]]]:
    """The status after one compared PIN, and its audit events as (event, old, new): the failure
    count before and after, and the lock when this attempt made one."""
    new = PinStatus() if ok else after_failure(status, now, policy)
    events = [(PIN_OK if ok else PIN_FAILED, str(status.failures), str(new.failures))]
    if new.locked:
        events.append((PIN_LOCKED, str(new.level), new.describe()))
    return new, events
