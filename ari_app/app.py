"""The Stasis application: routes each channel that enters `Stasis(APP,ENTRY,ARGS...)` to the
handler of ENTRY, and gives every call back to the dialplan when we cannot or should not keep it.

A call never dies because of us: an entry with no handler, a handler that raises, and a channel
found in our app after a reconnect with nobody serving it are all continued into the dialplan,
where the line after every Stasis() is the native fallback (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from base import logcontext, metrics

from .client import AriClient
from .session import CallSession, ChannelGone

log = logging.getLogger(__name__)

Handler = Callable[[CallSession], Awaitable[None]]

# After a reconnect, a channel listed by GET /channels may still have its StasisStart in flight
# on the websocket; wait this long before calling it an orphan.
RESYNC_GRACE_SECONDS = 0.5


def stasis_args(channel: dict[str, Any], app: str) -> list[str] | None:
    """The Stasis() arguments (entry first) if the channel sits in Stasis(app,...), else None."""
    dialplan = channel.get("dialplan") or {}
    if str(dialplan.get("app_name", "")).lower() != "stasis":
        return None
    parts = [part.strip() for part in str(dialplan.get("app_data", "")).split(",")]
    if parts[0] != app:
        return None
    return parts[1:]


class StasisApp:
    def __init__(
        self,
        client: AriClient,
        handlers: Mapping[str, Handler],
        *,
        resync_grace: float = RESYNC_GRACE_SECONDS,
        resumers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.client = client
        self.handlers = dict(handlers)
        # Entries whose calls a restarted app takes up where the last one left them (a deposit
        # still recording); the others go back to the dialplan's fallback.
        self.resumers = dict(resumers or {})
        self.resync_grace = resync_grace
        self.sessions: dict[str, CallSession] = {}  # channel id -> live session
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Sessions begun while a re-sync runs: served (maybe done already), never orphans, and
        # newer than the channel list, so never reaped by it either.
        self._resync_seen: list[set[str]] = []
        client.on_event(self.on_event)
        client.on_connect(self.resync)

    async def run(self) -> None:
        await self.client.run()

    # --- events -----------------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        # Everything up to the first await runs in event order (see AriClient._dispatch), so
        # sessions are registered and fed before any later event of the same channel.
        kind = event.get("type")
        channel_id = self._channel_of(event)
        if kind == "StasisStart":
            self._start(event)
            return
        if kind == "ApplicationReplaced":
            log.error("another client took over ARI app %s: no more events for us", self.client.app)
            return
        session = self.sessions.get(channel_id or "")
        if session is None:
            return
        session.feed(event)
        if kind in ("StasisEnd", "ChannelDestroyed"):
            # Gone from our app: a later StasisStart of the same channel is a new session.
            self.sessions.pop(session.id, None)

    @staticmethod
    def _channel_of(event: dict[str, Any]) -> str | None:
        if "channel" in event:
            return str(event["channel"].get("id", ""))
        for key in ("playback", "recording"):
            target = str(event.get(key, {}).get("target_uri", ""))
            if target.startswith("channel:"):
                return target.removeprefix("channel:")
        return None

    def _start(self, event: dict[str, Any]) -> None:
        channel = event["channel"]
        args = [str(arg) for arg in event.get("args", [])]
        entry, rest = (args[0], args[1:]) if args else ("", [])
        session = CallSession(self.client, channel, entry, rest)
        self._register(session)
        handler = self.handlers.get(entry)
        if handler is None:
            log.warning("%r: no handler for entry %r, continuing in the dialplan", session, entry)
            self._spawn(session, self._give_back(session))
        else:
            log.info("%r: StasisStart from %s", session, session.caller_number or "unknown")
            self._spawn(session, self._serve(session, handler), in_ivr=True)

    def _register(self, session: CallSession) -> None:
        stale = self.sessions.get(session.id)
        if stale is not None:
            # Same id, new call: Asterisk restarted within the second its ids are based on, and
            # the old channel's end was never seen. Its handler must stop.
            stale.mark_gone()
        self.sessions[session.id] = session
        for seen in self._resync_seen:
            seen.add(session.id)

    def _spawn(self, session: CallSession, coro: Awaitable[None], *, in_ivr: bool = False) -> None:
        """`in_ivr`: a handler serves the call, counted in the IVR metrics while it does (a call
        given straight back is not in an IVR)."""
        task = asyncio.ensure_future(coro)
        self._tasks[session.id] = task
        if in_ivr:
            metrics.ivr_calls.labels(session.entry).inc()
            metrics.ivr_active.labels(session.entry).inc()

        def done(_: asyncio.Task[None]) -> None:
            if in_ivr:
                metrics.ivr_active.labels(session.entry).dec()
            if self._tasks.get(session.id) is task:
                del self._tasks[session.id]
            if self.sessions.get(session.id) is session:
                del self.sessions[session.id]

        task.add_done_callback(done)

    async def _serve(self, session: CallSession, handler: Handler) -> None:
        # Every line logged for this call names it (this task's own context; see logcontext).
        logcontext.bind(call_id=session.id, tenant=session.vars.get("VIPBX_TENANT"), user=session.vars.get("VIPBX_USER"))
        try:
            await handler(session)
        except ChannelGone:
            log.info("%r: caller gone", session)
            return
        except Exception:
            log.exception("%r: handler failed, continuing in the dialplan", session)
            metrics.ivr_failures.labels(session.entry).inc()
            await self._give_back(session)
            return
        if not session.gone and not session.disposed:
            # The handler is done with a call it did not pass on: end it.
            await self._quietly(session.hangup())

    async def _give_back(self, session: CallSession) -> None:
        await self._quietly(session.continue_in_dialplan())

    async def _quietly(self, move: Awaitable[None]) -> None:
        try:
            await move
        except ChannelGone:
            pass
        except Exception as exc:  # noqa: BLE001 - last resort: must never raise
            log.warning("giving the call back failed: %s", exc)

    # --- re-sync ------------------------------------------------------------------------

    async def resync(self) -> None:
        """After each (re)connect: serve channels that sit in our app with no session."""
        # Events may have been lost while the socket was down: a wait for a "finished" event asks
        # Asterisk now whether its playback or recording still runs.
        for live in list(self.sessions.values()):
            live.recheck()
        seen: set[str] = set()
        self._resync_seen.append(seen)
        try:
            try:
                channels = await self.client.get("/channels")
            except Exception as exc:  # noqa: BLE001 - the next reconnect tries again
                log.warning("re-sync: cannot list channels: %s", exc)
                return
            ours = {c["id"] for c in channels if stasis_args(c, self.client.app) is not None}
            orphans = [c for c in channels if c["id"] in ours and c["id"] not in self.sessions]
            if orphans:
                await asyncio.sleep(self.resync_grace)
        finally:
            self._resync_seen.remove(seen)
        # Sessions whose channel vanished while we were away (e.g. Asterisk restarted): no
        # StasisEnd will ever come, so end them here or their handlers wait forever.
        for session in list(self.sessions.values()):
            if session.id not in ours and session.id not in seen:
                log.warning("%r: channel gone while we were disconnected", session)
                session.mark_gone()
                self.sessions.pop(session.id, None)
        for channel in orphans:
            if channel["id"] in self.sessions or channel["id"] in seen:
                continue  # its StasisStart arrived meanwhile
            args = stasis_args(channel, self.client.app) or []
            entry, rest = (args[0], args[1:]) if args else ("", [])
            session = CallSession(self.client, channel, entry, rest)
            session.resumed = True
            self._register(session)
            self._spawn(session, self._resume(session))

    async def _resume(self, session: CallSession) -> None:
        log.warning("%r: found in our app after a reconnect with no session", session)
        try:
            await self.resume_orphan(session)
        except ChannelGone:
            pass
        except Exception:
            log.exception("%r: resuming failed, continuing in the dialplan", session)
            await self._give_back(session)

    async def resume_orphan(self, call: CallSession) -> None:
        """What to do with a call that was in our app when we lost it (e.g. an app restart): the
        entry's resumer if it has one (`call.entry` and `call.args` are as at start), else back to
        the dialplan, whose fallback after Stasis() takes over."""
        resumer = self.resumers.get(call.entry)
        if resumer is None:
            await call.continue_in_dialplan()
            return
        await resumer(call)
        if not call.gone and not call.disposed:
            await self._quietly(call.hangup())

    # --- shutdown -----------------------------------------------------------------------

    async def shutdown(self, timeout: float = 2.0) -> None:
        """Stop every handler and hand its call back to the dialplan (best effort). A call being
        recorded stays in Asterisk's hands instead, still recording: the next start takes it up
        (a restart or an upgrade cuts no message in two)."""
        tasks = list(self._tasks.values())
        recording = [s for s in self.sessions.values() if s.recording and not s.gone and s.entry in self.resumers]
        live = [s for s in self.sessions.values() if not s.gone and not s.disposed and s not in recording]
        if recording:
            log.info("shutdown: %d call(s) left recording in Asterisk for the next start", len(recording))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if live:
            moves = asyncio.gather(*(self._give_back(s) for s in live), return_exceptions=True)
            try:
                await asyncio.wait_for(moves, timeout)
            except TimeoutError:
                log.warning("shutdown: %d calls not handed back in time", len(live))
        self.sessions.clear()
