"""What the end-to-end tests share: the people of the example tenants, the PBX seen through
its own ARI (every prompt played, every recording), the service built as `vipbx serve` builds it,
and small waiting helpers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from conftest import Pbx

from ari_app import plugins
from ari_app.client import AriClient
from ari_app.plugin_api import PluginDeps
from ari_app.service import Service
from asterisk_conf.render import AGI_KEY, AMI_USER, ARI_USER
from base.ami import AmiSettings
from base.model import Config
from base.paths import Paths
from callstate import CallStateService
from testphone import TestPhone
from vmstore import VoicemailStore

OBSERVER_APP = "vipbx-test-observer"


@dataclass(frozen=True)
class Person:
    tenant: str
    user: str
    number: str
    device: str
    pin: str

    @property
    def box(self) -> str:
        return self.number[1:]


# --- what the PBX does, seen through its own ARI ------------------------------------------------

@dataclass(frozen=True)
class Seen:
    caller: str  # the caller number of the PBX channel it happened on
    kind: str  # "play", "record-start", "record-end", "app" (a dialplan application: "Read(...)")
    what: str  # prompt name, "msg:INBOX/msg0000", "greeting:unavail", "recording:NAME"
    lang: str = ""  # catalogue prompts: the language folder it came from
    at: float = 0.0  # loop time it was seen


@dataclass(frozen=True)
class ChannelEvent:
    kind: str  # "created", "destroyed", or "dial" (a Dial() called `endpoint` on `channel`)
    channel: str  # the PBX channel's id
    endpoint: str  # PJSIP/acme-anna-soft-0000001a -> "acme-anna-soft"; the carrier is "carrier"


def endpoint_of(name: str) -> str:
    return name.partition("/")[2].rsplit("-", 1)[0]


class ChannelLog:
    """The PBX's own record of its channels, fed the ARI events of an app subscribed to
    everything: which channels it created and destroyed, and which endpoints its Dial()s called.

    It proves a negative without sleeping: once every channel created since a mark is gone, the
    calls made since then are over, so routing has decided and acted; an endpoint no Dial()
    called by then was never rung for them (not even one whose INVITE the phone had not seen yet).
    """

    def __init__(self) -> None:
        self.events: list[ChannelEvent] = []
        self._changed = asyncio.Event()

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("ChannelCreated", "ChannelDestroyed"):
            channel = event["channel"]
            self._add("created" if kind == "ChannelCreated" else "destroyed", channel)
        elif kind == "Dial" and not event.get("dialstatus"):  # the attempt begins (once per peer)
            self._add("dial", event["peer"])

    def _add(self, kind: str, channel: dict[str, Any]) -> None:
        self.events.append(ChannelEvent(kind, channel["id"], endpoint_of(channel.get("name", ""))))
        self._changed.set()

    def mark(self) -> int:
        return len(self.events)

    def dialled(self, since: int = 0) -> set[str]:
        """Every endpoint a Dial() called since the mark."""
        return {e.endpoint for e in self.events[since:] if e.kind == "dial"}

    def open_channels(self, since: int = 0) -> list[str]:
        """Endpoints of channels created since the mark and not destroyed yet."""
        gone = {e.channel for e in self.events[since:] if e.kind == "destroyed"}
        return [e.endpoint for e in self.events[since:] if e.kind == "created" and e.channel not in gone]

    async def wait_calls_over(self, since: int = 0, timeout: float = 20, *, made: bool = True) -> None:
        """Until every channel created since the mark is gone; with `made`, at least one must have
        been created (the calls reached the PBX at all)."""
        def over() -> bool:
            return not self.open_channels(since) and (not made or self._created(since))

        await self._until(over, timeout, lambda: f"the calls made since the mark are not over within {timeout} s: "
                                                 f"channels still on the PBX: {self.open_channels(since) or 'none created at all'}")

    async def wait_dialled(self, endpoint: str, since: int = 0, timeout: float = 10) -> None:
        """Until a Dial() of `endpoint` since the mark is logged: a call already answered on the
        phone may still have its events in flight here, and a mark taken before they arrive
        would count that earlier call's Dial() as a later one's."""
        await self._until(lambda: endpoint in self.dialled(since), timeout,
                          lambda: f"no Dial() of {endpoint} logged within {timeout} s")

    async def _until(self, done: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> None:
        """Re-checks `done()` at every event until it holds; an AssertionError of `failure()` after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(failure())
            self._changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    def _created(self, since: int) -> bool:
        return any(e.kind == "created" for e in self.events[since:])


@asynccontextmanager
async def watch_channels(pbx: Pbx, app: str = "vipbx-test-channels") -> AsyncIterator[ChannelLog]:
    """A `ChannelLog` of `pbx`, kept by an ARI app of its own while the block runs."""
    http = pbx.config.platform.http
    client = AriClient(f"http://{http.bind}:{http.port}/ari", ARI_USER, pbx.secrets.get("ari"), app,
                       subscribe_all=True)
    log = ChannelLog()

    async def feed(event: dict[str, Any]) -> None:
        log.on_event(event)

    client.on_event(feed)
    runner = asyncio.create_task(client.run())
    try:
        await client.wait_connected(10)
        yield log
    finally:
        await client.close()
        runner.cancel()
        with suppress(asyncio.CancelledError):
            await runner


class PbxObserver:
    """Every playback and recording on every PBX channel, from an ARI app with subscribeAll; and
    its channels and dials (`channels`)."""

    def __init__(self, pbx: Pbx, sounds: Path, spool: VoicemailStore) -> None:
        http = pbx.config.platform.http
        self.client = AriClient(f"http://{http.bind}:{http.port}/ari", ARI_USER,
                                pbx.secrets.get("ari"), OBSERVER_APP, subscribe_all=True)
        self.sounds = str(sounds) + "/"
        self.voicemail = str(spool.root) + "/"
        self.recordings = str(spool.spool_dir / "recording") + "/"
        self.callers: dict[str, str] = {}  # PBX channel id -> caller number
        self.seen: list[Seen] = []
        self._changed = asyncio.Event()
        self.channels = ChannelLog()
        self.client.on_event(self._on_event)

    async def _on_event(self, event: dict[str, Any]) -> None:
        self.channels.on_event(event)
        channel = event.get("channel") or {}
        if channel.get("id") and channel.get("caller", {}).get("number"):
            self.callers[channel["id"]] = channel["caller"]["number"]
        kind = event.get("type")
        if kind == "PlaybackStarted":
            playback = event["playback"]
            lang, what = self._name(playback.get("media_uri", ""))
            self._add(playback.get("target_uri", ""), "play", what, lang)
        elif kind == "ChannelDialplan" and event.get("dialplan_app"):
            # What the dialplan runs, for calls the app does not serve (the native fallbacks).
            self._add("channel:" + channel.get("id", ""), "app",
                      f"{event['dialplan_app']}({event.get('dialplan_app_data', '')})")
        elif kind in ("RecordingStarted", "RecordingFinished"):
            recording = event["recording"]
            self._add(recording.get("target_uri", ""),
                      "record-start" if kind == "RecordingStarted" else "record-end", recording["name"])

    def _add(self, target: str, kind: str, what: str, lang: str = "") -> None:
        caller = self.callers.get(target.removeprefix("channel:"), "")
        self.seen.append(Seen(caller, kind, what, lang, asyncio.get_running_loop().time()))
        self._changed.set()

    def _name(self, uri: str) -> tuple[str, str]:
        path = uri.removeprefix("sound:")
        if path.startswith(self.sounds):
            lang, _, name = path[len(self.sounds):].partition("/")
            return lang, name
        if path.startswith(self.voicemail):
            rest = path[len(self.voicemail):].split("/")[2:]  # below <context>/<mailbox>/
            return "", ("msg:" if len(rest) == 2 else "greeting:") + "/".join(rest)
        if path.startswith(self.recordings):
            return "", "recording:" + path[len(self.recordings):]
        return "", uri

    def mark(self) -> int:
        return len(self.seen)

    def of(self, caller: str, since: int = 0, kind: str | None = None) -> list[Seen]:
        return [s for s in self.seen[since:] if s.caller == caller and (kind is None or s.kind == kind)]

    def prompts(self, caller: str, since: int = 0) -> list[str]:
        return [s.what for s in self.of(caller, since, "play")]

    def apps(self, caller: str, since: int = 0) -> list[str]:
        """The dialplan applications run on the caller's channels, as "App(data)"."""
        return [s.what for s in self.of(caller, since, "app")]

    async def until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Wait until `check()` is true (re-checked at every event); its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := check()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{what}: not within {timeout} s")
            self._changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return result

    async def wait(self, caller: str, kind: str, what: str | None = None, *, since: int = 0,
                   timeout: float = 20) -> Seen:
        """The first matching event after `since` (waiting for it if need be)."""
        def found() -> Seen | None:
            return next((s for s in self.of(caller, since, kind) if what is None or s.what == what), None)

        try:
            return await self.until(found, timeout, f"{kind} {what or ''} for {caller}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; seen: {[(s.kind, s.what) for s in self.of(caller, since)]}") from None

    async def wait_prompt(self, caller: str, what: str, *, since: int = 0, timeout: float = 20) -> Seen:
        return await self.wait(caller, "play", what, since=since, timeout=timeout)


async def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)


def ami_settings(pbx: Pbx) -> AmiSettings:
    ami = pbx.config.platform.ami
    return AmiSettings(ami.bind, ami.port, AMI_USER, pbx.secrets.get("ami"))


def pbx_channel_count(pbx: Pbx) -> int:
    text = pbx.cli("core show channels count")
    return int(next(line.split()[0] for line in text.splitlines() if "active channel" in line))


def wait_pbx_idle(pbx: Pbx, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while pbx_channel_count(pbx):
        assert time.monotonic() < deadline, "calls left on the PBX:\n" + pbx.cli("core show channels")
        time.sleep(0.2)


@dataclass
class Running:
    service: Service
    deps: PluginDeps


def start_service(pbx: Pbx, config: Config) -> tuple[Service, PluginDeps]:
    """The service as `vipbx serve` builds it, on the PBX's home."""
    plugin, deps = plugins.load(config, Paths(pbx.home), ami_settings(pbx), pbx.secrets.get)
    http = config.platform.http
    service = Service(config, f"http://{http.bind}:{http.port}/ari", ARI_USER, pbx.secrets.get("ari"),
                      agi_key=pbx.secrets.get(AGI_KEY), handlers=plugin.handlers, background=plugin.background, state=deps.callstate,
                      on_connect=plugin.on_connect, sounds_dir=Paths(pbx.home).sounds)
    return service, deps


# --- a PBX with the real service running, the test phone and the observer ---------------------------

def reset_call_state(pbx: Pbx, config: Config) -> None:
    """Every user back to the defaults: forwards, call waiting, presence, PIN counter, greeting
    options, fax receiving off; no call log, personal contacts or home-page logins left from an
    earlier test."""
    with CallStateService(pbx.home / "state.sqlite3", config) as state:
        for table in ("call_log", "personal_contacts", "web_sessions", "web_login_codes", "web_login_limits"):
            state.store.db.write(lambda tx, table=table: tx.run(f"DELETE FROM {table}"))  # fixed names
        for tenant in config.tenants:
            for user in tenant.users:
                state.reset_routing(tenant.id, user.id, actor="e2e", source="test")
                state.set_presence(tenant.id, user.id, "available", note="", actor="e2e", source="test")
                state.reset_pin_lockout(tenant.id, user.id, actor="e2e", source="test")
                state.fax.set_settings(tenant.id, user.id, enabled=False, email=None, actor="e2e", source="test")
                if user.has_voicemail:
                    state.update_voicemail_settings(tenant.id, user.id, actor="e2e", source="test",
                                                    play_activity=False, press1_number=None,
                                                    always_ask_pin=False)


@dataclass
class Rig:
    pbx: Pbx
    config: Config
    phone: TestPhone
    observer: PbxObserver
    app: Running | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def state(self) -> CallStateService:
        assert self.app is not None, "the service is not running"
        return self.app.deps.callstate

    @property
    def presence(self) -> Any:
        """The running service's PresenceService (changes that also tell Asterisk)."""
        assert self.app is not None, "the service is not running"
        return self.app.deps.presence

    async def start_app(self) -> None:
        service, deps = start_service(self.pbx, self.config)
        self._task = asyncio.create_task(service.run(), name="vipbx-service")
        self.app = Running(service, deps)
        await service.client.wait_connected(15)

    async def stop_app(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self.app is not None:
            self.app.deps.callstate.close()
        self.app, self._task = None, None

    async def dial_code(self, person: Person, digits: str) -> list[str]:
        """Dial a feature code from the person's device; the prompts the PBX answered with."""
        since = self.observer.mark()
        call = await self.phone.call(digits, device=person.device)
        await call.wait_hangup(20)
        assert call.hung_up_by == "far" and "Up" in call.states_seen, call
        return self.observer.prompts(person.number, since)

    async def no_ring(self, since: int, *devices: str) -> None:
        """None of `devices` rang for the calls made since `since` (an `observer.channels.mark()`).

        Waits until those calls are over on the PBX (see `ChannelLog`), so end them first; then
        neither the PBX's Dial()s nor the test phone show a call to one of the devices.
        """
        log = self.observer.channels
        await log.wait_calls_over(since)
        dialled = log.dialled(since)
        for device in devices:
            assert device not in dialled, f"the PBX dialled {device}; it dialled {sorted(dialled)}"
            assert self.phone._incoming[device].empty(), f"{device} rang"


@pytest_asyncio.fixture
async def rig(pbx: Pbx, e2e_config: Config, phone: TestPhone, prompt_catalogue: Path) -> AsyncIterator[Rig]:
    """The session PBX with the service as `vipbx serve` builds it (default state for everyone),
    the test phone and an observer of every prompt; all stopped and reset afterwards."""
    wait_pbx_idle(pbx)
    reset_call_state(pbx, e2e_config)
    observer = PbxObserver(pbx, prompt_catalogue, VoicemailStore(pbx.instance.spool_dir))
    watcher = asyncio.create_task(observer.client.run())
    rig = Rig(pbx, e2e_config, phone, observer)
    try:
        await rig.start_app()
        await observer.client.wait_connected(10)
        yield rig
        await phone.hangup_all()
    finally:
        await observer.client.close()
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher
        await rig.stop_app()
        wait_pbx_idle(pbx)
        reset_call_state(pbx, e2e_config)


# --- `vipbx serve` as a child process ------------------------------------------------------------

class ServeProcess:
    """`vipbx serve` (`argv`) as operators run it; its output in a log file. `started()` says when
    it is up (its ARI app registered)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path,
                 started: Callable[[], bool]) -> None:
        self.argv, self.env, self.cwd, self.log, self.started = argv, env, cwd, log, started
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.started():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, "vipbx serve did not register its ARI app\n" + self.text()
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def app_registered(cli: Callable[[str], str], app: str = "vipbx") -> Callable[[], bool]:
    """A `started` check: the ARI app is listed by `ari show apps` of the Asterisk `cli` runs on."""
    return lambda: app in cli("ari show apps").split()
