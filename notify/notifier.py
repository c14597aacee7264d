"""Queue notices durably, send them in the background, retry with backoff, log what is given up.

`notify()` only writes the outbox (in a worker thread, so the event loop never waits on disk) and
wakes `run()`; gateways are never called on the caller's path, so a slow or broken gateway cannot
hold up a call. Rows are claimed with a lease before sending, so a process that dies mid-send, or
a second process on the same outbox, leads at worst to a repeat, never to a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import tzinfo
from pathlib import Path
from typing import TypeVar

from base import metrics

from .email import EmailGateway
from .errors import DeliveryError
from .notice import VoicemailNotice, sms_text
from .outbox import Entry, Outbox
from .sms import SmsGateway

log = logging.getLogger(__name__)
T = TypeVar("T")

IDLE = 30.0  # longest sleep: also picks up rows another process queued
SWEEP_EVERY = 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    # Wait after the 1st, 2nd, ... failed attempt; the last value repeats.
    backoff: tuple[float, ...] = (10.0, 60.0, 300.0, 1800.0)
    max_attempts: int = 8  # with the default backoff: given up about 2.6 hours after the first try

    def __post_init__(self) -> None:
        if not self.backoff or any(b < 0 for b in self.backoff) or self.max_attempts < 1:
            raise ValueError("backoff needs non-negative delays and max_attempts at least 1")

    def delay(self, failed_attempts: int) -> float:
        return self.backoff[min(failed_attempts, len(self.backoff)) - 1]


class Notifier:
    """`await notify(...)` from call handling; `run()` as one background task per process."""

    def __init__(
        self,
        outbox: Path,
        *,
        sms: SmsGateway | None = None,
        email: EmailGateway | None = None,
        policy: RetryPolicy = RetryPolicy(),
        tz: tzinfo | None = None,
        clock: Callable[[], float] = time.time,
        lease: float = 300.0,
        concurrency: int = 4,
        keep_given_up: float = 30 * 86400.0,
    ) -> None:
        self.outbox_path = outbox
        self.sms = sms
        self.email = email
        self.policy = policy
        self.tz = tz  # the zone the texts show times in; None: as the caller gave them
        self.clock = clock  # wall-clock seconds: due times must mean the same after a restart
        self.lease = lease  # longer than any send may take
        self.keep_given_up = keep_given_up
        self._concurrency = concurrency
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vipbx-outbox")
        self._box: Outbox | None = None  # opened in the worker thread, used only there
        self._warned: set[str] = set()
        self._last_sweep = float("-inf")

    # --- the caller's side ---------------------------------------------------------------

    async def notify(self, notice: VoicemailNotice, *, sms: bool = True, email: bool = False) -> None:
        """Queue the notice for the channels asked for; returns once the outbox row is on disk.
        Never raises for gateway trouble: that is retried in `run()`, then logged."""
        channels = [name for name, wanted in (("sms", sms), ("email", email))
                    if wanted and self._can_send(name, notice)]
        if not channels:
            return
        if self.tz is not None:
            notice = replace(notice, received=notice.received.astimezone(self.tz))
        now = self.clock()
        try:
            ids = await self._db(lambda box: box.add(notice, channels, now))
        except Exception:  # disk full, unreadable outbox: the voicemail itself is stored already
            log.exception("could not queue %s notification of message %s for %s/%s",
                          "+".join(channels), notice.msg_id, notice.tenant_id, notice.user_id)
            return
        log.info("queued %s notification of message %s for %s/%s (outbox %s)",
                 "+".join(channels), notice.msg_id, notice.tenant_id, notice.user_id, ids)
        self._wake.set()

    def _can_send(self, channel: str, notice: VoicemailNotice) -> bool:
        if channel == "email" and not notice.email:
            log.info("no e-mail address for %s/%s: no e-mail notification", notice.tenant_id, notice.user_id)
            return False
        if self._gateway(channel) is None:
            # Not configured is a setting, not a failure: say it once, queue nothing.
            if channel not in self._warned:
                self._warned.add(channel)
                log.warning("no %s gateway configured: %s notifications are not sent", channel, channel)
            return False
        return True

    # --- the background side -------------------------------------------------------------

    async def run(self) -> None:
        """Send due rows, sleep until the next is due or `notify()` wakes us; until cancelled."""
        try:
            waiting = await self._db(lambda box: box.count("pending"))
            if waiting:
                log.info("outbox %s: %d notification(s) waiting from before", self.outbox_path, waiting)
        except Exception:  # the loop below keeps trying and logging
            log.exception("outbox %s cannot be read", self.outbox_path)
        while True:
            self._wake.clear()  # before looking, so a notify() during the look is not missed
            attempted = 0
            try:
                await self._sweep_now_and_then()
                attempted = await self.run_once()
                next_at = await self._db(lambda box: box.next_due(self._channels()))
                await self._count_waiting()
                delay = IDLE if next_at is None else min(IDLE, next_at - self.clock())
            except Exception:  # e.g. the disk: keep the task alive and try again later
                log.exception("outbox %s: sending round failed", self.outbox_path)
                delay = IDLE
            if delay <= 0 and attempted == 0:
                delay = 0.5  # due rows someone else holds: do not spin
            if delay > 0:
                try:  # asyncio.timeout: wait_for (3.11) may swallow a cancel as the wait ends
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def run_once(self) -> int:
        """One round: claim every due row and try each once. Returns how many were tried."""
        now = self.clock()
        channels = self._channels()

        def claim(box: Outbox) -> list[Entry]:
            # A small batch: claimed rows wait for the semaphore, and their lease runs meanwhile.
            due = box.due(now, channels, limit=2 * self._concurrency)
            return [entry for entry in due if box.claim(entry, now, self.lease)]

        claimed = await self._db(claim)
        results = await asyncio.gather(*(self._attempt(entry) for entry in claimed), return_exceptions=True)
        for entry, result in zip(claimed, results):
            if isinstance(result, Exception):  # the outbox itself failed; the lease brings the row back
                log.error("outbox row %d: %s: %s", entry.id, type(result).__name__, result)
        return len(claimed)

    async def _attempt(self, entry: Entry) -> None:
        notice = entry.notice
        attempt = entry.attempts + 1
        try:
            await self._sem.acquire()
        except asyncio.CancelledError:
            # Stopped before this row's send began: due again at once, not after the lease (nothing
            # went out, so sending it later cannot send it twice).
            with contextlib.suppress(Exception):
                await asyncio.shield(self._db(lambda box: box.retry_at(entry.id, self.clock(), "not sent: stopped")))
            raise
        try:
            try:
                async with asyncio.timeout(self.lease * 0.8):  # never outlive the claim
                    if entry.channel == "sms":
                        assert self.sms is not None
                        await self.sms.send(notice.user_number, sms_text(notice))
                    else:
                        assert self.email is not None
                        await self.email.send(notice, entry.attachment)
            except Exception as exc:  # noqa: BLE001  # any gateway failure, typed or not, is retried
                await self._failed(entry, attempt, exc)
                return
        finally:
            self._sem.release()
        await self._db(lambda box: box.sent(entry.id))
        metrics.notifications.labels(entry.channel, "sent").inc()
        log.info("sent %s notification of message %s to %s/%s (attempt %d)",
                 entry.channel, notice.msg_id, notice.tenant_id, notice.user_id, attempt)

    async def _failed(self, entry: Entry, attempt: int, exc: Exception) -> None:
        notice = entry.notice
        error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        what = f"{entry.channel} notification of message {notice.msg_id} to {notice.tenant_id}/{notice.user_id}"
        permanent = isinstance(exc, DeliveryError) and exc.permanent
        if permanent or attempt >= self.policy.max_attempts:
            await self._db(lambda box: box.give_up(entry.id, error))
            metrics.notifications.labels(entry.channel, "given_up").inc()
            log.error("gave up %s after %d attempt(s)%s: %s", what, attempt,
                      " (permanent failure)" if permanent else "", error)
            return
        delay = self.policy.delay(attempt)
        await self._db(lambda box: box.retry_at(entry.id, self.clock() + delay, error))
        metrics.notifications.labels(entry.channel, "retry").inc()
        log.warning("%s failed (attempt %d of %d), retrying in %g s: %s",
                    what, attempt, self.policy.max_attempts, delay, error)

    async def _sweep_now_and_then(self) -> None:
        now = self.clock()
        if now - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = now
            await self._db(lambda box: box.sweep(now, self.keep_given_up))

    async def _count_waiting(self) -> None:
        waiting = await self._db(lambda box: box.pending_by_channel())
        for channel in ("sms", "email"):
            metrics.notifier_queue.labels(channel).set(waiting.get(channel, 0))

    # --- plumbing ------------------------------------------------------------------------

    async def entries(self, state: str | None = None) -> list[Entry]:
        """The outbox's rows ('pending', 'given_up' or all), for ops and tests."""
        return await self._db(lambda box: box.entries(state))

    async def close(self) -> None:
        def shut(box: Outbox) -> None:
            box.close()
            self._box = None

        if self._box is not None:
            await self._db(shut)
        self._executor.shutdown(wait=True)

    def _gateway(self, channel: str) -> object | None:
        return self.sms if channel == "sms" else self.email

    def _channels(self) -> list[str]:
        return [name for name in ("sms", "email") if self._gateway(name) is not None]

    async def _db(self, fn: Callable[[Outbox], T]) -> T:
        def call() -> T:
            if self._box is None:
                self._box = Outbox(self.outbox_path)
            return fn(self._box)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
