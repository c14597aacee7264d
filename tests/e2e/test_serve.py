"""`vipbx serve` against a real PBX, through real calls: it registers the Stasis app, answers the
FastAGI router's questions, hands entries it has no handler for back to the dialplan's fallback,
and when it is killed calls still get the fallback; restarted, it serves again.

Everything runs as operators run it: `vipbx deploy`, `vipbx asterisk start`, `vipbx phone start`
and `vipbx serve` as subprocesses on a PBX of this module's own (127.0.0.32).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from clitool import REPO, Vipbx, write_yaml
from support import ServeProcess, app_registered, eventually

from asterisk_conf.validate import load_config
from asterisk_host import AsteriskRuntime
from base.model import Config
from base.secrets import SecretStore
from callstate import CallStateService
from testphone import PhoneInstance, TestPhone
from web.auth.passwords import hash_password

OUTSIDE = "+358451234567"
ANNA = "+358401110001"
ANNA_USER = ("acme", "anna.virtanen")
MIKKO = "+358401110002"
ACTIVITY = "+358201243200"


@dataclass
class Stack:
    vipbx: Vipbx
    serve: ServeProcess
    config: Config

    @contextmanager
    def state(self) -> Iterator[CallStateService]:
        """The call-state database `vipbx serve` answers from (another process: SQLite copes)."""
        with CallStateService(self.vipbx.home / "state.sqlite3", self.config) as state:
            yield state

    def in_app(self, caller: str) -> bool:
        """The PBX has a channel from `caller` that sits in the vipbx Stasis app right now."""
        for line in self.vipbx.cli("core show channels concise").splitlines():
            fields = line.split("!")
            if len(fields) >= 8 and fields[5] == "Stasis" and fields[6].startswith("vipbx,") \
                    and fields[7] == caller:
                return True
        return False


@pytest.fixture(scope="module")
def stack(asterisk_runtime: AsteriskRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
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
        yield Stack(vipbx, serve, load_config([str(f) for f in files]))
    finally:
        serve.stop()
        vipbx("phone", "stop", check=False)
        vipbx("asterisk", "stop", check=False)


@pytest_asyncio.fixture
async def phone(stack: Stack, asterisk_runtime: AsteriskRuntime) -> AsyncIterator[TestPhone]:
    instance = PhoneInstance(asterisk_runtime, stack.vipbx.home / "phone",
                             SecretStore(stack.vipbx.home / "secrets.json"))
    async with instance.connect() as connected:
        yield connected


async def test_router_is_asked_and_the_user_rings(stack: Stack, phone: TestPhone) -> None:
    call = await phone.call(ANNA, caller_number=OUTSIDE)
    ringing = await phone.incoming("acme-anna-soft", timeout=10)
    assert ringing.caller["number"] == OUTSIDE
    await ringing.answer()
    await call.wait_state("Up", timeout=10)
    await call.hangup()
    await ringing.wait_hangup(timeout=10)

    # Only the router knows Anna's forward (the dialplan's fallback rings her): Mikko rings.
    with stack.state() as state:
        state.set_forward(*ANNA_USER, "immediate", MIKKO, actor="e2e", source="test")
    try:
        call = await phone.call(ANNA, caller_number=OUTSIDE)
        forwarded = await phone.incoming("acme-mikko-soft", timeout=10)
        assert forwarded.caller["number"] == OUTSIDE
        await call.hangup()
        await forwarded.wait_hangup(timeout=10)
    finally:
        with stack.state() as state:
            state.reset_routing(*ANNA_USER, actor="e2e", source="test")


async def activity_served(stack: Stack, phone: TestPhone) -> None:
    """A call from Anna to the activity number is held by the app, whose IVR knows her by her
    number: "6" (vacation) then "#" (no end time) sets her activity; then back to available."""
    call = await phone.call(ACTIVITY, caller_number=ANNA)
    await call.wait_state("Up", timeout=10)
    await eventually(lambda: stack.in_app(ANNA), 10, "the call in the vipbx app")
    await call.send_dtmf("6#")  # typed ahead: answers the menu and the end-time question
    try:
        await call.wait_hangup(timeout=30)  # confirmed, goodbye
        with stack.state() as state:
            presence = state.presence(*ANNA_USER)
        assert (presence.activity, presence.until) == ("vacation", None)
    finally:
        await call.hangup()
        with stack.state() as state:
            state.set_presence(*ANNA_USER, "available", note="", actor="e2e", source="test")


async def test_the_activity_number_is_served_by_the_app(stack: Stack, phone: TestPhone) -> None:
    await activity_served(stack, phone)


async def test_calls_survive_the_app_being_killed_and_it_comes_back(stack: Stack, phone: TestPhone) -> None:
    stack.serve.kill()
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
        await asyncio.to_thread(stack.serve.start)
    # Back: it serves calls again.
    await activity_served(stack, phone)


async def test_the_home_page_is_served_by_the_same_process(stack: Stack) -> None:
    """`vipbx serve` also listens on platform.web; a password stored in the call-state database
    opens a session there, and the session is that user's."""
    web = stack.config.platform.web.listener
    with stack.state() as state:
        state.web_accounts.set_password_hash(*ANNA_USER, hash_password("serve test password"),
                                             actor="e2e", source="test")
    async with httpx.AsyncClient(base_url=f"http://{web.bind}:{web.port}", timeout=10) as client:
        assert (await client.get("/api/v1/me")).status_code == 401
        opened = await client.post("/api/v1/session", json={"username": "fi0401110001@acme.example",
                                                             "password": "serve test password"})
        assert opened.status_code == 200, opened.text
        me = await client.get("/api/v1/me", headers={"authorization": f"Bearer {opened.json()['token']}"})
        assert me.json()["number"] == ANNA
