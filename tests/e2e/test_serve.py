"""`vipbx serve` against a real PBX, through real calls: it registers the Stasis app, answers the
FastAGI router's questions, hands entries it has no handler for back to the dialplan's fallback,
and when it is killed calls still get the fallback; restarted, it serves again.

Everything runs as operators run it: `vipbx deploy`, `vipbx asterisk start`, `vipbx phone start`
and `vipbx serve` as subprocesses on a PBX of this module's own (127.0.0.32).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from clitool import REPO, Vipbx, write_yaml
from support import ServeProcess, app_registered

from asterisk_host import AsteriskRuntime
from base.secrets import SecretStore
from testphone import PhoneInstance, TestPhone

OUTSIDE = "+358451234567"
ANNA = "+358401110001"
ACTIVITY = "+358201243200"


@pytest.fixture(scope="module")
def stack(asterisk_runtime: AsteriskRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vipbx, ServeProcess]]:
    files = write_yaml(tmp_path_factory.mktemp("yaml"), "127.0.0.32", "127.0.0.34", 18000)
    vipbx = Vipbx(tmp_path_factory.mktemp("home"))
    vipbx("deploy", *map(str, files))
    vipbx("asterisk", "start")
    serve = ServeProcess(vipbx.argv("serve", *map(str, files)), vipbx.env(), REPO, vipbx.home / "serve.log",
                         app_registered(vipbx.cli))
    try:
        vipbx("phone", "start", *map(str, files), "--phones-ip", "127.0.0.33", "--sip-port", "18160",
              "--http-port", "18188", "--rtp", "18200-18399")
        serve.start()
        yield vipbx, serve
    finally:
        serve.stop()
        vipbx("phone", "stop", check=False)
        vipbx("asterisk", "stop", check=False)


@pytest_asyncio.fixture
async def phone(stack: tuple[Vipbx, ServeProcess], asterisk_runtime: AsteriskRuntime) -> AsyncIterator[TestPhone]:
    vipbx, _ = stack
    instance = PhoneInstance(asterisk_runtime, vipbx.home / "phone", SecretStore(vipbx.home / "secrets.json"))
    async with instance.connect() as connected:
        yield connected


async def test_router_is_asked_and_the_user_rings(stack: tuple[Vipbx, ServeProcess], phone: TestPhone) -> None:
    _, serve = stack
    call = await phone.call(ANNA, caller_number=OUTSIDE)
    ringing = await phone.incoming("acme-anna-soft", timeout=10)
    assert ringing.caller["number"] == OUTSIDE
    await ringing.answer()
    await call.wait_state("Up", timeout=10)
    await call.hangup()
    await ringing.wait_hangup(timeout=10)
    assert "route acme/anna.virtanen (NOT_INUSE): ring" in serve.text()


async def test_the_activity_number_is_served_by_the_app(stack: tuple[Vipbx, ServeProcess], phone: TestPhone) -> None:
    _, serve = stack
    call = await phone.call(ACTIVITY, caller_number=ANNA)
    await call.wait_state("Up", timeout=10)
    # The activity IVR (not the dialplan's "feature not available") knows Anna by her number.
    for _ in range(100):
        if "acme/anna.virtanen known by caller number" in serve.text():
            break
        await asyncio.sleep(0.1)
    assert "acme/anna.virtanen known by caller number" in serve.text()
    assert not call.ended
    await call.hangup()


async def test_calls_survive_the_app_being_killed_and_it_comes_back(stack: tuple[Vipbx, ServeProcess], phone: TestPhone) -> None:
    vipbx, serve = stack
    serve.kill()
    try:
        # Stasis() fails at once without the app; the native fallback still answers ...
        call = await phone.call(ACTIVITY, caller_number=ANNA)
        await call.wait_state("Up", timeout=10)
        await call.wait_hangup(timeout=15)
        assert call.audio_seconds > 1.0
        # ... and with FastAGI down too, a user still rings.
        call = await phone.call(ANNA, caller_number=OUTSIDE)
        ringing = await phone.incoming("acme-anna-soft", timeout=10)
        await call.hangup()
        await ringing.wait_hangup(timeout=10)
    finally:
        await asyncio.to_thread(serve.start)
    assert "vipbx" in vipbx.cli("ari show apps")
