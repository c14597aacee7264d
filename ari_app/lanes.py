"""Bounded, per-channel ordered running of ARI event handlers.

Every event belongs to a lane: its channel (or the channel its playback or recording is on), else
one shared lane. Within a lane events start in arrival order; up to `runs` of them run at once, so
a handler that waits (for a later event of the same channel, say) does not hold up the next one.
Beyond that they wait in the lane, at most `queue` of them: a lane that is full drops what a caller
can flood (keys, talk detection, ...) and keeps what ends a wait of ours (a playback or recording
finished, the channel gone), whose number our own requests bound. Across all lanes at most
`total` events are held; the reader waits for room, so the websocket, not our memory, absorbs a
flood. Other channels' events keep flowing while one channel floods.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Runner = Callable[[Event], list[Awaitable[None]]]

# Never dropped: each ends a wait of a handler, or the call.
ESSENTIAL = frozenset({
    "StasisStart", "StasisEnd", "ChannelDestroyed", "ChannelHangupRequest", "ChannelStateChange",
    "PlaybackStarted", "PlaybackFinished", "PlaybackFailed",
    "RecordingStarted", "RecordingFinished", "RecordingFailed",
    "ApplicationReplaced", "ApplicationMoveFailed",
})


def lane_of(event: Event) -> str:
    """The channel an event is about, "" when none."""
    channel = event.get("channel")
    if isinstance(channel, dict) and channel.get("id"):
        return str(channel["id"])
    for key in ("playback", "recording"):
        thing = event.get(key)
        target = str(thing.get("target_uri", "")) if isinstance(thing, dict) else ""
        if target.startswith("channel:"):
            return target.removeprefix("channel:")
    return ""


@dataclass
class _Lane:
    running: int = 0
    waiting: deque[Event] = field(default_factory=deque)
    dropped: int = 0


class EventLanes:
    def __init__(self, start: Callable[[Event, Callable[[], None]], None], *,
                 runs: int = 32, queue: int = 256, total: int = 4096) -> None:
        """`start(event, done)` runs the handlers of an event and calls `done()` once they have
        all finished (or failed)."""
        self._start = start
        self.runs = runs
        self.queue = queue
        self._room = asyncio.Semaphore(total)
        self._lanes: dict[str, _Lane] = {}
        self.stalls = 0  # times the reader had to wait for room

    @property
    def held(self) -> int:
        """Events running or waiting, all lanes together."""
        return sum(lane.running + len(lane.waiting) for lane in self._lanes.values())

    def waiting(self, channel: str) -> int:
        lane = self._lanes.get(channel)
        return len(lane.waiting) if lane else 0

    async def admit(self, event: Event) -> None:
        """Run the event now, queue it behind its lane, or drop it (a full lane, a floodable
        event). Waits while `total` events are held."""
        key = lane_of(event)
        lane = self._lanes.get(key)
        if lane is not None and len(lane.waiting) >= self.queue and event.get("type") not in ESSENTIAL:
            lane.dropped += 1
            if lane.dropped == 1:
                log.warning("ARI events: channel %s floods us; its %s and later such events are dropped "
                            "while %d wait", key or "(none)", event.get("type"), len(lane.waiting))
            return
        if self._room.locked():
            self.stalls += 1  # the reader parks here: the websocket absorbs what follows
        await self._room.acquire()
        lane = self._lanes.setdefault(key, _Lane())  # it may have gone while we waited
        if lane.running < self.runs and not lane.waiting:
            self._run(key, lane, event)
        else:
            lane.waiting.append(event)

    def _run(self, key: str, lane: _Lane, event: Event) -> None:
        lane.running += 1
        self._start(event, lambda: self._finished(key, lane))

    def _finished(self, key: str, lane: _Lane) -> None:
        lane.running -= 1
        self._room.release()
        if lane.waiting:
            self._run(key, lane, lane.waiting.popleft())
        elif lane.running == 0 and self._lanes.get(key) is lane:
            if lane.dropped:
                log.info("ARI events: channel %s: %d events dropped in all", key or "(none)", lane.dropped)
            del self._lanes[key]

    def clear(self) -> None:
        """Forget what waits (the client is closing)."""
        for lane in self._lanes.values():
            for _ in lane.waiting:
                self._room.release()
            lane.waiting.clear()
