"""`vipbx serve` against a real PBX, through real calls: it registers the Stasis app, answers the
FastAGI router's questions, hands entries it has no handler for back to the dialplan's fallback,
and when it is killed calls still get the fallback; restarted, it serves again.

Everything runs as operators run it: `vipbx deploy`, `vipbx asterisk start`, `vipbx phone start`
and `vipbx serve` as subprocesses on a PBX of this module's own (127.0.0.32).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from clitool import REPO, Vipbx, write_yaml
from prometheus_client.parser import text_string_to_metric_families
from support import ServeProcess, app_registered, eventually

from asterisk_conf.validate import load_config
from asterisk_host import AsteriskRuntime
from base.model import Config
from base.secrets import SecretStore
from callstate import CallStateService
from prompts import catalogue
from testphone import PhoneInstance, TestPhone
from testphone.driver import Call
from testphone.media import _ULAW, write_tone
from vmstore import Envelope, VoicemailStore, new_msg_id
from web.auth.passwords import hash_password

OUTSIDE = "+358451234567"
ANNA = "+358401110001"
ANNA_USER = ("acme", "anna.virtanen")
MIKKO = "+358401110002"
ACTIVITY = "+358201243200"
VOICEMAIL = "+358201243100"


@dataclass
class Stack:
    vipbx: Vipbx
    serve: ServeProcess
    config: Config
    files: list[Path]

    def doctor(self, *files: Path) -> dict[str, tuple[str, str]]:
        """`vipbx doctor`'s findings: check → (status, detail)."""
        done = self.vipbx("doctor", "--json", *map(str, files or self.files), check=False)
        found = {f["check"]: (f["status"], f["detail"]) for f in map(json.loads, done.stdout.splitlines())}
        assert done.returncode == (1 if any(s == "fail" for s, _ in found.values()) else 0), done.stderr
        return found

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
        yield Stack(vipbx, serve, load_config([str(f) for f in files]), files)
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
        found = await asyncio.to_thread(stack.doctor)
        assert found["ari"] == ("fail", "application vipbx is not registered: vipbx serve is not running or not connected")
        assert found["fastagi"][0] == found["metrics"][0] == found["web"][0] == "fail"
        assert found["asterisk"][0] == "ok", found["asterisk"]
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


async def scrape(url: str, auth: tuple[str, str] | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus endpoint: (name, labels) → value."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(url, auth=auth)
    assert answer.status_code == 200, (url, answer.status_code)
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_the_calls_keys_and_routing_answers(stack: Stack, phone: TestPhone) -> None:
    """What `vipbx serve` exports at platform.metrics after real calls: an IVR call with its keys
    and their answer times, a FastAGI routing answer; and Asterisk's own metrics (res_prometheus)
    on its loopback HTTP listener, behind the generated `prometheus` secret."""
    listener = stack.config.platform.metrics.listener
    url = f"http://{listener.bind}:{listener.port}/metrics"
    before = await scrape(url)
    await activity_served(stack, phone)  # "6#": two keys in the activity IVR
    call = await phone.call(ANNA, caller_number=OUTSIDE)  # the router answers "ring"
    ringing = await phone.incoming("acme-anna-soft", timeout=10)
    await call.hangup()
    await ringing.wait_hangup(timeout=10)
    after = await scrape(url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("vipbx_ivr_calls_total", entry="activity") == 1
    assert grew("vipbx_ivr_keys_total", entry="activity") == 2
    assert grew("vipbx_ivr_key_answer_seconds_count", entry="activity") >= 1
    assert value(after, "vipbx_ivr_calls_active", entry="activity") == 0
    assert grew("vipbx_agi_requests_total", script="route", answer="ring") == 1
    assert grew("vipbx_agi_request_seconds_count", script="route") >= 1
    assert value(after, "vipbx_ari_connected") == 1
    assert value(after, "vipbx_disk_free_bytes", volume="spool") > 0
    assert value(after, "vipbx_notifier_queue", channel="sms") == 0

    http = stack.config.platform.http
    asterisk_metrics = f"http://{http.bind}:{http.port}/metrics"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(asterisk_metrics)).status_code == 401
    secret = SecretStore(stack.vipbx.home / "secrets.json").get("prometheus")
    own = await scrape(asterisk_metrics, auth=("prometheus", secret))
    names = {name for name, _ in own}  # each labelled with the system's entity id
    assert {"asterisk_core_uptime_seconds_total", "asterisk_channels_count", "asterisk_endpoints_count"} <= names


async def test_doctor_finds_the_platform_healthy_and_a_generation_asterisk_has_not_loaded(
        stack: Stack, tmp_path: Path, prompt_catalogue: Path) -> None:
    sounds = stack.vipbx.home / "sounds"
    if not (sounds / "fi").exists():  # this PBX was never given its prompts
        found = await asyncio.to_thread(stack.doctor)
        status, detail = found["prompts"]
        assert status == "fail" and detail.startswith(f"{3 * len(catalogue.names())} missing (en/vm-welcome, ")
        assert detail.endswith(": vipbx prompts build")
        shutil.copytree(prompt_catalogue, sounds, copy_function=os.link, dirs_exist_ok=True)
    found = await asyncio.to_thread(stack.doctor)
    assert {check: status for check, (status, _) in found.items()} == {
        "asterisk": "ok", "configuration": "ok", "ari": "ok", "fastagi": "ok", "database": "ok", "spool": "ok",
        "prompts": "ok", "disk": "ok", "gateways": "ok", "metrics": "ok", "web": "ok"}, found["prompts"]
    assert "generation 0001 loaded" in found["asterisk"][1]

    # A generation swapped in without a reload is not what Asterisk runs, and doctor says so.
    platform, *tenants = stack.files
    changed = tmp_path / "platform.yaml"
    changed.write_text(platform.read_text() + "  no_answer_seconds: 25\n")
    await asyncio.to_thread(stack.vipbx, "deploy", "--no-reload", str(changed), *map(str, tenants))
    try:
        found = await asyncio.to_thread(stack.doctor, changed, *tenants)
        assert found["asterisk"][0] == "fail" and "has not loaded generation 0002" in found["asterisk"][1]
        assert found["configuration"][0] == "ok"
        found = await asyncio.to_thread(stack.doctor)  # the original files are no longer deployed
        assert found["configuration"][0] == "warn" and "extensions.conf" in found["configuration"][1]
    finally:
        # Deployed again with a reload (of the dialplan only): loaded, and doctor is content.
        await asyncio.to_thread(stack.vipbx, "deploy", *map(str, stack.files))
    found = await asyncio.to_thread(stack.doctor)
    assert found["asterisk"][0] == "ok" and "generation 0003 loaded" in found["asterisk"][1], found["asterisk"]


def tone_seconds(call: Call, frequency: float, since: float) -> float:
    """The longest run of what the phone heard after `since` (loop time) that is a steady tone of
    `frequency` (±3 %, by zero crossings in 0.25 s windows): speech never holds one pitch."""
    assert call.media is not None
    samples = [_ULAW[b] for p in call.media.packets if p.arrival >= since and not p.silent for b in p.payload]
    window, longest, run = 2000, 0, 0
    for start in range(0, len(samples) - window + 1, window):
        part = samples[start:start + window]
        crossings = sum(1 for a, b in itertools.pairwise(part) if (a < 0) != (b < 0))
        steady = abs(crossings / 2 / (window / 8000) - frequency) <= 0.03 * frequency
        run = run + 1 if steady else 0
        longest = max(longest, run)
    return longest * window / 8000


async def test_a_backup_restored_into_a_fresh_home_is_heard_from_its_own_pbx(
        stack: Stack, phone: TestPhone, prompt_catalogue: Path, tmp_path: Path) -> None:
    """A message in the running platform is backed up while it serves; the platform is then lost:
    a fresh home gets the archive (and secrets.json, kept apart as docs/backup.md says), its own
    Asterisk and `vipbx serve` on the same addresses, and Anna hears her message from it."""
    store = VoicemailStore(stack.vipbx.home / "pbx" / "spool")
    wav = tmp_path / "message.wav"
    write_tone(wav, 700, 3.0)
    envelope = Envelope(caller_number="201", caller_name=None, called_number=ANNA,  # short: said before it
                        orig_time=datetime.now(UTC) - timedelta(minutes=5), duration=3, msg_id=new_msg_id())
    store.add("acme", ANNA.removeprefix("+"), wav, envelope)
    archive = tmp_path / "backup.tar.gz"
    made = await asyncio.to_thread(stack.vipbx, "backup", *map(str, stack.files), "--out", str(archive))
    assert made.stdout.startswith(f"backup {archive}: 1 message in 1 mailbox"), made.stdout

    # The platform is gone; a fresh home on the same addresses takes over.
    await asyncio.to_thread(stack.serve.stop)
    await asyncio.to_thread(stack.vipbx, "asterisk", "stop")
    fresh = Vipbx(tmp_path / "fresh")
    serve = ServeProcess(fresh.argv("serve", *map(str, stack.files)), fresh.env(), REPO, fresh.home / "serve.log",
                         app_registered(fresh.cli))
    try:
        restored = await asyncio.to_thread(fresh, "restore", *map(str, stack.files), "--from", str(archive))
        assert "1 message in 1 mailbox" in restored.stdout, restored.stdout
        shutil.copy2(stack.vipbx.home / "secrets.json", fresh.home / "secrets.json")
        shutil.copytree(prompt_catalogue, fresh.home / "sounds", copy_function=os.link)
        await asyncio.to_thread(fresh, "deploy", *map(str, stack.files))
        await asyncio.to_thread(fresh, "asterisk", "start")
        await asyncio.to_thread(serve.start)

        call = await phone.call(VOICEMAIL, caller_number=ANNA)  # her own number: no PIN asked
        await call.wait_state("Up", 10)
        answered = asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)
        await call.send_dtmf("1")  # new messages: the envelope, then the message
        await eventually(lambda: tone_seconds(call, 700, answered) >= 2.0, 20,
                         "the message heard\n" + "\n".join(serve.text().splitlines()[-20:]))
        await call.hangup()
    finally:
        await asyncio.to_thread(serve.stop)
        await asyncio.to_thread(fresh, "asterisk", "stop", check=False)
        # The module's own platform back, for whatever runs after.
        await asyncio.to_thread(stack.vipbx, "asterisk", "start")
        await asyncio.to_thread(stack.serve.start)
