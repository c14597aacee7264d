"""The Stasis app, the ARI client and FastAGI against a real Asterisk: events, answer, play with
barge-in, continue into the dialplan, re-sync after an app crash, reconnect after kill -9.

Calls are Local channels: the `;2` half runs our dialplan (Stasis, AGI), the `;1` half plays the
caller (presses 5 a moment after the answer). Results come back as dialplan globals, read by a
second ARI client.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from conftest import unavailable

from ari_app import session as session_module
from ari_app.app import StasisApp
from ari_app.client import AriClient, AriError
from ari_app.service import Service
from ari_app.session import CallSession
from asterisk_host import AsteriskInstance, AsteriskRuntime, RuntimeUnavailable
from base.model import Config, Listener, Platform, Tenant, User

pytestmark = pytest.mark.asterisk

HOST = "127.0.0.30"
PORTS = range(18000, 19000)
ARI_USER, ARI_PASSWORD = "vipbx", "e2e-ari-secret"
AGI_KEY = "e2e-agi-key"
MODULES = (
    "res_sorcery_config", "res_sorcery_memory", "res_sorcery_astdb", "pbx_config", "func_global",
    "func_channel", "func_callerid", "app_senddtmf", "app_stasis", "app_playback", "codec_gsm",
    "codec_ulaw", "codec_alaw", "codec_resample", "format_gsm", "format_wav", "format_pcm",
    "res_http_websocket", "res_websocket_client", "res_stasis", "res_stasis_answer",
    "res_stasis_recording", "res_stasis_snoop", "res_stasis_playback", "res_ari", "res_ari_model",
    "res_ari_asterisk", "res_ari_applications", "res_ari_channels", "res_ari_events",
    "res_ari_playbacks", "res_ari_recordings", "res_speech", "res_agi", "func_strings",
)


def free_port(taken: set[int]) -> int:
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free port on {HOST}")


def asterisk_files(http_port: int, agi_port: int) -> dict[str, str]:
    agi = f"agi://{HOST}:{agi_port}"
    return {
        "modules.conf": "[modules]\nautoload=no\n" + "".join(f"require => {m}.so\n" for m in MODULES),
        "logger.conf": "[general]\n[logfiles]\nmessages => notice,warning,error\n",
        "http.conf": f"[general]\nenabled=yes\nbindaddr={HOST}\nbindport={http_port}\n",
        "ari.conf": "[general]\nenabled=yes\nchannelvars=VIPBX_TENANT\n\n"
                    f"[{ARI_USER}]\ntype=user\nread_only=no\npassword={ARI_PASSWORD}\n",
        "extensions.conf": (
            "[general]\nstatic=yes\nwriteprotect=yes\n\n[in]\n"
            "exten => deposit,1,Set(VIPBX_TENANT=acme)\n"
            " same => n,Stasis(vipbx,deposit,acme,anna)\n"
            " same => n,Set(GLOBAL(AFTER_DEPOSIT)=${STASISSTATUS}:${DIGIT})\n same => n,Hangup()\n"
            "exten => lost,1,Stasis(vipbx,lost)\n"
            " same => n,Set(GLOBAL(AFTER_LOST)=${STASISSTATUS}:${RESULT})\n same => n,Hangup()\n"
            "exten => nosuch,1,Stasis(vipbx,nosuch)\n"
            " same => n,Set(GLOBAL(FALLBACK_NOSUCH)=${STASISSTATUS})\n same => n,Hangup()\n"
            "exten => hold,1,Stasis(vipbx,hold)\n"
            " same => n,Set(GLOBAL(FALLBACK_HOLD)=${STASISSTATUS})\n same => n,Hangup()\n"
            f"exten => agi,1,AGI({agi}/route,{AGI_KEY},acme,anna)\n"
            # The product's dialplan splits the answer the same way (see extensions.conf.j2).
            " same => n,Set(ARRAY(VIPBX_ACTION,VIPBX_TIMEOUT,T,B,N,U,F,C)=${VIPBX_ROUTE})\n"
            " same => n,Set(GLOBAL(AGI_ROUTE)=${AGISTATUS}:${VIPBX_ACTION}:${VIPBX_TIMEOUT})\n"
            f" same => n,AGI({agi}/ping,{AGI_KEY})\n same => n,Set(GLOBAL(AGI_PONG)=${{VIPBX_PONG}})\n"
            " same => n,Hangup()\n"
            # Without the key and with a wrong one: the server must not answer.
            f"exten => agi-nokey,1,AGI({agi}/route,acme,anna)\n"
            f" same => n,AGI({agi}/route,{AGI_KEY[:-1]}x,acme,anna)\n"
            f" same => n,AGI({agi}/ping)\n"
            " same => n,Set(GLOBAL(AGI_NOKEY)=route[${VIPBX_ROUTE}]pong[${VIPBX_PONG}])\n"
            " same => n,Hangup()\n"
            "\n[caller]\n"
            "exten => press5,1,Wait(1.5)\n same => n,SendDTMF(5)\n same => n,Wait(20)\n same => n,Hangup()\n"
            "exten => wait,1,Wait(30)\n same => n,Hangup()\n"
        ),
        **{name: "" for name in ("acl.conf", "udptl.conf", "cdr.conf", "cel.conf", "ccss.conf",
                                 "features.conf", "indications.conf", "manager.conf",
                                 "websocket_client.conf")},
    }


class Pbx:
    def __init__(self, instance: AsteriskInstance, http_port: int, agi_port: int) -> None:
        self.instance = instance
        self.ari_url = f"http://{HOST}:{http_port}/ari"
        self.config = Config(
            platform=Platform(agi=Listener(HOST, agi_port), ari_app="vipbx", no_answer_seconds=20),
            tenants=(Tenant(id="acme", name="Acme", domain="acme.example", users=(
                User(id="anna", name="Anna", number="+358401111111", extension="101", email=None,
                     pin="1234", language="en"),)),),
        )


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    try:
        runtime = AsteriskRuntime.locate(build=False)
    except RuntimeUnavailable as exc:
        unavailable(str(exc))
    taken: set[int] = set()
    http_port, agi_port = free_port(taken), free_port(taken)
    home = tmp_path_factory.mktemp("ari-e2e")
    etc = home / "etc"
    etc.mkdir()
    for name, text in asterisk_files(http_port, agi_port).items():
        (etc / name).write_text(text, encoding="utf-8")
    instance = AsteriskInstance(runtime, home, etc, name="ari-e2e")
    instance.start()
    try:
        yield Pbx(instance, http_port, agi_port)
    finally:
        instance.stop()


@pytest.fixture
async def driver(pbx: Pbx) -> AsyncIterator[AriClient]:
    """A second ARI client (another app name) that originates calls and reads results."""
    async with AriClient(pbx.ari_url, ARI_USER, ARI_PASSWORD, "e2e-driver") as client:
        yield client


async def until_app(driver: AriClient, timeout: float = 20) -> None:
    """Until our app is registered (it stays listed after a disconnect while it has channels)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if "vipbx" in [app["name"] for app in await driver.get("/applications")]:
                return
        except (AriError, httpx.HTTPError):  # Asterisk still starting
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError("ARI app vipbx not registered")


async def global_var(driver: AriClient, name: str, timeout: float = 15) -> str:
    """Wait for a dialplan global to be set, then clear it for the next test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = (await driver.get("/asterisk/variable", variable=name)).get("value")
        if value:
            await driver.post("/asterisk/variable", variable=name, value="")
            return str(value)
        await asyncio.sleep(0.1)
    return "<unset>"


async def call(driver: AriClient, exten: str, caller: str = "wait") -> str:
    channel = await driver.post("/channels", endpoint=f"Local/{exten}@in", context="caller",
                                extension=caller, priority=1, formats="alaw")
    return str(channel["id"])


class Handlers:
    def __init__(self) -> None:
        self.prompt_results: list[str | None] = []
        self.held: list[CallSession] = []
        self.hold_ended = asyncio.Event()
        self.service: Service | None = None

    async def deposit(self, call: CallSession) -> None:
        assert call.args == ["acme", "anna"] and call.vars.get("VIPBX_TENANT") == "acme"
        await call.answer()
        self.prompt_results.append(await call.play("sound:beep", barge_in=False))
        digit = await call.play("sound:demo-congrats")  # ~10 s; the caller presses 5 after 1.5 s
        self.prompt_results.append(digit)
        await call.set_var("DIGIT", digit or "none")
        await call.continue_in_dialplan()

    async def hold(self, call: CallSession) -> None:
        await call.answer()
        self.held.append(call)
        try:
            await call.wait_gone()
        finally:
            self.hold_ended.set()

    async def lost(self, call: CallSession) -> None:
        await call.answer()
        played = await call.play("sound:beep", barge_in=False)
        recorded = await call.record(f"vipbx/lost-{call.id}", max_seconds=1, terminate_on="", beep=False)
        await call.set_var("RESULT", f"{played}:{(recorded or {}).get('state')}")
        await call.continue_in_dialplan()

    def table(self) -> dict:
        return {"deposit": self.deposit, "hold": self.hold, "lost": self.lost}


@pytest.fixture
async def service(pbx: Pbx, driver: AriClient) -> AsyncIterator[Handlers]:
    handlers = Handlers()
    svc = Service(pbx.config, pbx.ari_url, ARI_USER, ARI_PASSWORD, agi_key=AGI_KEY, handlers=handlers.table())
    task = asyncio.create_task(svc.run())
    await svc.client.wait_connected(20)
    handlers.service = svc
    yield handlers
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_answer_play_barge_in_and_continue(driver: AriClient, service: Handlers) -> None:
    started = time.monotonic()
    await call(driver, "deposit", caller="press5")
    assert await global_var(driver, "AFTER_DEPOSIT") == "SUCCESS:5"
    assert service.prompt_results == [None, "5"]  # beep played to its end, the long prompt cut short
    assert time.monotonic() - started < 6


async def test_lost_finished_events_are_found_over_rest(
        pbx: Pbx, driver: AriClient, service: Handlers, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the event socket had dropped them: the session looks the playback and the recording
    # up, and Asterisk's answer once they have ended lets the call go on.
    real_feed = CallSession.feed

    def lossy(self: CallSession, event: dict) -> None:
        if event.get("type") not in ("PlaybackFinished", "RecordingFinished"):
            real_feed(self, event)

    monkeypatch.setattr(CallSession, "feed", lossy)
    monkeypatch.setattr(session_module, "FINISHED_CHECK_SECONDS", 0.5)
    # Asterisk makes no subfolder of <spool>/recording; the name's '/' must reach it as one segment.
    (pbx.instance.spool_dir / "recording" / "vipbx").mkdir(parents=True, exist_ok=True)
    await call(driver, "lost")
    assert await global_var(driver, "AFTER_LOST") == "SUCCESS:None:done"


async def test_unknown_entry_goes_back_to_the_dialplan(driver: AriClient, service: Handlers) -> None:
    await call(driver, "nosuch")
    assert await global_var(driver, "FALLBACK_NOSUCH") == "SUCCESS"


async def test_fastagi_answers_the_dialplan(driver: AriClient, service: Handlers) -> None:
    await call(driver, "agi")
    assert await global_var(driver, "AGI_ROUTE") == "SUCCESS:ring:20"
    assert await global_var(driver, "AGI_PONG") == "1"


async def test_fastagi_refuses_a_request_without_the_key(
        driver: AriClient, service: Handlers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agi.server")
    await call(driver, "agi-nokey")
    assert await global_var(driver, "AGI_NOKEY") == "route[]pong[]"
    refusals = [r for r in caplog.records if "wrong or missing key" in r.getMessage()]
    assert len(refusals) == 3
    assert AGI_KEY not in caplog.text


async def test_graceful_stop_hands_live_calls_back(pbx: Pbx, driver: AriClient) -> None:
    handlers = Handlers()
    svc = Service(pbx.config, pbx.ari_url, ARI_USER, ARI_PASSWORD, agi_key=AGI_KEY, handlers=handlers.table())
    task = asyncio.create_task(svc.run())
    await svc.client.wait_connected(20)
    await call(driver, "hold")
    await asyncio.wait_for(_until(lambda: handlers.held), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await global_var(driver, "FALLBACK_HOLD") == "SUCCESS"


async def test_orphan_after_app_crash_goes_back_to_the_dialplan(pbx: Pbx, driver: AriClient) -> None:
    handlers = Handlers()
    crashing = AriClient(pbx.ari_url, ARI_USER, ARI_PASSWORD, "vipbx")
    app = StasisApp(crashing, handlers.table())
    run = asyncio.create_task(app.run())
    await crashing.wait_connected(10)
    await call(driver, "hold")
    await asyncio.wait_for(_until(lambda: handlers.held), 10)
    # Crash: the socket goes without shutdown(), the call stays in Stasis with nobody serving it.
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    restarted = asyncio.create_task(Service(pbx.config, pbx.ari_url, ARI_USER, ARI_PASSWORD, agi_key=AGI_KEY).run())
    try:
        assert await global_var(driver, "FALLBACK_HOLD") == "SUCCESS"
    finally:
        restarted.cancel()
        await asyncio.gather(restarted, return_exceptions=True)
        await app.shutdown()
        await crashing.close()


async def test_reconnects_after_asterisk_is_killed(pbx: Pbx, driver: AriClient, service: Handlers) -> None:
    await call(driver, "hold")
    await asyncio.wait_for(_until(lambda: service.held), 10)
    pid = pbx.instance.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(pbx.instance.stop)  # reaps it; nothing left to signal
    await asyncio.sleep(0.5)
    await asyncio.to_thread(pbx.instance.start)
    await until_app(driver)  # a fresh Asterisk: only our service's reconnect registers the app
    assert service.service is not None and service.service.client.connected
    # The held call died with Asterisk and no StasisEnd ever came: the re-sync ended its handler.
    await asyncio.wait_for(service.hold_ended.wait(), 5)
    await call(driver, "nosuch")
    assert await global_var(driver, "FALLBACK_NOSUCH") == "SUCCESS"


async def _until(predicate: Callable[[], object]) -> None:
    while not predicate():
        await asyncio.sleep(0.05)
