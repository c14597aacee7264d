"""StasisApp and CallSession against a fake ARI (real websocket for events, MockTransport REST)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ari_app import client as client_module
from ari_app import session as session_module
from ari_app.app import StasisApp, stasis_args
from ari_app.client import AriClient
from ari_app.session import CallSession, ChannelGone
from ari_app.testing import FakeAri, channel


class Harness:
    """A fake ARI, a connected client and a StasisApp with the test's handlers."""

    def __init__(self, fake: FakeAri, client: AriClient) -> None:
        self.fake = fake
        self.client = client
        self.app: StasisApp | None = None
        self.task: asyncio.Task[None] | None = None
        self.auto_finish = True  # answer every play with PlaybackFinished
        self.events: list[dict[str, Any]] = []  # every event, once the app has routed it
        fake.route("POST", r"/channels/([^/]+)/play/([^/]+)", self._play)

    async def start(self, app: StasisApp) -> None:
        self.app = app
        # Registered after the app's own handler, so an event seen here has been routed by the app.
        self.client.on_event(self._record)
        self.task = asyncio.create_task(app.run())
        await self.client.wait_connected(5)
        await self.fake.wait_connections(1)

    async def _record(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def routed(self, kind: str, channel_id: str) -> bool:
        """The app has routed a `kind` event of the channel."""
        return any(e["type"] == kind and e.get("channel", {}).get("id") == channel_id for e in self.events)

    async def idle(self) -> None:
        """Until every handler task the app started has finished (what it did is all done)."""
        assert self.app is not None
        await self.until(lambda: not self.app._tasks and not self.app.sessions)

    def _play(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        channel_id, playback_id = match.groups()
        playback = {"id": playback_id, "target_uri": f"channel:{channel_id}", "state": "queued",
                    "media_uri": request.url.params["media"]}
        if self.auto_finish:
            asyncio.get_running_loop().create_task(self.finish(playback_id, channel_id))
        return httpx.Response(201, json=playback)

    async def finish(self, playback_id: str, channel_id: str, state: str = "done") -> None:
        await self.fake.send({"type": "PlaybackFinished",
                              "playback": {"id": playback_id, "target_uri": f"channel:{channel_id}", "state": state}})

    async def stasis_start(self, channel_id: str, *args: str, number: str = "+358401234567") -> None:
        chan = channel(channel_id, app_data=",".join(("vipbx",) + args), number=number)
        chan["channelvars"] = {"VIPBX_TENANT": "acme"}
        self.fake.channels[channel_id] = chan
        await self.fake.send({"type": "StasisStart", "args": list(args), "channel": chan})

    async def send(self, kind: str, channel_id: str, **extra: Any) -> None:
        await self.fake.send({"type": kind, "channel": channel(channel_id), **extra})

    async def hang_up(self, channel_id: str) -> None:
        self.fake.channels.pop(channel_id, None)
        await self.send("StasisEnd", channel_id)
        await self.send("ChannelDestroyed", channel_id)

    async def until(self, predicate: Any, timeout: float = 2.0) -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)

    def calls(self, method: str, pattern: str) -> list[httpx.Request]:
        return self.fake.calls(method, pattern)


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setattr(client_module, "BACKOFF_FIRST", 0.01)
    fake = FakeAri()
    await fake.start()
    client = AriClient(fake.base_url, fake.user, fake.password, fake.app, transport=fake.transport)
    harness = Harness(fake, client)
    yield harness
    if harness.app is not None:
        await harness.app.shutdown()
    await client.close()
    if harness.task is not None:
        await asyncio.wait_for(harness.task, 2)
    await fake.stop()


def test_stasis_args() -> None:
    assert stasis_args(channel("c", app_data="vipbx,deposit,acme,anna"), "vipbx") == ["deposit", "acme", "anna"]
    assert stasis_args(channel("c", app_data="vipbx"), "vipbx") == []
    assert stasis_args(channel("c", app_data="other,deposit"), "vipbx") is None
    assert stasis_args(channel("c"), "vipbx") is None


async def test_handler_gets_entry_args_and_vars(h: Harness) -> None:
    seen: list[CallSession] = []

    async def deposit(call: CallSession) -> None:
        seen.append(call)
        await call.answer()
        await call.hangup()

    await h.start(StasisApp(h.client, {"deposit": deposit}))
    await h.stasis_start("c1", "deposit", "acme", "anna")
    await h.until(lambda: h.calls("DELETE", "/channels/c1"))
    call = seen[0]
    assert (call.id, call.entry, call.args) == ("c1", "deposit", ["acme", "anna"])
    assert call.vars == {"VIPBX_TENANT": "acme"}
    assert call.caller_number == "+358401234567"
    assert h.calls("POST", "/channels/c1/answer")
    assert not h.calls("POST", "/channels/c1/continue")


async def test_unknown_entry_is_continued(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await h.start(StasisApp(h.client, {}))
    await h.stasis_start("c1", "activity")
    await h.until(lambda: h.calls("POST", "/channels/c1/continue"))
    assert "no handler for entry 'activity'" in caplog.text
    assert h.fake.calls("POST", "/channels/c1/continue")[0].url.params.get("context") is None


async def test_handler_exception_continues_call_and_app_survives(h: Harness) -> None:
    async def broken(call: CallSession) -> None:
        raise RuntimeError("bug in handler")

    async def fine(call: CallSession) -> None:
        await call.answer()

    await h.start(StasisApp(h.client, {"broken": broken, "fine": fine}))
    await h.stasis_start("c1", "broken")
    await h.until(lambda: h.calls("POST", "/channels/c1/continue"))
    await h.stasis_start("c2", "fine")
    await h.until(lambda: h.calls("DELETE", "/channels/c2"))  # returned normally: hung up
    assert h.calls("POST", "/channels/c2/answer")


async def test_play_waits_for_playback_finished(h: Harness) -> None:
    results: list[str | None] = []

    async def greet(call: CallSession) -> None:
        results.append(await call.play(["sound:hello", "sound:goodbye"]))

    await h.start(StasisApp(h.client, {"greet": greet}))
    await h.stasis_start("c1", "greet")
    await h.until(lambda: results)
    assert results == [None]
    play = h.calls("POST", r"/channels/c1/play/.+")[0]
    assert play.url.params["media"] == "sound:hello,sound:goodbye"


async def test_dtmf_barges_in(h: Harness) -> None:
    h.auto_finish = False
    results: list[str | None] = []

    async def menu(call: CallSession) -> None:
        results.append(await call.play("sound:menu"))
        results.append(await call.get_digits(4, timeout=1))

    await h.start(StasisApp(h.client, {"menu": menu}))
    await h.stasis_start("c1", "menu")
    await h.until(lambda: h.calls("POST", r"/channels/c1/play/.+"))
    await h.send("ChannelDtmfReceived", "c1", digit="5")
    await h.until(lambda: h.calls("DELETE", r"/playbacks/.+"))
    playback_id = h.calls("DELETE", r"/playbacks/.+")[0].url.path.rsplit("/", 1)[1]
    await h.finish(playback_id, "c1", state="done")
    for digit in "12#":
        await h.send("ChannelDtmfReceived", "c1", digit=digit)
    await h.until(lambda: len(results) == 2)
    assert results == ["5", "12"]


async def test_typed_ahead_key_skips_prompt_and_get_digits_times_out(h: Harness) -> None:
    results: list[Any] = []
    ready = asyncio.Event()
    go = asyncio.Event()

    async def menu(call: CallSession) -> None:
        ready.set()
        await go.wait()
        results.append(await call.play("sound:menu"))
        results.append(await call.get_digits(3, timeout=0.1))

    await h.start(StasisApp(h.client, {"menu": menu}))
    await h.stasis_start("c1", "menu")
    await asyncio.wait_for(ready.wait(), 2)
    await h.send("ChannelDtmfReceived", "c1", digit="9")
    await h.until(lambda: h.routed("ChannelDtmfReceived", "c1"))  # queued before the prompt
    go.set()
    await h.until(lambda: len(results) == 2)
    assert results == ["9", ""]
    assert not h.calls("POST", r"/channels/c1/play/.+")


async def test_hangup_stops_handler(h: Harness) -> None:
    h.auto_finish = False
    outcome: list[str] = []

    async def long_prompt(call: CallSession) -> None:
        try:
            await call.play("sound:very-long")
        except ChannelGone:
            outcome.append("gone")
            raise

    app = StasisApp(h.client, {"long": long_prompt})
    await h.start(app)
    await h.stasis_start("c1", "long")
    await h.until(lambda: h.calls("POST", r"/channels/c1/play/.+"))
    await h.hang_up("c1")
    await h.until(lambda: outcome == ["gone"] and not app.sessions)
    assert not h.calls("POST", "/channels/c1/continue")
    assert not h.calls("DELETE", "/channels/c1")


async def test_channel_gone_on_rest_404(h: Harness) -> None:
    h.fake.route("POST", "/channels/c1/answer", lambda r, m: httpx.Response(404, json={"message": "Channel not found"}))
    outcome: list[bool] = []

    async def answer(call: CallSession) -> None:
        try:
            await call.answer()
        finally:
            outcome.append(call.gone)

    await h.start(StasisApp(h.client, {"answer": answer}))
    await h.stasis_start("c1", "answer")
    await h.until(lambda: outcome)
    assert outcome == [True]
    await h.idle()  # the app is done with the call: it gave nothing back to the dialplan
    assert not h.calls("POST", "/channels/c1/continue")


async def test_resync_continues_orphans_only(h: Harness) -> None:
    h.fake.channels["orphan"] = channel("orphan", app_data="vipbx,deposit,acme")
    h.fake.channels["elsewhere"] = channel("elsewhere", app_data="otherapp,deposit")
    h.fake.channels["dialplan"] = channel("dialplan")
    app = StasisApp(h.client, {}, resync_grace=0.01)
    await h.start(app)
    await h.until(lambda: h.calls("POST", "/channels/orphan/continue"))
    await h.idle()  # every orphan the re-sync took up is handled by now
    continued = {r.url.path for r in h.calls("POST", r"/channels/[^/]+/continue")}
    assert continued == {"/ari/channels/orphan/continue"}


async def test_resync_after_reconnect_keeps_live_sessions(h: Harness) -> None:
    release = asyncio.Event()

    async def waiting(call: CallSession) -> None:
        await release.wait()
        await call.hangup()

    app = StasisApp(h.client, {"wait": waiting}, resync_grace=0.01)
    await h.start(app)
    await h.stasis_start("live", "wait")
    await h.until(lambda: "live" in app.sessions)
    # While the socket is down a call entered the app: no StasisStart ever reaches us for it.
    await h.fake.drop()
    h.fake.channels["missed"] = channel("missed", app_data="vipbx,access")
    await h.fake.wait_connections(2)
    await h.until(lambda: h.calls("POST", "/channels/missed/continue"))
    assert not h.calls("POST", "/channels/live/continue")
    release.set()
    await h.until(lambda: h.calls("DELETE", "/channels/live"))


async def test_stasis_start_within_grace_is_not_an_orphan(h: Harness) -> None:
    served: list[str] = []

    async def deposit(call: CallSession) -> None:
        served.append(call.id)

    listed = asyncio.Event()

    async def list_channels(request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        # GET /channels already shows the call, its StasisStart is still on the wire.
        listed.set()
        return httpx.Response(200, json=[channel("new", app_data="vipbx,deposit")])

    resynced = asyncio.Event()

    class Watched(StasisApp):
        async def resync(self) -> None:
            await super().resync()
            resynced.set()

    h.fake.route("GET", "/channels", list_channels)
    await h.start(Watched(h.client, {"deposit": deposit}, resync_grace=0.3))
    await asyncio.wait_for(listed.wait(), 2)
    await h.stasis_start("new", "deposit")
    await h.until(lambda: served == ["new"])
    await asyncio.wait_for(resynced.wait(), 2)  # the grace is over and the re-sync decided
    await h.idle()
    assert not h.calls("POST", "/channels/new/continue")


async def test_resume_orphan_hook_can_be_overridden(h: Harness) -> None:
    resumed: list[tuple[str, str, list[str], bool]] = []

    class Resuming(StasisApp):
        async def resume_orphan(self, call: CallSession) -> None:
            resumed.append((call.id, call.entry, call.args, call.resumed))
            await call.hangup()

    h.fake.channels["o1"] = channel("o1", app_data="vipbx,access,acme,anna")
    await h.start(Resuming(h.client, {}, resync_grace=0.01))
    await h.until(lambda: resumed)
    assert resumed == [("o1", "access", ["acme", "anna"], True)]
    assert not h.calls("POST", "/channels/o1/continue")


async def test_shutdown_hands_live_calls_back(h: Harness) -> None:
    async def forever(call: CallSession) -> None:
        await asyncio.Event().wait()

    app = StasisApp(h.client, {"forever": forever})
    await h.start(app)
    await h.stasis_start("c1", "forever")
    await h.until(lambda: "c1" in app.sessions)
    await app.shutdown()
    assert h.calls("POST", "/channels/c1/continue")
    assert not app.sessions


async def test_shutdown_leaves_a_recording_to_asterisk_when_the_next_start_can_take_it_up(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart (an upgrade) must not cut a message in two: the recording call stays in the app,
    still recording; the next start's resumer waits for it to end."""
    monkeypatch.setattr(session_module, "FINISHED_CHECK_SECONDS", 0.02)
    h.fake.route("POST", r"/channels/([^/]+)/record", lambda r, m: httpx.Response(201, json={"name": "m1"}))
    lookups: list[str] = []

    def lookup(request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        lookups.append(match.group(1))
        if len(lookups) == 1:
            return httpx.Response(200, json={"name": "m1", "state": "recording"})
        return httpx.Response(404, json={"message": "Recording not found"})

    h.fake.route("GET", r"/recordings/live/(.+)", lookup)

    async def deposit(call: CallSession) -> None:
        await call.record("m1", max_seconds=60)

    async def forever(call: CallSession) -> None:
        await asyncio.Event().wait()

    resumed: list[Any] = []

    async def take_up(call: CallSession) -> None:
        resumed.append(await call.wait_recording("m1"))

    first = StasisApp(h.client, {"deposit": deposit, "other": forever}, resumers={"deposit": take_up})
    await h.start(first)
    await h.stasis_start("rec", "deposit")
    await h.stasis_start("idle", "other")
    await h.until(lambda: h.calls("POST", "/channels/rec/record") and "idle" in first.sessions)
    await first.shutdown()
    assert h.calls("POST", "/channels/idle/continue") and not h.calls("POST", "/channels/rec/continue")

    # The next start finds the call in its app with no session: its entry's resumer takes it.
    h.fake.channels["rec"]["dialplan"] = {"app_name": "Stasis", "app_data": "vipbx,deposit"}
    h.fake.channels.pop("idle")
    second = StasisApp(h.client, {"deposit": deposit}, resync_grace=0.01, resumers={"deposit": take_up})
    await second.resync()
    await h.until(lambda: resumed)
    await h.until(lambda: h.calls("DELETE", "/channels/rec"))  # done with it: hung up
    assert resumed == [{"id": "m1", "name": "m1", "state": "done"}]
    assert not h.calls("POST", "/channels/rec/continue")


async def test_resync_ends_sessions_whose_channel_vanished(h: Harness) -> None:
    h.auto_finish = False
    outcome: list[str] = []

    async def long_prompt(call: CallSession) -> None:
        try:
            await call.play("sound:very-long")
        except ChannelGone:
            outcome.append("gone")
            raise

    app = StasisApp(h.client, {"long": long_prompt}, resync_grace=0.01)
    await h.start(app)
    await h.stasis_start("c1", "long")
    await h.until(lambda: h.calls("POST", r"/channels/c1/play/.+"))
    # Asterisk restarts: the channel is gone and no StasisEnd will ever be sent.
    await h.fake.stop()
    h.fake.channels.clear()
    await h.fake.start()
    await h.fake.wait_connections(2)
    await h.until(lambda: outcome == ["gone"] and not app.sessions)


async def test_reused_channel_id_ends_the_stale_session(h: Harness) -> None:
    h.auto_finish = False
    outcome: list[str] = []

    async def long_prompt(call: CallSession) -> None:
        try:
            await call.play("sound:very-long")
        except ChannelGone:
            outcome.append("stale gone")
            raise

    app = StasisApp(h.client, {"long": long_prompt})
    await h.start(app)
    await h.stasis_start("1700000000.1", "long")
    await h.until(lambda: h.calls("POST", r"/channels/1700000000.1/play/.+"))
    await h.stasis_start("1700000000.1", "long")  # a restarted Asterisk reuses the id
    await h.until(lambda: outcome == ["stale gone"])
    assert app.sessions["1700000000.1"].gone is False


# ---------------------------------------------------------------------- lost "finished" events


def playback_lookups(h: Harness, answers: list[httpx.Response]) -> list[httpx.Request]:
    """GET /playbacks/ID answers `answers` in turn (the last one from then on); the lookups made."""
    seen: list[httpx.Request] = []

    def lookup(request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    h.fake.route("GET", r"/playbacks/([^/]+)", lookup)
    return seen


PLAYING = httpx.Response(200, json={"id": "p", "state": "playing"})
ENDED = httpx.Response(404, json={"message": "Playback not found"})


async def test_lost_playback_finished_is_found_by_looking_it_up(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "FINISHED_CHECK_SECONDS", 0.02)
    h.auto_finish = False  # the PlaybackFinished event never comes
    lookups = playback_lookups(h, [PLAYING, PLAYING, ENDED])
    outcome: list[tuple[str | None, int]] = []

    async def prompt(call: CallSession) -> None:
        outcome.append((await call.play("sound:menu"), len(lookups)))
        await call.hangup()

    await h.start(StasisApp(h.client, {"prompt": prompt}))
    await h.stasis_start("c1", "prompt")
    await h.until(lambda: h.calls("DELETE", "/channels/c1"))
    # Still playing twice: waited on; gone from Asterisk: finished, and the call goes on.
    assert outcome == [(None, 3)]
    playback_id = h.calls("POST", r"/channels/c1/play/.+")[0].url.path.rsplit("/", 1)[1]
    assert {r.url.path for r in lookups} == {f"/ari/playbacks/{playback_id}"}


async def test_a_404_that_does_not_name_the_playback_proves_nothing(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "FINISHED_CHECK_SECONDS", 0.02)
    h.auto_finish = False
    lookups = playback_lookups(h, [httpx.Response(404, json={"message": "Resource not found"})])
    outcome: list[int] = []

    async def prompt(call: CallSession) -> None:
        await call.play("sound:menu")
        outcome.append(len(lookups))

    await h.start(StasisApp(h.client, {"prompt": prompt}))
    await h.stasis_start("c1", "prompt")
    await h.until(lambda: len(lookups) >= 3)
    assert outcome == []
    playback_id = h.calls("POST", r"/channels/c1/play/.+")[0].url.path.rsplit("/", 1)[1]
    await h.finish(playback_id, "c1")
    await h.until(lambda: outcome)
    assert outcome[0] >= 3


async def test_after_a_reconnect_a_waiting_playback_is_looked_up_at_once(h: Harness) -> None:
    h.auto_finish = False  # and FINISHED_CHECK_SECONDS far beyond this test's patience
    lookups = playback_lookups(h, [ENDED])
    outcome: list[str | None] = []

    async def prompt(call: CallSession) -> None:
        outcome.append(await call.play("sound:menu"))
        await call.hangup()

    app = StasisApp(h.client, {"prompt": prompt}, resync_grace=0.01)
    await h.start(app)
    h.fake.channels["c1"] = channel("c1", app_data="vipbx,prompt")
    await h.stasis_start("c1", "prompt")
    await h.until(lambda: h.calls("POST", r"/channels/c1/play/.+"))
    assert lookups == []
    await h.fake.drop()  # the PlaybackFinished would have come while the socket was down
    await h.fake.wait_connections(2)
    await h.until(lambda: h.calls("DELETE", "/channels/c1"))
    assert outcome == [None] and len(lookups) == 1


async def test_lost_recording_finished_is_found_by_looking_it_up(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "FINISHED_CHECK_SECONDS", 0.02)
    lookups: list[httpx.Request] = []

    def lookup(request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        lookups.append(request)
        if len(lookups) == 1:
            return httpx.Response(200, json={"name": "vipbx/greeting-1", "state": "recording"})
        return httpx.Response(404, json={"message": "Recording not found"})

    h.fake.route("GET", r"/recordings/live/(.+)", lookup)
    outcome: list[Any] = []

    async def record(call: CallSession) -> None:
        outcome.append(await call.record("vipbx/greeting-1", max_seconds=60))
        await call.hangup()

    await h.start(StasisApp(h.client, {"record": record}))
    await h.stasis_start("c1", "record")
    await h.until(lambda: h.calls("DELETE", "/channels/c1"))
    assert outcome == [{"id": "vipbx/greeting-1", "name": "vipbx/greeting-1", "state": "done"}]
    assert len(lookups) == 2
    # The name's '/' travels as one path segment.
    assert lookups[0].url.raw_path == b"/ari/recordings/live/vipbx%2Fgreeting-1"


async def test_a_key_pushed_back_is_the_next_one_read(h: Harness) -> None:
    h.auto_finish = False
    results: list[str | None] = []

    async def confirm(call: CallSession) -> None:
        key = await call.play("sound:deleted")
        assert key is not None
        results.append(key)
        call.push_back(key)
        results.append(await call.read("sound:menu", max_digits=2, timeout=1))

    await h.start(StasisApp(h.client, {"confirm": confirm}))
    await h.stasis_start("c1", "confirm")
    await h.until(lambda: h.calls("POST", r"/channels/c1/play/.+"))
    await h.send("ChannelDtmfReceived", "c1", digit="3")
    await h.until(lambda: results)
    await h.send("ChannelDtmfReceived", "c1", digit="4")
    await h.until(lambda: len(results) == 2)
    assert results == ["3", "34"]
    assert len(h.calls("POST", r"/channels/c1/play/.+")) == 1  # the menu was skipped


async def test_a_key_flood_keeps_a_bounded_buffer_and_the_call_still_works(h: Harness) -> None:
    """A caller (or a machine) sends thousands of keys while the handler reads none: at most
    KEYS_AHEAD are kept, the first ones; the handler then reads them and the hang-up still ends it."""
    started = asyncio.Event()
    read = asyncio.Event()
    got: list[str] = []

    async def deposit(call: CallSession) -> None:
        started.set()
        await read.wait()
        while call.keys_waiting:
            got.append(await call.get_digits(1, timeout=1))
        await call.wait_gone()

    await h.start(StasisApp(h.client, {"deposit": deposit}))
    await h.stasis_start("c1", "deposit")
    await asyncio.wait_for(started.wait(), 2)
    for n in range(3000):
        await h.send("ChannelDtmfReceived", "c1", digit="0123456789"[n % 10])
    await h.until(lambda: sum(e["type"] == "ChannelDtmfReceived" for e in h.events) == 3000, timeout=10)
    assert h.app is not None
    session = h.app.sessions["c1"]
    assert len(session._digits._keys) == session_module.KEYS_AHEAD
    read.set()
    await h.until(lambda: len(got) == session_module.KEYS_AHEAD)
    assert got == ["0123456789"[n % 10] for n in range(session_module.KEYS_AHEAD)]
    await h.hang_up("c1")
    await h.idle()
