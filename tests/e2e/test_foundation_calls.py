"""Foundation calls through the product PBX (examples/*.yaml, rendered as shipped), by real SIP.

Every test checks both ends and the PBX in the middle: which devices rang (and that no other
did), what caller id they were shown, the channels the PBX itself has up, audio in both
directions, hangup causes, and that the PBX is left without channels when the test ends.

The session's PBX points FastAGI at an address where nothing listens, so by default the dialplan
falls back to ringing for the platform's no-answer time. The FastAGI tests start the real server
(`agi.server`) on that address themselves.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import pytest_asyncio
from support import ChannelLog, watch_channels

import agi.server
from agi.routing import RouteDecision, decide
from asterisk_conf.render import AGI_KEY
from base.model import Config
from testphone import TestPhone
from testphone.driver import Call
from testphone.media import _ULAW

pytestmark = pytest.mark.asterisk

OUTSIDE = "+358451234567"  # an outside caller, arriving through the carrier

ANNA = ("acme-anna-soft", "+358401110001", "Anna Virtanen")
MIKKO_DEVICES = ("acme-mikko-soft", "acme-mikko-desk")
MIKKO_NUMBER = "+358401110002"
SARA = "acme-sara-soft"
WORKSHOP = ("acme-workshop", "+358401110009")  # in "No voicemail"
SWITCHBOARD = "+358923130000"  # Acme's tenant number: rings Anna
JAMES = ("borealis-james-soft", "+358501220001", "James Taylor")  # Borealis 101
AINO = "borealis-aino-soft"

# Q.850 causes as the test phone reports them.
NORMAL_CLEARING, USER_BUSY, NO_ANSWER, UNALLOCATED = 16, 17, 19, 1
ANSWERED_ELSEWHERE, INVALID_NUMBER_FORMAT = 26, 28

# --- helpers -----------------------------------------------------------------------------------

@dataclass
class PbxChannel:
    """One line of `core show channels concise`."""

    name: str
    context: str
    exten: str
    state: str
    app: str
    data: str
    caller: str
    bridge: str

    @property
    def endpoint(self) -> str:
        """PJSIP/acme-anna-soft-0000001a → acme-anna-soft."""
        return self.name.split("/", 1)[1].rsplit("-", 1)[0]


def parse_channels(text: str) -> list[PbxChannel]:
    found = []
    for line in text.splitlines():
        f = line.split("!")
        if len(f) >= 14:
            found.append(PbxChannel(f[0], f[1], f[2], f[4], f[5], f[6], f[7], f[12]))
    return found


async def pbx_channels(pbx: Any) -> list[PbxChannel]:
    """The PBX's own view of its channels (the CLI runs in a thread: the driver keeps going)."""
    return parse_channels(await asyncio.to_thread(pbx.cli, "core show channels concise"))


async def dialling_channel(pbx: Any, endpoint: str) -> PbxChannel:
    """The PBX's channel from `endpoint`, which must be running Dial() now."""
    channels = await pbx_channels(pbx)
    found = [c for c in channels if c.endpoint == endpoint and c.app == "Dial"]
    assert len(found) == 1, f"no Dial() from {endpoint} on the PBX: {channels}"
    return found[0]


async def assert_bridged(pbx: Any, *endpoints: str, timeout: float = 5) -> None:
    """The PBX has exactly these endpoints' channels, all Up and in one bridge.

    Polled: the far end sees 200 OK a moment before the PBX has bridged the two legs.
    """
    deadline = time.monotonic() + timeout
    while True:
        channels = await pbx_channels(pbx)
        bridges = {c.bridge for c in channels}
        if (sorted(c.endpoint for c in channels) == sorted(endpoints)
                and all(c.state == "Up" for c in channels) and len(bridges) == 1 and "" not in bridges):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {sorted(endpoints)} Up in one bridge, the PBX has {channels}")
        await asyncio.sleep(0.1)


def wait_idle(pbx: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while channels := parse_channels(pbx.cli("core show channels concise")):
        if time.monotonic() > deadline:
            raise AssertionError(f"the PBX still has channels: {[c.name for c in channels]}")
        time.sleep(0.2)


async def wait_pbx_idle(pbx: Any, timeout: float = 10) -> None:
    await asyncio.to_thread(wait_idle, pbx, timeout)


async def rang(phone: TestPhone, log: ChannelLog, caller: Call, since: int = 0) -> set[str]:
    """Every device (or carrier number) the PBX called in this test, asked once `caller`'s call
    is over: then nothing can ring for it any more.

    Both ends count: the calls the phone took, and every endpoint the PBX's Dial()s called
    since `since` (one whose call the phone had not taken yet too; the carrier as "carrier"
    unless the phone took its call). Every device the phone took a call for must be in the
    PBX's record, which shows that record is complete.
    """
    await caller.wait_hangup(10)
    # A call that rang or was answered made PBX channels; a refused INVITE makes none.
    await log.wait_calls_over(since, made=bool({"Ringing", "Up"} & set(caller.states_seen)))
    received: set[str] = set()
    while not phone._any_incoming.empty():
        received.add(phone._any_incoming.get_nowait().target)
    dialled = log.dialled(since)
    devices = {target for target in received if not target.startswith("+")}
    assert devices <= dialled, f"the phone took calls for {sorted(devices - dialled)} that no Dial() made"
    if received - devices:
        dialled.discard("carrier")
    return received | dialled


def tone_frequency(call: Call, since: float = 0.0) -> float:
    """Dominant frequency (zero crossings) of the audio `call` heard after stream time `since`."""
    assert call.media is not None
    packets = [p for p in call.media.packets if not p.silent]
    if not packets:
        return 0.0
    first = call.media.packets[0].timestamp
    samples: list[int] = []
    for p in packets:
        if ((p.timestamp - first) % 2**32) / 8000 >= since:
            samples += [_ULAW[b] for b in p.payload]
    if len(samples) < 800:
        return 0.0
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / 8000)


async def assert_audio_both_ways(a: Call, b: Call) -> None:
    """`a` hears a 600 Hz tone that `b` sends, and `b` a 1400 Hz tone that `a` sends."""
    for speaker, listener, frequency in ((b, a, 600), (a, b, 1400)):
        before = listener.audio_seconds
        await speaker.play_tone(1.0, frequency)
        assert await listener.heard_audio(before + 0.8, timeout=4), (
            f"{listener!r} heard only {listener.audio_seconds - before:.2f} s of {speaker!r}'s tone")
        heard = tone_frequency(listener)
        # What was heard before the tone is silence: the estimate is the tone's own frequency.
        assert heard == pytest.approx(frequency, rel=0.1), heard


def agi_reachable(config: Config) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((config.platform.agi.bind, config.platform.agi.port)) == 0


@pytest_asyncio.fixture
async def fastagi(e2e_config: Config, pbx: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """`await fastagi(config)`: the product's FastAGI server on the platform's AGI address.

    Returns the list of routing questions it is asked, as (tenant, user), in order; `config` is
    what the router answers from.
    """
    servers: list[asyncio.Server] = []
    asked: list[tuple[str, str]] = []

    def recording_decide(config: Config, tenant_id: str, user_id: str, *rest: Any) -> RouteDecision:
        asked.append((tenant_id, user_id))
        return decide(config, tenant_id, user_id, *rest)

    monkeypatch.setattr(agi.server, "decide", recording_decide)

    async def start(config: Config) -> list[tuple[str, str]]:
        listener = e2e_config.platform.agi
        server, _ = await agi.server.start_agi_server(config, listener.bind, listener.port,
                                                        key=pbx.secrets.get(AGI_KEY))
        servers.append(server)
        return asked

    try:
        yield start
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


@pytest_asyncio.fixture
async def channel_log(pbx: Any) -> AsyncIterator[ChannelLog]:
    """The PBX's record of its channels and dials during the test."""
    async with watch_channels(pbx) as log:
        yield log


@pytest.fixture(autouse=True)
def pbx_idle_around_each_test(pbx: Any) -> Iterator[None]:
    """No call is left over from before, and every call is gone from the PBX after the test.

    Autouse, so it is set up before and torn down after `phone` (which hangs up its calls).
    """
    wait_idle(pbx)
    yield
    wait_idle(pbx)


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


# --- 2. colleague to colleague -----------------------------------------------------------------

@pytest.mark.parametrize(("dialled", "answering", "hangs_up"), [
    ("102", "acme-mikko-soft", "caller"),
    ("102", "acme-mikko-desk", "callee"),
    (MIKKO_NUMBER, "acme-mikko-desk", "caller"),
    ("0401110002", "acme-mikko-soft", "callee"),  # national form, Acme's country code
])
async def test_user_calls_colleague(phone: TestPhone, pbx: Any, channel_log: ChannelLog, dialled: str,
                                    answering: str, hangs_up: str) -> None:
    anna_device, anna_number, anna_name = ANNA
    caller = await phone.call(dialled, device=anna_device)
    ringing = {device: await phone.incoming(device, 10) for device in MIKKO_DEVICES}
    assert await caller.wait_state(("Ringing", "Up"), 5) == "Ringing"
    for leg in ringing.values():
        assert leg.caller == {"name": anna_name, "number": anna_number}
        assert "Up" not in leg.states_seen

    # The PBX: Anna's channel dialling both devices, each of them ringing.
    channels = {c.endpoint: c for c in (await pbx_channels(pbx))}
    assert set(channels) == {anna_device, *MIKKO_DEVICES}
    assert (await dialling_channel(pbx, anna_device)).data.startswith(
        "&".join(f"PJSIP/{d}" for d in MIKKO_DEVICES) + ",")
    assert all(channels[d].state == "Ringing" for d in MIKKO_DEVICES)

    callee = ringing[answering]
    other = ringing[next(d for d in MIKKO_DEVICES if d != answering)]
    await callee.answer()
    await caller.wait_state("Up", 5)
    # The other device stops ringing, told the call was answered elsewhere.
    assert await other.wait_hangup(5) == ANSWERED_ELSEWHERE
    assert "Up" not in other.states_seen

    await assert_bridged(pbx, anna_device, answering)

    await asyncio.sleep(0.3)
    await assert_audio_both_ways(caller, callee)

    ender, far = (caller, callee) if hangs_up == "caller" else (callee, caller)
    await ender.hangup()
    assert await far.wait_hangup(5) == NORMAL_CLEARING
    assert far.hung_up_by == "far" and ender.hung_up_by == "us"
    await wait_pbx_idle(pbx, 5)
    assert await rang(phone, channel_log, caller) == set(MIKKO_DEVICES)  # both of Mikko's, nobody else's


# --- 3. outside callers through the carrier ------------------------------------------------------

@pytest.mark.parametrize(("dialled", "devices"), [
    (MIKKO_NUMBER, MIKKO_DEVICES),
    ("358401110002", MIKKO_DEVICES),  # a carrier that drops the '+'
    ("+358401110001", (ANNA[0],)),
    ("+358501220001", (JAMES[0],)),  # the other tenant's user, same platform
    (SWITCHBOARD, (ANNA[0],)),  # Acme's switchboard number rings Anna
])
async def test_carrier_call_rings_the_user_with_the_caller_number(
        phone: TestPhone, pbx: Any, channel_log: ChannelLog, dialled: str, devices: tuple[str, ...]) -> None:
    caller = await phone.call(dialled, caller_number=OUTSIDE)
    ringing = {device: await phone.incoming(device, 10) for device in devices}
    assert await caller.wait_state(("Ringing", "Up"), 5) == "Ringing"
    for leg in ringing.values():
        assert leg.entry == "incoming"
        assert leg.caller.get("number") == OUTSIDE

    incoming = [c for c in (await pbx_channels(pbx)) if c.endpoint == "carrier"]
    assert len(incoming) == 1 and incoming[0].caller == OUTSIDE
    assert incoming[0].context == "vipbx-call-user" and incoming[0].app == "Dial"

    callee = ringing[devices[0]]
    await callee.answer()
    await caller.wait_state("Up", 5)
    await assert_bridged(pbx, "carrier", devices[0])
    await asyncio.sleep(0.3)
    await assert_audio_both_ways(caller, callee)
    await callee.hangup()
    assert await caller.wait_hangup(5) == NORMAL_CLEARING
    assert caller.hung_up_by == "far"
    assert await rang(phone, channel_log, caller) == set(devices)


# --- 4. isolation between tenants, and of extensions from the outside ----------------------------

async def test_other_tenants_extension_does_not_connect(phone: TestPhone, pbx: Any,
                                                       channel_log: ChannelLog) -> None:
    # 109 is Acme's workshop; Borealis has no 109.
    call = await phone.call("109", device=JAMES[0])
    assert await call.wait_hangup(10) == UNALLOCATED  # SIP 404
    assert "Ringing" not in call.states_seen and "Up" not in call.states_seen
    assert await rang(phone, channel_log, call) == set()  # above all not Acme's workshop
    assert call.audio_seconds == 0


@pytest.mark.parametrize(("device", "number", "reached"), [
    (AINO, "+358501220002", JAMES[0]),  # Borealis 101 is James, never Acme's Anna
    (SARA, "+358401110003", ANNA[0]),  # Acme 101 is Anna, never Borealis's James
])
async def test_same_extension_stays_in_its_tenant(phone: TestPhone, pbx: Any, channel_log: ChannelLog,
                                                  device: str, number: str, reached: str) -> None:
    call = await phone.call("101", device=device)
    leg = await phone.incoming(reached, 10)
    assert leg.caller.get("number") == number
    await leg.answer()
    await call.wait_state("Up", 5)
    await assert_bridged(pbx, device, reached)
    await call.hangup()
    assert await leg.wait_hangup(5) == NORMAL_CLEARING
    assert await rang(phone, channel_log, call) == {reached}


@pytest.mark.parametrize("dialled", ["101", "102", "109"])
async def test_carrier_cannot_dial_an_extension(phone: TestPhone, pbx: Any, channel_log: ChannelLog,
                                                dialled: str) -> None:
    call = await phone.call(dialled, caller_number=OUTSIDE)
    cause = await call.wait_hangup(10)
    # Refused at the INVITE: 404, or 484 because a longer number (an E.164 without '+') could
    # still match the carrier's context. Either way nothing answered and no device rang.
    assert cause in (UNALLOCATED, INVALID_NUMBER_FORMAT), call.hangup_cause_txt
    assert "Ringing" not in call.states_seen and "Up" not in call.states_seen
    assert await rang(phone, channel_log, call) == set()
    assert call.audio_seconds == 0


# --- 5. a user without voicemail -------------------------------------------------------------

async def test_unanswered_call_to_user_without_voicemail_gets_no_mailbox(
        phone: TestPhone, pbx: Any, channel_log: ChannelLog, e2e_config: Config) -> None:
    """Rings the platform's no-answer time (FastAGI down: the dialplan's default), then ends."""
    ring_seconds = e2e_config.platform.no_answer_seconds
    device, number = WORKSHOP
    started = time.monotonic()
    call = await phone.call(number, caller_number=OUTSIDE)
    leg = await phone.incoming(device, 10)
    assert await call.wait_hangup(ring_seconds + 15) == NO_ANSWER
    elapsed = time.monotonic() - started
    assert ring_seconds - 1 <= elapsed <= ring_seconds + 5, elapsed
    # No mailbox: the call was never answered and nothing (no greeting) was played.
    assert "Up" not in call.states_seen
    assert call.audio_seconds == 0
    await leg.wait_hangup(5)
    assert leg.hung_up_by == "far" and "Up" not in leg.states_seen
    assert await rang(phone, channel_log, call) == {device}


async def test_rejected_call_to_user_without_voicemail_is_busy(phone: TestPhone, pbx: Any) -> None:
    device, number = WORKSHOP
    call = await phone.call(number, caller_number=OUTSIDE)
    leg = await phone.incoming(device, 10)
    await call.wait_state("Ringing", 5)
    started = time.monotonic()
    await leg.hangup("busy")
    assert await call.wait_hangup(5) == USER_BUSY
    assert time.monotonic() - started < 3  # at once, not after a mailbox or a timeout
    assert "Up" not in call.states_seen
    assert call.audio_seconds == 0


# --- 6. FastAGI up and down ------------------------------------------------------------------

async def test_fastagi_down_calls_still_ring(phone: TestPhone, pbx: Any, channel_log: ChannelLog,
                                             e2e_config: Config) -> None:
    assert not agi_reachable(e2e_config), "something listens on the platform's FastAGI address"
    log_before = len(pbx.instance.log_path.read_text(errors="replace").splitlines())
    caller = await phone.call("102", device=ANNA[0])
    ringing = {device: await phone.incoming(device, 10) for device in MIKKO_DEVICES}
    dialling = await dialling_channel(pbx, ANNA[0])
    # The dialplan's own default ring time: the platform's no-answer seconds.
    assert dialling.data.endswith(f",{e2e_config.platform.no_answer_seconds},tT"), dialling.data
    new_log = pbx.instance.log_path.read_text(errors="replace").splitlines()[log_before:]
    assert any("FastAGI failed" in line for line in new_log), new_log  # it was tried
    await ringing[MIKKO_DEVICES[0]].answer()
    await caller.wait_state("Up", 5)
    await caller.hangup()
    assert await ringing[MIKKO_DEVICES[0]].wait_hangup(5) == NORMAL_CLEARING
    assert await rang(phone, channel_log, caller) == set(MIKKO_DEVICES)


async def test_fastagi_up_is_asked_and_its_answer_rules(phone: TestPhone, pbx: Any,
                                                        e2e_config: Config, fastagi: Any) -> None:
    # The router answers from a copy of the configuration whose ring time differs from the
    # dialplan's default: a call that rings that long proves the dialplan used the answer.
    agi_seconds = 4
    assert agi_seconds != e2e_config.platform.no_answer_seconds
    asked = await fastagi(replace(e2e_config, platform=replace(e2e_config.platform,
                                                             no_answer_seconds=agi_seconds)))

    # A colleague call: asked once, about the callee; rings and connects.
    caller = await phone.call("102", device=ANNA[0])
    ringing = {device: await phone.incoming(device, 10) for device in MIKKO_DEVICES}
    assert asked == [("acme", "mikko.korhonen")]
    dialling = await dialling_channel(pbx, ANNA[0])
    assert dialling.data.endswith(f",{agi_seconds},tT"), dialling.data
    await ringing[MIKKO_DEVICES[1]].answer()
    await caller.wait_state("Up", 5)
    await caller.hangup()
    await ringing[MIKKO_DEVICES[1]].wait_hangup(5)
    await wait_pbx_idle(pbx, 5)

    # The workshop, unanswered: no mailbox after the router's ring time, not the default's.
    started = time.monotonic()
    call = await phone.call(WORKSHOP[1], caller_number=OUTSIDE)
    await phone.incoming(WORKSHOP[0], 10)
    assert await call.wait_hangup(agi_seconds + 10) == NO_ANSWER
    assert agi_seconds - 0.5 <= time.monotonic() - started <= agi_seconds + 4
    assert "Up" not in call.states_seen and call.audio_seconds == 0
    assert asked[1:] == [("acme", "workshop")]
    await wait_pbx_idle(pbx, 5)

    # Contrast: a user WITH voicemail, unanswered as long, is answered by her mailbox.
    call = await phone.call("+358401110003", caller_number=OUTSIDE)
    await phone.incoming(SARA, 10)
    await call.wait_state("Up", agi_seconds + 10)
    assert await call.heard_audio(0.5, timeout=5)  # the unavailable greeting
    await call.hangup()
    assert asked[2:] == [("acme", "sara.lindqvist")]
