"""One call in our Stasis app, as a handler sees it: the channel, its entry and arguments, and the
basic moves (answer, play with barge-in, collect digits, hang up, back to the dialplan).

The StasisApp feeds the session the channel's events (`feed`); everything else is ARI requests.
Once the channel has hung up or left the app, every move raises `ChannelGone` so a handler stops
where it is without checking after each step.

No wait for an Asterisk event is unbounded: a "finished" event may be lost (e.g. while the event
socket reconnects), so a playback or recording that has not reported for a while, or any of them
after a reconnect (`recheck`), is looked up over REST; one that Asterisk no longer knows has ended.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from base import metrics

from .client import AriClient, AriError

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long to wait for Asterisk to confirm that a barged-in prompt has stopped.
STOP_CONFIRM_SECONDS = 1.0
# With no "finished" event for this long, ask Asterisk whether a playback or recording still runs.
# Most prompts are shorter; a long message costs one GET per interval.
FINISHED_CHECK_SECONDS = 15.0
# Playback and recording states after which no "finished" event is to be expected any more.
ENDED_STATES = frozenset({"done", "failed", "canceled", "cancelled"})


class ChannelGone(Exception):
    """The channel hung up or left our Stasis app: the handler has nothing left to do."""


# Keys typed ahead that are kept; a mailbox number, a PIN and a few menu choices fit many times.
KEYS_AHEAD = 64


class Keys:
    """The keys the caller pressed and nobody has taken yet. Unlike asyncio.Queue, a key can be put
    back in front (`push_back`), and a `get` cancelled while waiting never loses one."""

    def __init__(self, limit: int = KEYS_AHEAD) -> None:
        self._keys: deque[str] = deque()
        self._arrived = asyncio.Event()
        self.limit = limit
        self.dropped = 0
        self.waiting = 0  # readers waiting for a key now (a menu, a PIN, a prompt one may talk over)

    def put(self, key: str) -> None:
        if len(self._keys) >= self.limit:
            # A caller (or a machine) typing far ahead of every menu: the extra keys would only
            # grow memory and be answered one by one long after the call.
            self.dropped += 1
            return
        self._keys.append(key)
        self._arrived.set()

    def push_back(self, key: str) -> None:
        self._keys.appendleft(key)
        self._arrived.set()

    def empty(self) -> bool:
        return not self._keys

    def get_nowait(self) -> str:
        return self._keys.popleft()

    async def get(self) -> str:
        self.waiting += 1
        try:
            while not self._keys:
                self._arrived.clear()
                await self._arrived.wait()
        finally:
            self.waiting -= 1
        return self._keys.popleft()


class CallSession:
    def __init__(self, client: AriClient, channel: dict[str, Any], entry: str, args: Sequence[str]) -> None:
        self.client = client
        self.channel = channel
        self.id: str = channel["id"]
        self.entry = entry
        self.args: list[str] = list(args)
        # Variables listed in ari.conf `channelvars`, kept current from ChannelVarset events.
        self.vars: dict[str, str] = dict(channel.get("channelvars") or {})
        self.resumed = False  # True when picked up by a re-sync rather than a StasisStart
        self.last_terminator = ""  # the key that ended the last get_digits / read, "" if none
        self.disposed = False  # we hung it up or sent it back to the dialplan
        self.recording: str | None = None  # the name of the recording being waited for, if any
        self._gone = asyncio.Event()
        self._digits = Keys()
        self._key_at: float | None = None  # when the last key came that the IVR has not answered yet
        self._recheck = asyncio.Event()  # set by `recheck`: look up what we wait for now
        self._playbacks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._recordings: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"<CallSession {self.id} {self.entry}{self.args}>"

    @property
    def caller_number(self) -> str:
        return str(self.channel.get("caller", {}).get("number", ""))

    @property
    def gone(self) -> bool:
        return self._gone.is_set()

    async def wait_gone(self) -> None:
        await self._gone.wait()

    # --- events (called by StasisApp, synchronously and in order) ---------------------

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "ChannelDtmfReceived":
            # Timed only when something waits for it: a key typed ahead, or pressed during a
            # recording or a prompt that cannot be interrupted, is answered when the IVR gets
            # there, and that wait is not the IVR's slowness.
            if self._digits.waiting:
                self._key_at = time.monotonic()
            self._digits.put(event["digit"])
            metrics.ivr_keys.labels(self.entry).inc()
        elif kind in ("PlaybackFinished", "PlaybackFailed"):
            playback = event.get("playback", {})
            future = self._playbacks.pop(playback.get("id", ""), None)
            if future is not None and not future.done():
                future.set_result(playback)
        elif kind in ("RecordingFinished", "RecordingFailed"):
            recording = event.get("recording", {})
            future = self._recordings.pop(recording.get("name", ""), None)
            if future is not None and not future.done():
                future.set_result(recording)
        elif kind == "ChannelVarset" and "variable" in event:
            self.vars[event["variable"]] = event.get("value", "")
        elif kind in ("StasisEnd", "ChannelDestroyed"):
            self._gone.set()
        if "channel" in event and event["channel"].get("id") == self.id:
            self.channel = event["channel"]

    def mark_gone(self) -> None:
        """The channel is known to be gone without an event saying so (missed while away)."""
        self._gone.set()

    def recheck(self) -> None:
        """Events may have been missed (the event socket reconnected): a running wait for a
        playback or recording asks Asterisk now instead of at its next check."""
        self._recheck.set()

    @property
    def keys_waiting(self) -> bool:
        """A key was pressed that nobody has taken yet: the next prompt would not even start."""
        return not self._digits.empty()

    def push_back(self, key: str) -> None:
        """Put a key back as the next one pressed: a prompt it interrupted did not use it, so the
        next prompt is skipped and the next read or menu gets it."""
        self._digits.push_back(key)

    # --- the basic moves --------------------------------------------------------------

    async def answer(self) -> None:
        await self._call("POST", f"/channels/{self.id}/answer")

    async def progress(self) -> None:
        """Early media (SIP 183) on an unanswered channel: the caller hears what is played
        without the call being answered."""
        await self._call("POST", f"/channels/{self.id}/progress")

    async def hangup(self, reason: str = "normal") -> None:
        self.disposed = True
        await self._call("DELETE", f"/channels/{self.id}", reason=reason)

    async def continue_in_dialplan(
        self, context: str | None = None, exten: str | None = None, priority: int | None = None
    ) -> None:
        """Leave Stasis; with no arguments the dialplan goes on after our Stasis() line."""
        self.disposed = True
        await self._call(
            "POST", f"/channels/{self.id}/continue", context=context, extension=exten, priority=priority
        )

    async def get_var(self, name: str) -> str | None:
        """A channel variable or dialplan function, e.g. `REDIRECTING(from-num)`; None if unset."""
        try:
            answer = await self._call("GET", f"/channels/{self.id}/variable", variable=name)
        except AriError as exc:
            if exc.status == 404:  # unset variable (the channel itself is checked in _call)
                return None
            raise
        return None if answer is None else answer.get("value")

    async def set_var(self, name: str, value: str) -> None:
        await self._call("POST", f"/channels/{self.id}/variable", variable=name, value=value)

    async def play(self, media: str | Sequence[str], *, barge_in: bool = True, lang: str | None = None) -> str | None:
        """Play one or more media URIs (`sound:...`) to the end.

        With barge-in a DTMF key stops the prompt and is returned (a key pressed before the prompt
        started skips it). Without barge-in, keys stay queued for `get_digits`.
        """
        if barge_in and not self._digits.empty():
            return self._digits.get_nowait()
        playback_id = str(uuid.uuid4())
        finished: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._playbacks[playback_id] = finished
        try:
            await self._call(
                "POST",
                f"/channels/{self.id}/play/{playback_id}",
                media=[media] if isinstance(media, str) else list(media),
                lang=lang,
            )
            probe = functools.partial(self._probe, "playback", f"/playbacks/{playback_id}")
            done, digit = await self._until_finished(finished, probe, barge_in=barge_in)
            if done is finished:
                if finished.result().get("state") == "failed":
                    log.warning("%r: playback of %s failed", self, media)
                return None
            await self._stop_playback(playback_id, finished)
            return digit
        finally:
            self._playbacks.pop(playback_id, None)

    async def record(
        self,
        name: str,
        *,
        max_seconds: int,
        max_silence: int = 0,
        terminate_on: str = "#",
        beep: bool = True,
    ) -> dict[str, Any] | None:
        """Record the caller into `<spool>/recording/<name>.wav` until `terminate_on`, silence,
        `max_seconds` or hang-up. Returns the finished recording, or None when the caller hung up
        (Asterisk then keeps what was recorded: the caller of this method delivers the file)."""
        finished: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._recordings[name] = finished
        self.recording = name
        try:
            await self._call(
                "POST",
                f"/channels/{self.id}/record",
                name=name,
                format="wav",
                maxDurationSeconds=max_seconds,
                maxSilenceSeconds=max_silence,
                ifExists="overwrite",
                beep=beep,
                terminateOn=terminate_on or "none",
            )
            return await self._recording_end(name, finished)
        finally:
            self._recordings.pop(name, None)
            self.recording = None

    async def wait_recording(self, name: str) -> dict[str, Any] | None:
        """Wait for a recording this session did not start to end (one Asterisk kept running for
        the channel while the app restarted). As `record` answers."""
        finished: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._recordings[name] = finished
        self.recording = name
        self.recheck()  # it may have ended before we looked: ask at once
        try:
            return await self._recording_end(name, finished)
        finally:
            self._recordings.pop(name, None)
            self.recording = None

    async def _recording_end(self, name: str, finished: asyncio.Future[dict[str, Any]]) -> dict[str, Any] | None:
        # The name may hold a '/' (a subfolder): one path segment for ARI.
        probe = functools.partial(self._probe, "recording", f"/recordings/live/{quote(name, safe='')}")
        try:
            done, _ = await self._until_finished(finished, probe, barge_in=False)
        except ChannelGone:
            return None
        return done.result() if done is finished else None

    async def get_digits(self, max_digits: int = 1, timeout: float = 5.0, terminator: str = "#") -> str:
        """Up to `max_digits` keys, each within `timeout` s of the previous; the terminator key
        ends early and is not returned. An empty string means no key at all."""
        digits = ""
        self.last_terminator = ""
        while len(digits) < max_digits:
            try:
                _, digit = await self._first(None, self._digits.get(), timeout=timeout)
            except TimeoutError:
                self._key_at = None  # the wait for the next key was the caller's, not ours
                break
            if digit is not None and digit in terminator:
                self.last_terminator = digit
                break
            if digit is None:
                break
            digits += digit
        return digits

    async def read(self, media: str | Sequence[str], max_digits: int, timeout: float = 5.0, terminator: str = "#") -> str:
        """A prompt the caller may talk over, then the rest of a multi-key answer."""
        first = await self.play(media)
        if first is None:
            return await self.get_digits(max_digits, timeout, terminator)
        if first in terminator:
            self.last_terminator = first
            return ""
        return first + await self.get_digits(max_digits - 1, timeout, terminator)

    # --- plumbing ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, **params: Any) -> Any:
        if self.gone:
            raise ChannelGone(self.id)
        if self._key_at is not None:
            # The first request after a key is the IVR's answer to it (a prompt, a hang-up, ...).
            metrics.ivr_key_answer.labels(self.entry).observe(time.monotonic() - self._key_at)
            self._key_at = None
        try:
            return await self.client.request(method, path, params=params)
        except AriError as exc:
            # 404 on the channel itself: hung up; 409: no longer in our Stasis app.
            if exc.status == 409 or (exc.status == 404 and "channel" in exc.body.lower()):
                self._gone.set()
                raise ChannelGone(self.id) from exc
            raise

    async def _until_finished(
        self,
        finished: asyncio.Future[dict[str, Any]],
        probe: Callable[[], Awaitable[dict[str, Any] | None]],
        *,
        barge_in: bool,
    ) -> tuple[Any, str | None]:
        """`_first(finished, a key if barge_in)`, but a finished event that never comes is not
        waited for forever: every FINISHED_CHECK_SECONDS, and at once on `recheck`, `probe` asks
        Asterisk; what it finds ended counts as finished."""
        while True:
            digit_wait = self._digits.get() if barge_in else None
            try:
                return await self._first(finished, digit_wait, timeout=FINISHED_CHECK_SECONDS, wake=self._recheck)
            except TimeoutError:
                self._recheck.clear()
            ended = await probe()
            if ended is not None and not finished.done():
                log.warning("%r: no finished event for %s, but Asterisk has ended it", self, ended.get("id", ""))
                finished.set_result(ended)

    async def _probe(self, kind: str, path: str) -> dict[str, Any] | None:
        """The `kind` ("playback", "recording") at `path` if it has ended, else None. Asterisk
        forgets one when it ends: "Playback not found" (a 404 for any other reason, e.g. a path
        ARI does not route, proves nothing and is waited out)."""
        if self.gone:
            raise ChannelGone(self.id)
        name = unquote(path.rsplit("/", 1)[1])
        try:
            found = await self.client.get(path)
        except AriError as exc:
            if exc.status == 404 and f"{kind} not found" in exc.body.lower():
                return {"id": name, "name": name, "state": "done"}
            log.warning("%r: cannot look up %s: %s", self, path, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - e.g. Asterisk unreachable: look again later
            log.warning("%r: cannot look up %s: %s", self, path, exc)
            return None
        if isinstance(found, dict) and found.get("state") in ENDED_STATES:
            return found
        return None

    async def _first(
        self,
        future: asyncio.Future[Any] | None,
        aw: Awaitable[T] | None,
        timeout: float | None = None,
        wake: asyncio.Event | None = None,
    ) -> tuple[Any, T | None]:
        """Wait for `future` or `aw`, whichever comes first; ChannelGone if the call ends first,
        TimeoutError after `timeout` or when `wake` is set. Returns (None, result of aw) or
        (future, None)."""
        waiters: dict[asyncio.Future[Any], str] = {}
        if future is not None:
            waiters[future] = "future"
        if aw is not None:
            waiters[asyncio.ensure_future(aw)] = "aw"
        gone = asyncio.ensure_future(self._gone.wait())
        waiters[gone] = "gone"
        if wake is not None:
            waiters[asyncio.ensure_future(wake.wait())] = "wake"
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter, name in waiters.items():
                if name != "future" and not waiter.done():
                    waiter.cancel()
        if not done:
            raise TimeoutError
        # A key that arrived is never dropped, even if the prompt ended at the same moment.
        for waiter in done:
            if waiters[waiter] == "aw":
                return None, waiter.result()
        if future is not None and future.done():
            return future, None
        if gone.done():
            raise ChannelGone(self.id)
        raise TimeoutError  # woken: the caller looks up what it waits for

    async def _stop_playback(self, playback_id: str, finished: asyncio.Future[dict[str, Any]]) -> None:
        try:
            await self.client.delete(f"/playbacks/{playback_id}")
        except AriError as exc:
            if exc.status != 404:  # 404: it ended on its own meanwhile
                raise
        # Let the stop land before the next prompt, so prompts never overlap.
        try:
            await asyncio.wait_for(asyncio.shield(finished), STOP_CONFIRM_SECONDS)
        except TimeoutError:
            log.debug("%r: no PlaybackFinished after stop of %s", self, playback_id)
