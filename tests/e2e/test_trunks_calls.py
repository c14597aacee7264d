"""Trunks with trust and the user's mobile as a device, through real SIP calls.

A PBX of this module's own (127.0.0.90) with two trunks, both played by the test phone:
- `core` (127.0.0.92): the trusted Finnish mobile core, the outbound trunk; calls to a handset
  leave through it marked with the prefix `*88` and the header `X-Vipbx-Handset: terminate`;
- `ic` (127.0.0.93): an untrusted Swedish interconnect, whose caller IDs anyone can set.
The devices register from 127.0.0.91. The Swedish tenant comes first in the files, so a national
number read with "whichever tenant matches first" would name the Swede.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from support import PbxObserver, Rig, eventually, reset_call_state, wait_pbx_idle

from asterisk_conf.validate import load_config
from base.model import Config
from testphone import PhoneInstance
from testphone.driver import Call
from vmstore import VoicemailStore

pytestmark = pytest.mark.asterisk

PBX_IP, PHONES_IP, CORE_IP, IC_IP = "127.0.0.90", "127.0.0.91", "127.0.0.92", "127.0.0.93"
VOICEMAIL = "+358201243100"
NO_ANSWER_SECONDS = 5
PIN = "480264"


@dataclass(frozen=True)
class User:
    tenant: str
    id: str
    number: str
    device: str


ANNA = User("fin", "anna", "+358401110001", "fin-anna-soft")  # her handset rings with her softphone
MIKKO = User("fin", "mikko", "+358401110002", "fin-mikko-soft")
SVEN = User("svea", "sven", "+46401110001", "svea-sven-soft")  # national: 0401110001, like Anna's
OUTSIDE = "+358451234567"
HANDSET = "*88" + ANNA.number  # how the PBX calls Anna's handset through the core

PLATFORM = f"""\
platform:
  sip: {{bind: {PBX_IP}, port: 23060}}
  rtp: {{start: 23100, end: 23299}}
  http: {{bind: {PBX_IP}, port: 23088}}
  ami: {{bind: {PBX_IP}, port: 23038}}
  agi: {{bind: {PBX_IP}, port: 23073}}
  no_answer_seconds: {NO_ANSWER_SECONDS}
  trunks:
    - name: core
      host: {CORE_IP}
      port: 24060
      match: [{CORE_IP}]
      trusted: true
      country_code: "358"
      outbound: true
      mobile_core: true
      handset_prefix: "*88"
      handset_header: "X-Vipbx-Handset: terminate"
    - name: ic
      host: {IC_IP}
      port: 24060
      match: [{IC_IP}]
      trusted: false
      country_code: "46"
"""
SVEA = f"""\
tenants:
  - id: svea
    name: Svea AB
    domain: svea.example
    country_code: "46"
    users:
      - {{id: sven, name: Sven, number: "{SVEN.number}", extension: "101", pin: "{PIN}",
          language: sv, devices: [{{id: {SVEN.device}}}]}}
"""
FIN = f"""\
tenants:
  - id: fin
    name: Fin Oy
    domain: fin.example
    users:
      - {{id: anna, name: Anna, number: "{ANNA.number}", extension: "101", pin: "{PIN}",
          language: fi, mobile: ring_with_devices, devices: [{{id: {ANNA.device}}}]}}
      - {{id: mikko, name: Mikko, number: "{MIKKO.number}", extension: "102", pin: "{PIN}",
          language: fi, devices: [{{id: {MIKKO.device}}}]}}
"""


@pytest.fixture(scope="module")
def trunks_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    folder = tmp_path_factory.mktemp("trunks-yaml")
    files = []
    for name, text in (("platform.yaml", PLATFORM), ("svea.yaml", SVEA), ("fin.yaml", FIN)):
        (folder / name).write_text(text, encoding="utf-8")
        files.append(folder / name)
    return load_config(files)


@pytest.fixture(scope="module")
def trunks_pbx(make_pbx: Callable[..., Any], trunks_config: Config) -> Iterator[Any]:
    from prompts.build import build

    pbx = make_pbx(trunks_config)
    build(pbx.home / "sounds")
    yield pbx
    pbx.instance.stop()


@pytest.fixture(scope="module")
def trunks_phone(make_phone: Callable[..., PhoneInstance], trunks_pbx: Any) -> Iterator[PhoneInstance]:
    phone = make_phone(trunks_pbx, PHONES_IP, sip_port=24060, http_port=24088, rtp=(24100, 24299))
    yield phone
    phone.stop()


@pytest_asyncio.fixture
async def rig(trunks_pbx: Any, trunks_config: Config, trunks_phone: PhoneInstance) -> AsyncIterator[Rig]:
    """This module's PBX with the service as `vipbx serve` builds it, the phone and an observer."""
    wait_pbx_idle(trunks_pbx)
    reset_call_state(trunks_pbx, trunks_config)
    observer = PbxObserver(trunks_pbx, trunks_pbx.home / "sounds",
                           VoicemailStore(trunks_pbx.instance.spool_dir))
    watcher = asyncio.create_task(observer.client.run())
    log_before = len(pbx_errors(trunks_pbx))
    async with trunks_phone.connect() as phone:
        rig = Rig(trunks_pbx, trunks_config, phone, observer)
        try:
            await rig.start_app()
            await observer.client.wait_connected(10)
            yield rig
            await phone.hangup_all()
        finally:
            await observer.client.close()
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await rig.stop_app()
            wait_pbx_idle(trunks_pbx)
            reset_call_state(trunks_pbx, trunks_config)
    # e.g. a dialplan function that is not loaded: the call may still go on, wrongly.
    assert pbx_errors(trunks_pbx)[log_before:] == []


def pbx_errors(pbx: Any) -> list[str]:
    text = pbx.instance.log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if "ERROR[" in line]


async def code_from(rig: Rig, digits: str, caller: str, trunk: str) -> list[str]:
    """Dial a feature code from outside through `trunk`; the prompts the PBX answered with."""
    since = rig.observer.mark()
    call = await rig.phone.call(digits, caller_number=caller, trunk=trunk)
    await call.wait_hangup(20)
    assert call.hung_up_by == "far" and "Up" in call.states_seen, call
    return rig.observer.prompts(caller, since)


def digits_of(number: str) -> list[str]:
    return [f"digit-{d}" for d in number.lstrip("+")]


async def hang_up(call: Call) -> None:
    await call.hangup()
    await call.wait_hangup(10)


# --- trust ------------------------------------------------------------------------------------------

async def test_an_untrusted_trunk_with_a_users_caller_id_is_asked_number_and_pin(rig: Rig) -> None:
    obs = rig.observer
    call = await rig.phone.call(VOICEMAIL, caller_number=ANNA.number, trunk="ic")
    await obs.wait_prompt(ANNA.number, "vm-enter-mailbox")  # not her mailbox at once
    await call.send_dtmf(ANNA.number + "#", duration_ms=80, between_ms=80)
    await obs.wait_prompt(ANNA.number, "vm-enter-pin")
    await call.send_dtmf(PIN + "#", duration_ms=80, between_ms=80)
    await obs.wait_prompt(ANNA.number, "vm-main-menu")
    assert obs.prompts(ANNA.number) == ["vm-enter-mailbox", "vm-enter-pin", "vm-no-messages",
                                        "vm-main-menu"]
    await hang_up(call)
    [login] = [e for e in rig.state.audit(ANNA.tenant, ANNA.id, limit=5) if e.field == "pin"]
    assert login.event == "pin_ok"


async def test_987_from_an_untrusted_trunk_is_refused_with_a_spoken_reason(rig: Rig) -> None:
    assert await code_from(rig, "987" + MIKKO.number, ANNA.number, "ic") == ["fc-refused-not-allowed"]
    assert await code_from(rig, "*43#", ANNA.number, "ic") == ["fc-refused-not-allowed"]
    routing = rig.state.routing(ANNA.tenant, ANNA.id)
    assert (routing.immediate, routing.call_waiting) == ("none", True)
    assert [e for e in rig.state.audit(ANNA.tenant, ANNA.id, limit=20) if e.source == "code"] == []


async def test_a_trusted_trunk_logs_in_at_once_reading_national_numbers_in_its_country(rig: Rig) -> None:
    # 0401110001 from the Finnish core is Anna (+358), though the Swedish tenant comes first.
    obs = rig.observer
    call = await rig.phone.call(VOICEMAIL, caller_number="0401110001", trunk="core")
    await obs.wait_prompt("0401110001", "vm-main-menu")
    assert obs.prompts("0401110001") == ["vm-no-messages", "vm-main-menu"]
    assert {s.lang for s in obs.of("0401110001", kind="play")} == {"fi"}  # Anna's language
    await hang_up(call)


async def test_a_national_number_on_the_swedish_trunk_is_the_swedish_user(rig: Rig) -> None:
    # A call diverted from 0401110001 arrives on the Swedish interconnect: Sven's mailbox (+46).
    obs = rig.observer
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE, diversion="0401110001", trunk="ic")
    await obs.wait_prompt(OUTSIDE, "vm-default-greeting-post")
    assert obs.prompts(OUTSIDE) == ["vm-default-greeting-pre", "plus", *digits_of(SVEN.number),
                                    "vm-default-greeting-post"]
    assert {s.lang for s in obs.of(OUTSIDE, kind="play")} == {"sv"}
    await hang_up(call)


# --- the mobile as a device ---------------------------------------------------------------------------

async def test_987_from_the_mobile_core_acts_for_the_user_and_the_forward_rings(rig: Rig) -> None:
    heard = await code_from(rig, "9870401110002", ANNA.number, "core")  # Mikko, national form
    assert heard == ["fc-forward-set", "plus", *digits_of(MIKKO.number)]
    assert rig.state.routing(ANNA.tenant, ANNA.id).immediate == MIKKO.number
    [trail] = rig.state.audit(ANNA.tenant, ANNA.id, limit=1)
    assert (trail.field, trail.actor, trail.source) == ("forward.immediate", ANNA.number, "code")
    assert await code_from(rig, "*#43#", ANNA.number, "core") == ["cw-is-on"]

    # A call to Anna now rings Mikko, with Anna in the Diversion; neither of Anna's devices.
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE, trunk="ic")
    leg = await rig.phone.incoming(MIKKO.device, 10)
    assert await leg.get_var("REDIRECTING(from-num)") == ANNA.number
    await leg.answer()
    await call.wait_state("Up", 5)
    await hang_up(call)
    assert rig.phone._incoming[ANNA.device].empty() and rig.phone._incoming[HANDSET].empty()

    assert await code_from(rig, "987", ANNA.number, "core") == ["fc-forward-removed"]
    assert rig.state.routing(ANNA.tenant, ANNA.id).immediate == "none"


async def test_a_call_to_the_user_rings_the_softphone_and_the_marked_handset_at_once(rig: Rig) -> None:
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE, trunk="ic")
    soft = await rig.phone.incoming(ANNA.device, 10)
    handset = await rig.phone.incoming(HANDSET, 10)
    # Through the core, with both markings: the prefix in the number and the header.
    assert (handset.entry, handset.trunk, handset.mark) == ("carrier-in", "core", "terminate")
    assert handset.caller.get("number") == OUTSIDE and soft.caller.get("number") == OUTSIDE
    assert not soft.ended and not handset.ended
    await handset.answer()  # taken on the mobile: the softphone stops ringing
    await call.wait_state("Up", 5)
    await soft.wait_hangup(5)
    await hang_up(call)
    await handset.wait_hangup(5)


async def test_no_answer_of_the_whole_group_goes_to_voicemail(rig: Rig) -> None:
    obs = rig.observer
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE, trunk="ic")
    soft = await rig.phone.incoming(ANNA.device, 10)
    handset = await rig.phone.incoming(HANDSET, 10)
    # Nobody answers: after the no-answer time both stop ringing and the caller hears Anna's greeting.
    await obs.wait_prompt(OUTSIDE, "vm-default-greeting-post", timeout=NO_ANSWER_SECONDS + 15)
    await soft.wait_hangup(5)
    await handset.wait_hangup(5)
    assert obs.prompts(OUTSIDE) == ["vm-default-greeting-pre", "plus", *digits_of(ANNA.number),
                                    "vm-default-greeting-post"]
    assert {s.lang for s in obs.of(OUTSIDE, kind="play")} == {"fi"}
    await hang_up(call)
    await eventually(lambda: rig.phone._incoming[ANNA.device].empty(), 1, "no second ring")
