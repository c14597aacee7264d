"""The test harness itself, against real Asterisk: registration, calls both ways, DTMF, audio.

Most of these run against a deliberately tiny PBX (echo, digit reader, prompt player, dialler) on
addresses of their own, so a failure here points at the harness and not at the product's
dialplan. The last tests put the same phone in front of the product PBX (`pbx` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from asterisk_conf.conffilters import conf, hostport
from base.model import Carrier, Config, Device, Listener, Platform, Tenant, User
from base.secrets import SecretStore
from testphone import PhoneInstance, TestPhone

pytestmark = pytest.mark.asterisk

# The harness PBX and its phone: beside the session's (127.0.0.12-14), never on top of them.
H_PBX, H_PHONES, H_CARRIER = "127.0.0.15", "127.0.0.16", "127.0.0.17"
ALICE, BOB = "h-alice-soft", "h-bob-soft"
OUTSIDE = "+358501234567"
# Prompt lengths in the packaged English sounds (GSM: 1650 bytes a second).
HELLO_WORLD, VM_GOODBYE = 1.42, 0.88


MINIMAL_MODULES = (
    "res_timing_timerfd", "res_sorcery_config", "res_sorcery_memory", "res_sorcery_astdb",
    "res_pjproject", "res_pjsip", "res_pjsip_session", "res_pjsip_pubsub", "chan_pjsip",
    "res_pjsip_authenticator_digest", "res_pjsip_endpoint_identifier_ip",
    "res_pjsip_endpoint_identifier_user", "res_pjsip_registrar", "res_pjsip_sdp_rtp",
    "res_pjsip_caller_id", "res_pjsip_diversion", "res_pjsip_header_funcs", "res_pjsip_rfc3326",
    "res_pjsip_logger", "res_rtp_asterisk", "codec_ulaw", "codec_alaw", "codec_gsm", "format_gsm",
    "format_wav", "format_pcm", "pbx_config", "app_dial", "app_echo", "app_playback", "app_read",
    "app_record", "app_senddtmf", "func_db", "func_callerid", "func_channel", "func_strings",
    "func_logic", "bridge_simple",
)


def harness_config() -> Config:
    platform = Platform(
        sip=Listener(H_PBX, 15060), http=Listener(H_PBX, 15088), ami=Listener(H_PBX, 15038),
        agi=Listener(H_PBX, 15073), rtp_start=15600, rtp_end=15999,
        trunks=(Carrier(host=H_CARRIER, port=16060, match=(H_CARRIER,)),))
    users = (
        User("alice", "Alice", "+358401110091", "101", None, "2580", "en", devices=(Device(ALICE),)),
        User("bob", "Bob", "+358401110092", "102", None, "2581", "en", devices=(Device(BOB),)),
    )
    return Config(platform, (Tenant("h", "Harness", "harness.example", users=users),))


def _section(name: str, **options: str) -> str:
    return f"[{conf(name)}]\n" + "".join(f"{k}={v}\n" for k, v in options.items())


def minimal_pbx_files(config: Config, secrets: SecretStore) -> dict[str, str]:
    """A tiny PBX on `config.platform`: its devices and carrier, and a few test extensions.

    600 echo (until #) · 601 reads 3 digits into DB harness/digits · 602 plays two prompts 1 s
    apart · 603 keeps caller and diversion in DB harness/{caller,diverted} · 604 busy ·
    605 sends DTMF 123 to the caller · 61N rings device N · +... leaves through the carrier.
    """
    p = config.platform
    assert p.carrier is not None
    devices = [d.id for t in config.tenants for u in t.users for d in u.devices]
    media = {"disallow": "all", "allow": "alaw,ulaw", "dtmf_mode": "rfc4733", "direct_media": "no"}
    pjsip = [
        _section("global", type="global", endpoint_identifier_order="ip,username"),
        _section("udp", type="transport", protocol="udp", bind=hostport(p.sip.bind, p.sip.port)),
        _section("carrier", type="endpoint", context="harness", transport="udp", aors="carrier",
                 **media),
        _section("carrier", type="aor", contact=f"sip:{hostport(p.carrier.host, p.carrier.port)}"),
        _section("carrier", type="identify", endpoint="carrier", match=conf(p.carrier.host)),
    ]
    for dev in devices:
        pjsip += [
            _section(dev, type="endpoint", context="harness", transport="udp", auth=dev, aors=dev,
                     **media),
            _section(dev, type="auth", auth_type="userpass", username=dev,
                     password=conf(secrets.get(f"device:{dev}"))),
            _section(dev, type="aor", max_contacts="1", remove_existing="yes"),
        ]
    dialplan = [
        "exten => 600,1,Answer()", " same => n,Echo()", " same => n,Playback(beep)",
        " same => n,Hangup()",
        "exten => 601,1,Answer()", " same => n,Read(DIGITS,,3,,,10)",
        " same => n,Set(DB(harness/digits)=${DIGITS})", " same => n,Playback(beep)",
        " same => n,Hangup()",
        "exten => 602,1,Answer()", " same => n,Playback(hello-world)", " same => n,Wait(1)",
        " same => n,Playback(vm-goodbye)", " same => n,Hangup()",
        "exten => 603,1,Set(DB(harness/caller)=${CALLERID(num)})",
        " same => n,Set(DB(harness/diverted)=${REDIRECTING(from-num)})",
        " same => n,Answer()", " same => n,Playback(beep)", " same => n,Hangup()",
        "exten => 604,1,Busy(5)",
        "exten => 605,1,Answer()", " same => n,Wait(0.5)", " same => n,SendDTMF(123)",
        " same => n,Wait(5)", " same => n,Hangup()",
        *(f"exten => 61{i},1,Dial(PJSIP/{conf(d)},20)" for i, d in enumerate(devices)),
        "exten => _+X.,1,Dial(PJSIP/${EXTEN}@carrier,20)", " same => n,Hangup()",
    ]
    quiet = ("acl.conf", "udptl.conf", "pjproject.conf", "cdr.conf", "cel.conf", "ccss.conf",
             "features.conf", "stasis.conf", "manager.conf", "musiconhold.conf")
    return {
        "modules.conf": "[modules]\nautoload=no\n"
                        + "".join(f"require => {m}.so\n" for m in MINIMAL_MODULES),
        "pjsip.conf": "\n".join(pjsip),
        "extensions.conf": "[general]\nstatic=yes\nwriteprotect=yes\n\n[harness]\n"
                           + "\n".join(dialplan) + "\n",
        "rtp.conf": f"[general]\nrtpstart={p.rtp_start}\nrtpend={p.rtp_end}\n",
        "logger.conf": "[general]\n[logfiles]\nconsole => notice,warning,error\n"
                       "messages => notice,warning,error\n",
        "indications.conf": "[general]\ncountry=fi\n\n[fi]\ndescription=Finland\n"
                            "ringcadence=1000,4000\nring=425/1000,0/4000\n"
                            "busy=425/300,0/300\ncongestion=425/200,0/200\n",
        **{name: "" for name in quiet},
    }


# --- fixtures ---------------------------------------------------------------------------------

# `Pbx` (see conftest) is typed as Any here: conftest is not an importable module.
@pytest.fixture(scope="module")
def harness_pbx(make_pbx: Callable[..., Any]) -> Iterator[Any]:
    pbx = make_pbx(harness_config(), minimal_pbx_files, check=False)
    yield pbx
    pbx.instance.stop()


@pytest.fixture(scope="module")
def harness_phone_instance(make_phone: Callable[..., PhoneInstance],
                           harness_pbx: Any) -> Iterator[PhoneInstance]:
    phone = make_phone(harness_pbx, H_PHONES, sip_port=16060, http_port=16088, rtp=(16500, 16899))
    yield phone
    phone.stop()


@pytest_asyncio.fixture
async def hphone(harness_phone_instance: PhoneInstance) -> AsyncIterator[TestPhone]:
    async with harness_phone_instance.connect() as phone:
        yield phone


def db_get(pbx: Any, key: str) -> str:
    """A value the harness dialplan stored in AstDB (family "harness")."""
    out = pbx.cli(f"database get harness {key}")
    return out.split("Value:", 1)[1].strip() if "Value:" in out else ""


# --- the harness against the tiny PBX -----------------------------------------------------------

async def test_devices_register(hphone: TestPhone, harness_pbx: Any) -> None:
    assert await hphone.registered(ALICE)
    assert await hphone.registered(BOB)
    contacts = harness_pbx.cli("pjsip show contacts")
    # Registered from the phones' address, never from the carrier's.
    assert f"{ALICE}/sip:{ALICE}@{H_PHONES}" in contacts
    assert f"{BOB}/sip:{BOB}@{H_PHONES}" in contacts


async def test_echo_answers_and_sends_back_what_the_phone_says(hphone: TestPhone) -> None:
    call = await hphone.call("600", device=ALICE)
    await call.wait_state("Up", 10)
    await asyncio.sleep(0.3)
    await call.play_tone(1.0)
    assert await call.heard_audio(0.9, timeout=3), call.segments()
    # '#' ends Echo(); the PBX plays a beep and hangs up.
    await call.send_dtmf("#")
    assert await call.wait_hangup(5) == 16
    assert call.hung_up_by == "far"


async def test_dtmf_reaches_the_pbx(hphone: TestPhone, harness_pbx: Any) -> None:
    call = await hphone.call("601", device=ALICE)
    await call.wait_state("Up", 10)
    await asyncio.sleep(0.3)
    await call.send_dtmf("479")
    await call.wait_hangup(10)
    assert db_get(harness_pbx, "digits") == "479"


async def test_prompts_are_heard_with_their_lengths(hphone: TestPhone) -> None:
    call = await hphone.call("602", device=BOB)
    await call.wait_hangup(15)
    segments = call.segments()
    assert len(segments) == 2, segments
    (first_at, first), (second_at, second) = segments
    assert first == pytest.approx(HELLO_WORLD, abs=0.1)
    assert second == pytest.approx(VM_GOODBYE, abs=0.1)
    # Wait(1) between them.
    assert second_at - (first_at + first) == pytest.approx(1.0, abs=0.15)
    assert call.audio_seconds == pytest.approx(HELLO_WORLD + VM_GOODBYE, abs=0.2)


async def test_carrier_call_brings_caller_and_diversion(hphone: TestPhone, harness_pbx: Any) -> None:
    call = await hphone.call("603", caller_number=OUTSIDE, diversion="+358401110091")
    await call.wait_hangup(10)
    assert call.hangup_cause == 16
    assert db_get(harness_pbx, "caller") == OUTSIDE
    assert db_get(harness_pbx, "diverted") == "+358401110091"


async def test_busy_is_reported_with_its_cause(hphone: TestPhone) -> None:
    call = await hphone.call("604", device=ALICE)
    assert await call.wait_hangup(10) == 17
    assert call.hung_up_by == "far"
    assert "Up" not in call.states_seen


async def test_dtmf_sent_by_the_pbx_is_seen(hphone: TestPhone) -> None:
    call = await hphone.call("605", device=ALICE)
    await call.wait_dtmf("123", 5)
    await call.hangup()
    await call.wait_hangup(5)
    assert call.hung_up_by == "us"


async def test_call_to_a_device_rings_it_and_connects_both_ways(hphone: TestPhone) -> None:
    caller = await hphone.call("611", device=ALICE)  # 61N rings device N: Bob
    callee = await hphone.incoming(BOB, 5)
    assert callee.entry == "incoming"
    assert await caller.wait_state(("Ringing", "Up"), 5) == "Ringing"
    await callee.answer()
    await caller.wait_state("Up", 5)
    await asyncio.sleep(0.3)
    await callee.play_tone(0.8)
    assert await caller.heard_audio(0.7, timeout=3)
    await caller.play_to("sound:hello-world")
    assert await callee.heard_audio(HELLO_WORLD - 0.2, timeout=3)
    await callee.hangup()
    await caller.wait_hangup(5)
    assert caller.hung_up_by == "far" and callee.hung_up_by == "us"


async def test_call_to_an_outside_number_reaches_the_carrier(hphone: TestPhone) -> None:
    caller = await hphone.call("+358409999999", device=ALICE)
    carrier = await hphone.incoming("+358409999999", 5)
    assert carrier.entry == "carrier-in"
    await carrier.hangup("busy")
    assert await caller.wait_hangup(5) == 17


# --- the same phone in front of the product PBX ----------------------------------------------------

async def test_every_example_device_registers_with_the_product(phone: TestPhone,
                                                                 phone_instance: PhoneInstance) -> None:
    await phone.wait_registered(phone_instance.devices, timeout=10)
    assert "acme-anna-soft" in phone_instance.devices


async def test_product_carrier_call_rings_the_users_devices(phone: TestPhone, pbx: Any) -> None:
    # Mikko has two devices: a call to his number rings both (no FastAGI needed for that).
    call = await phone.call("+358401110002", caller_number=OUTSIDE)
    soft = await phone.incoming("acme-mikko-soft", 10)
    desk = await phone.incoming("acme-mikko-desk", 10)
    assert soft.caller.get("number") == OUTSIDE
    await desk.answer()
    await call.wait_state("Up", 5)
    await soft.wait_hangup(5)  # the other device stops ringing
    await call.hangup()
    await desk.wait_hangup(5)
    assert desk.hung_up_by == "far"
