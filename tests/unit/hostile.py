"""A random caller for property tests of the IVRs: every playback and recording the application
starts is one `Moment` of a plan (keys while it plays, keys once it has ended, or a hang-up instead
of its end); a plan used up hangs up at the next prompt. The fake Asterisk behaves as the real one
where the IVRs depend on it: a channel the application hangs up or sends back to the dialplan
leaves Stasis (StasisEnd), a stopped playback still reports its end.

What a call changed is compared with `ari_app.testing.Snapshot`."""

from __future__ import annotations

import asyncio
import logging
import re
import wave
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st
from pluginharness import PluginHarness

from ari_app.client import AriClient
from ari_app.testing import FakeAri, channel
from base.model import Config
from callstate import CallStateService
from vmstore import VoicemailStore

KEYS = "0123456789*#"
CALL_LIMIT = 20.0  # seconds: a call that has not ended by then is stuck


@dataclass(frozen=True)
class Moment:
    during: str = ""  # pressed while the prompt plays (it is cut short)
    after: str = ""  # pressed after its end, while the application waits for an answer
    hang_up: bool = False  # the caller hangs up while it plays (after `during`)


def moments(max_size: int = 25) -> st.SearchStrategy[list[Moment]]:
    keys = st.text(alphabet=KEYS, max_size=4)
    moment = st.builds(Moment, keys, keys, st.integers(0, 15).map(lambda n: n == 0))
    return st.lists(moment, max_size=max_size)


def write_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\1" * int(8000 * seconds))


@dataclass
class Trace:
    """What one call did: the prompts (labels) with the keys pressed at each, in order."""

    steps: list[tuple[str, str]] = field(default_factory=list)

    @property
    def keys(self) -> str:
        return "".join(keys for _, keys in self.steps)

    def keys_from(self, index: int) -> str:
        return "".join(keys for _, keys in self.steps[index:])

    def heard(self, name: str) -> bool:
        return any(name in label.split(",") for label, _ in self.steps)


class ErrorLog(logging.Handler):
    """ERROR records of the application's own loggers (a handler that raised, for one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @contextmanager
    def attached(self) -> Iterator[ErrorLog]:
        root = logging.getLogger()
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)


class RandomCaller(PluginHarness):
    """A plugin's Stasis entries, driven by one plan per call."""

    def __init__(self, fake: FakeAri, client: AriClient, state: CallStateService, tmp: Path,
                 plugin: Any, config: Config) -> None:
        super().__init__(fake, client, state, tmp / "sounds", plugin, config)
        self.store = VoicemailStore(tmp / "spool")  # the plugin's spool
        self.recordings = tmp / "recording"
        self.plans: dict[str, list[Moment]] = {}
        self.traces: dict[str, Trace] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, str] = {}  # what GET /channels/ID/variable answers
        self.serial = 0
        fake.route("POST", r"/channels/([^/]+)/record", self._record)
        fake.route("DELETE", r"/channels/([^/]+)", self._leaves)
        fake.route("POST", r"/channels/([^/]+)/continue", self._leaves)
        fake.route("GET", r"/channels/([^/]+)/variable", self._variable)

    # --- a call ---------------------------------------------------------------------------

    async def call(self, args: list[str], plan: list[Moment], *, number: str,
                   variables: dict[str, str] | None = None) -> tuple[str, Trace]:
        """A call into Stasis(vipbx,ARGS...) from `number`, played out by `plan`, until its handler
        has ended; (channel id, what happened)."""
        self.serial += 1
        channel_id = f"h{self.serial}"
        running_before = asyncio.all_tasks()
        chan = channel(channel_id, app_data="vipbx," + ",".join(args), number=number)
        chan["channelvars"] = dict(variables or {})
        self.channels[channel_id] = chan
        self.plans[channel_id] = list(plan)
        self.traces[channel_id] = trace = Trace()
        self.fake.channels[channel_id] = chan
        await self.fake.send({"type": "StasisStart", "args": args, "channel": chan})
        try:
            # Every handler's first move is a request about its channel.
            await self.until(lambda: self._seen(channel_id), 5)
            await self.until(lambda: channel_id not in self.app.sessions and not self.app._tasks, CALL_LIMIT)
        except TimeoutError:
            raise AssertionError(f"call stuck: {trace.steps}") from None
        try:  # nothing the call started is left running (the fake's own events included)
            await self.until(lambda: not (asyncio.all_tasks() - running_before - {asyncio.current_task()}), 5)
        except TimeoutError:
            raise AssertionError(f"tasks left after the call: {asyncio.all_tasks() - running_before}") from None
        self.fake.channels.pop(channel_id, None)
        return channel_id, trace

    def _seen(self, channel_id: str) -> bool:
        return any(f"/channels/{channel_id}" in r.url.path for r in self.fake.requests)

    def continued(self, channel_id: str) -> list[httpx.Request]:
        return self.calls("POST", f"/channels/{channel_id}/continue")

    # --- the fake Asterisk ----------------------------------------------------------------

    def _next(self, channel_id: str, label: str) -> Moment:
        plan = self.plans.get(channel_id)
        moment = plan.pop(0) if plan else Moment(hang_up=True)
        self.traces[channel_id].steps.append((label, moment.during + moment.after))
        return moment

    async def _keys(self, channel_id: str, keys: str) -> None:
        for key in keys:
            await self.fake.send({"type": "ChannelDtmfReceived", "digit": key, "channel": self.channels[channel_id]})

    async def _hang_up(self, channel_id: str) -> None:
        chan = self.channels[channel_id]
        await self.fake.send({"type": "StasisEnd", "channel": chan})
        await self.fake.send({"type": "ChannelDestroyed", "channel": chan})

    async def playing(self, channel_id: str, playback_id: str, request: httpx.Request) -> None:
        label = ",".join(uri.rsplit("/", 1)[-1] for uri in request.url.params["media"].split(","))
        moment = self._next(channel_id, label)
        await self._keys(channel_id, moment.during)
        if moment.hang_up:
            await self._hang_up(channel_id)
            return
        await super().playing(channel_id, playback_id, request)
        await self._keys(channel_id, moment.after)

    def _record(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        channel_id, name = match.group(1), request.url.params["name"]
        moment = self._next(channel_id, "recording")
        # An odd number of keys: a recording too short to keep.
        write_wav(self.recordings / f"{name}.wav", 0.1 if len(moment.during) % 2 else 2.0)

        async def finish() -> None:
            await self._keys(channel_id, moment.during)
            if moment.hang_up:
                await self._hang_up(channel_id)
                return
            await self.fake.send({"type": "RecordingFinished", "recording": {
                "name": name, "target_uri": f"channel:{channel_id}", "state": "done"}})
            await self._keys(channel_id, moment.after)

        asyncio.get_running_loop().create_task(finish())
        return httpx.Response(201, json={"name": name, "target_uri": f"channel:{channel_id}", "state": "queued"})

    def _leaves(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        """Hung up or back to the dialplan: the channel leaves Stasis, as in Asterisk."""
        channel_id = match.group(1)
        if channel_id in self.channels:
            asyncio.get_running_loop().create_task(self._hang_up(channel_id))
        return httpx.Response(204)

    def _variable(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        name = request.url.params["variable"]
        if name not in self.variables:
            return httpx.Response(404, json={"message": "Provided variable was not found"})
        return httpx.Response(200, json={"value": self.variables[name]})


def run_on(loop: asyncio.AbstractEventLoop) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Runs coroutines on one event loop kept across hypothesis examples."""
    return loop.run_until_complete
