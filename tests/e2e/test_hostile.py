"""Hostile input through real SIP calls into the product PBX with the real service running:
random keys at random moments into the voicemail and activity numbers, garbage Diversion,
History-Info and caller ID from the carrier, a stolen device password dialling premium and barred
numbers, and one tenant's device reaching for another tenant's users.

Every call must end with no PBX channel left; nothing may change that the keys did not ask for
(every mailbox and every user's call state compared before and after); no mailbox is opened and
nothing is dialled out for garbage; neither the PBX nor the service logs an ERROR.

`VIPBX_HOSTILE_CALLS` (default 16) random calls, seeded by `VIPBX_HOSTILE_SEED` (default 8).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import Person, Rig, eventually

from ari_app.client import AriError
from ari_app.testing import Snapshot
from testphone.driver import Call, CallEnded
from testphone.media import write_tone
from vmstore import Envelope, VoicemailStore

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support",)  # the `rig` fixture

VOICEMAIL, ACTIVITY = "+358201243100", "+358201243200"
ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
MIKKO_DEVICES = ("acme-mikko-soft", "acme-mikko-desk")
WORKSHOP = Person("acme", "workshop", "+358401110009", "acme-workshop", "864213")  # "No voicemail"
JAMES = Person("borealis", "james.taylor", "+358501220001", "borealis-james-soft", "615248")
AINO = Person("borealis", "aino.makinen", "+358501220002", "borealis-aino-soft", "307194")
OUTSIDE = "+358451234567"
KEYS = "0123456789*#"
CALLS = int(os.environ.get("VIPBX_HOSTILE_CALLS", "16"))
SEED = int(os.environ.get("VIPBX_HOSTILE_SEED", "8"))
OPENED = ("vm-main-menu", "vm-you-have", "vm-no-messages", "act-current-is")  # a mailbox or activity menu


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


# The service's own loggers (the AMI library's callbacks at shutdown are not of its making).
PRODUCT = {"ari_app", "agi", "callstate", "vmstore", "notify", "base", "prompts", "asterisk_conf"}


@pytest.fixture(autouse=True)
def no_app_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The service (run in this process) logs no ERROR either."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.split(".")[0] in PRODUCT]
    assert not errors, "the service logged errors:\n" + "\n".join(r.getMessage() for r in errors)


def store_of(rig: Rig) -> VoicemailStore:
    return VoicemailStore(rig.pbx.instance.spool_dir)


def snapshot(rig: Rig) -> Snapshot:
    return Snapshot.take(rig.config, store_of(rig), rig.state)


def seed_messages(rig: Rig, tmp: Path) -> None:
    """Two new messages for anna, none for anyone else."""
    store = store_of(rig)
    for msg_id in ("hostile1", "hostile2"):
        if store.find(ANNA.tenant, ANNA.box, msg_id) is None:
            audio = tmp / f"{msg_id}.wav"
            write_tone(audio, 600, 1.0)
            store.add(ANNA.tenant, ANNA.box, audio, Envelope(
                caller_number=OUTSIDE, caller_name=None, called_number=ANNA.number,
                orig_time=datetime(2024, 3, 5, 9, 30, tzinfo=UTC), duration=1, msg_id=msg_id))


async def calls_over(rig: Rig, since: int) -> None:
    """Every PBX channel made since the mark is gone, and the service serves no call any more."""
    await rig.observer.channels.wait_calls_over(since, timeout=40)
    assert rig.app is not None
    await eventually(lambda: not rig.app.service.app.sessions, 10, "the service's sessions ended")  # type: ignore[union-attr]


def opened(rig: Rig, caller: str, since: int) -> list[str]:
    return [name for name in rig.observer.prompts(caller, since) if name in OPENED]


# --- 1. random keys at random moments into the voicemail and activity numbers ----------------------

async def random_call(rig: Rig, rnd: random.Random, to: str, *, device: str | None,
                      number: str | None) -> str:
    """Keys in bursts at random moments, then a hang-up at a random moment; the keys sent."""
    call = await rig.phone.call(to, device=device, caller_number=number)
    sent = ""
    try:
        await call.wait_state("Up", 15)
        for _ in range(rnd.randint(0, 5)):
            await asyncio.sleep(rnd.uniform(0, 1.5))
            keys = "".join(rnd.choice(KEYS) for _ in range(rnd.randint(1, 4)))
            await call.send_dtmf(keys, duration_ms=80, between_ms=80, wait=False)
            sent += keys
        await asyncio.sleep(rnd.uniform(0, 2.0))
    except (CallEnded, AriError):
        pass  # the PBX ended it first (e.g. "*" said goodbye)
    await call.hangup()
    await call.wait_hangup(20)
    return sent


def check_unchanged_but(before: Snapshot, after: Snapshot, allowed: set[tuple[str, str]], what: str) -> None:
    changed = before.changed_users(after)
    assert changed <= allowed, f"{what}: {changed - allowed} changed"


async def test_random_keys_into_the_voicemail_and_activity_numbers(rig: Rig, tmp_path: Path) -> None:
    rnd = random.Random(SEED)
    for n in range(CALLS):
        seed_messages(rig, tmp_path)
        to = VOICEMAIL if n % 2 == 0 else ACTIVITY
        own = rnd.random() < 0.5
        device, number = (ANNA.device, None) if own else (None, OUTSIDE)
        before = snapshot(rig)
        since, mark = rig.observer.channels.mark(), rig.observer.mark()
        keys = await random_call(rig, rnd, to, device=device, number=number)
        await calls_over(rig, since)
        after = snapshot(rig)
        what = f"call {n} to {to} from {device or number}, keys {keys!r}"
        if not own:
            # An outside caller who never typed a PIN: nothing opened, nothing but PIN counts changed.
            assert not opened(rig, OUTSIDE, mark), what
            assert before.boxes == after.boxes and before.greetings == after.greetings, what
            assert all(before.users[k][:3] == after.users[k][:3] for k in before.users), what
            continue
        box, user = (ANNA.tenant, ANNA.box), (ANNA.tenant, ANNA.user)
        check_unchanged_but(before, after, {box, user}, what)
        was, now = before.boxes[box], after.boxes[box]
        assert set(now) <= set(was) and len(was) - len(now) <= keys.count("7"), what
        if before.greetings[box] != after.greetings[box]:
            assert "5" in keys or "6" in keys, what
        assert (before.users[user][0], before.users[user][2]) == (after.users[user][0], after.users[user][2]), what
        if before.users[user][1] != after.users[user][1]:
            assert to == ACTIVITY and any(d in keys for d in "1234567"), what
        rig.state.set_presence(ANNA.tenant, ANNA.user, "available", actor="e2e", source="test")


# --- 2. garbage Diversion, History-Info and caller ID from the carrier -----------------------------

GARBAGE = {
    "overlong": "9" * 300,
    "non-numeric": "anna",
    "comma": "+358401110001,1",
    "dialplan expression": "${SHELL}$[1+1]",
    "escaped newline": "+358401110001%0d%0aX-Evil:%201",
    "empty": "",
    "huge": "+" + "1" * 3000,
}
# Anna's number however written: what SIP and the number rules make of it is her number. As a
# Diversion it may leave a message in her box; as caller ID the trusted-trunk rules decide (a
# carrier's caller ID is believed), so the caller-ID garbage test leaves these out.
HER_NUMBER_WRITTEN_ODDLY = {
    "semicolon": "+358401110001;x=1",  # SIP ends a URI's user part at ';' (the rest are parameters)
    "parenthesis": "+3584011)10001",
}


async def call_press_1_and_end(rig: Rig, since: int, to: str, **how: Any) -> None:
    """Call `to` as `how` says, press 1 if answered (in case a greeting offers it), hang up, and
    wait until every PBX channel made since `since` is gone."""
    call = await rig.phone.call(to, **how)
    with suppress(CallEnded, TimeoutError):
        await call.wait_state("Up", 10)
        await call.send_dtmf("1", duration_ms=80, between_ms=80)
    await call.hangup()
    await call.wait_hangup(20)
    await calls_over(rig, since)


@pytest.mark.parametrize("name", sorted(GARBAGE | HER_NUMBER_WRITTEN_ODDLY))
async def test_garbage_diversion_opens_no_mailbox_and_dials_nothing(rig: Rig, name: str) -> None:
    value = (GARBAGE | HER_NUMBER_WRITTEN_ODDLY)[name]
    before = snapshot(rig)
    since, mark = rig.observer.channels.mark(), rig.observer.mark()
    await call_press_1_and_end(rig, since, VOICEMAIL, caller_number=OUTSIDE, diversion=value)
    assert "carrier" not in rig.observer.channels.dialled(since)
    assert not opened(rig, OUTSIDE, mark)
    after = snapshot(rig)
    owner = rig.config.find_caller(value, "358")  # the carrier trunk reads national numbers as Finnish
    allowed = {(owner.tenant.id, owner.user.mailbox)} if owner else set()  # a real number, however written
    check_unchanged_but(before, after, allowed, name)


HEADERS = {
    "History-Info garbage": {"History-Info": "<sip:${SHELL}@x>;index=1,<sip:+358401110001@x;cause=302>;index=1.1"},
    "History-Info huge": {"History-Info": "<sip:" + "9" * 2000 + "@x>;index=1"},
    "Diversion not a URI": {"Diversion": "+358401110001"},
    "Diversion empty": {"Diversion": "<>"},
    "two Diversions": {"Diversion": "<sip:+358401110001@x>;reason=no-answer,<sip:+358501220001@x>;reason=busy"},
    "P-Asserted-Identity of anna": {"P-Asserted-Identity": "<sip:+358401110001@127.0.0.14>"},
}


@pytest.mark.parametrize("name", sorted(HEADERS))
async def test_garbage_headers_open_no_mailbox_and_dial_nothing(rig: Rig, name: str) -> None:
    before = snapshot(rig)
    since, mark = rig.observer.channels.mark(), rig.observer.mark()
    await call_press_1_and_end(rig, since, VOICEMAIL, caller_number=OUTSIDE, headers=HEADERS[name])
    assert "carrier" not in rig.observer.channels.dialled(since)
    assert not [p for p in rig.observer.prompts(OUTSIDE, mark) if p in ("vm-main-menu", "vm-you-have", "vm-no-messages")]
    # A Diversion naming a user may leave a message in that mailbox: nothing else changes.
    check_unchanged_but(before, snapshot(rig), {(ANNA.tenant, ANNA.box), (JAMES.tenant, JAMES.box)}, name)


@pytest.mark.parametrize("name", sorted(GARBAGE))
@pytest.mark.parametrize("to", [VOICEMAIL, ACTIVITY])
async def test_garbage_caller_id_logs_in_nobody(rig: Rig, name: str, to: str) -> None:
    value = GARBAGE[name]
    assert rig.config.find_caller(value, "358") is None, "a user's number belongs in HER_NUMBER_WRITTEN_ODDLY"
    before = snapshot(rig)
    since, mark = rig.observer.channels.mark(), rig.observer.mark()
    await call_press_1_and_end(rig, since, to, caller_number=value)
    assert "carrier" not in rig.observer.channels.dialled(since)
    seen = [s.what for s in rig.observer.seen[mark:] if s.kind == "play"]
    assert not [p for p in seen if p in OPENED], seen
    after = snapshot(rig)
    assert before.boxes == after.boxes and all(before.users[k][:3] == after.users[k][:3] for k in before.users)


# --- 3. a stolen device password -------------------------------------------------------------------

# Premium-rate and special ranges, as E.164 and as a device dials them nationally / with 00.
PREMIUM = ["+358700123456", "0700123456", "+19005550123", "0019005550123", "+882123456789", "00882123456789"]


@pytest.mark.parametrize("dialled", PREMIUM)
async def test_a_stolen_device_password_cannot_reach_premium_or_barred_numbers(rig: Rig, dialled: str) -> None:
    """Whoever has a device's SIP password calls as that device (the test phone registers with
    it): the carrier must never receive a call to a premium or special-range number."""
    since = rig.observer.channels.mark()
    call = await rig.phone.call(dialled, device=ANNA.device)
    ended = asyncio.ensure_future(call.wait_hangup(30))
    reached = asyncio.ensure_future(rig.phone.incoming_any(30))
    done, _ = await asyncio.wait({ended, reached}, return_when=asyncio.FIRST_COMPLETED)
    if reached in done:
        leg: Call = reached.result()
        await call.hangup()
        ended.cancel()
        raise AssertionError(f"the carrier received the call to {dialled} as {leg.target}")
    reached.cancel()
    await calls_over(rig, since)
    assert "carrier" not in rig.observer.channels.dialled(since), f"the PBX dialled the carrier for {dialled}"


# --- 4. tenant isolation ---------------------------------------------------------------------------

async def test_a_device_reaches_only_its_own_tenants_extensions(rig: Rig) -> None:
    """102 is a user in both tenants; 109 only in acme: borealis's device never rings acme's."""
    since = rig.observer.channels.mark()
    call = await rig.phone.call("102", device=JAMES.device)
    aino = await rig.phone.incoming(AINO.device, 15)
    await call.hangup()
    await aino.wait_hangup(10)
    call = await rig.phone.call("109", device=JAMES.device)
    await call.wait_hangup(20)
    await calls_over(rig, since)
    dialled = rig.observer.channels.dialled(since)
    assert not dialled & {*MIKKO_DEVICES, WORKSHOP.device, "carrier"}, dialled
    for device in (*MIKKO_DEVICES, WORKSHOP.device):
        assert rig.phone._incoming[device].empty(), device


async def test_another_tenants_mailbox_needs_its_pin(rig: Rig) -> None:
    """From a device whose user has no mailbox, James's number and a wrong PIN: never his menu."""
    before = snapshot(rig)
    since, mark = rig.observer.channels.mark(), rig.observer.mark()
    call = await rig.phone.call(VOICEMAIL, device=WORKSHOP.device)
    await rig.observer.wait_prompt(WORKSHOP.number, "vm-enter-mailbox", since=mark, timeout=15)
    await call.send_dtmf(JAMES.number[1:] + "#", duration_ms=80, between_ms=80)
    await rig.observer.wait_prompt(WORKSHOP.number, "vm-enter-pin", since=mark, timeout=15)
    await call.send_dtmf(ANNA.pin + "#", duration_ms=80, between_ms=80)  # another user's PIN
    await rig.observer.wait_prompt(WORKSHOP.number, "vm-pin-wrong", since=mark, timeout=15)
    await call.hangup()
    await calls_over(rig, since)
    assert not opened(rig, WORKSHOP.number, mark)
    after = snapshot(rig)
    assert before.boxes == after.boxes
    assert after.users[(JAMES.tenant, JAMES.user)][3].failures == 1  # counted against James


async def test_a_feature_code_acts_on_the_callers_own_user_only(rig: Rig) -> None:
    before = snapshot(rig)
    await rig.dial_code(JAMES, "#43#")
    changed = before.changed_users(snapshot(rig))
    assert changed == {(JAMES.tenant, JAMES.user)}, changed


async def test_star_1_stays_in_the_transferring_tenants_extensions(rig: Rig) -> None:
    """James (borealis) transfers an outside caller to 102: borealis's Aino rings, never acme's Mikko."""
    since = rig.observer.channels.mark()
    call = await rig.phone.call(JAMES.number, caller_number=OUTSIDE)
    leg = await rig.phone.incoming(JAMES.device, 15)
    await leg.answer()
    await call.wait_state("Up", 5)
    await asyncio.sleep(0.5)
    await leg.send_dtmf("*1")
    await asyncio.sleep(2.5)  # Asterisk says "transfer" before it listens for the number
    await leg.send_dtmf("102#")
    aino = await rig.phone.incoming(AINO.device, 15)
    await call.hangup()
    await aino.wait_hangup(10)
    await calls_over(rig, since)
    dialled = rig.observer.channels.dialled(since)
    assert not dialled & {*MIKKO_DEVICES, "carrier"}, dialled


# --- 5. malformed SIP that no well-behaved phone sends ---------------------------------------------

def invite(to: str, headers: str, *, call_id: str | None = "hostile-{n}", tag: str = "h1") -> bytes:
    """A raw INVITE from the carrier's address with `headers` (CRLF-separated, as given) and an SDP
    offer; `call_id=None` leaves the Call-ID out."""
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.14\r\ns=-\r\nc=IN IP4 127.0.0.14\r\nt=0 0\r\n"
           "m=audio 16999 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
    lines = [f"INVITE sip:{to}@127.0.0.12:15060 SIP/2.0",
             "Via: SIP/2.0/UDP 127.0.0.14:{port};branch=z9hG4bK-{n};rport",
             "Max-Forwards: 70",
             f"From: <sip:{OUTSIDE}@127.0.0.14>;tag={tag}",
             f"To: <sip:{to}@127.0.0.12>",
             "CSeq: 1 INVITE",
             "Contact: <sip:hostile@127.0.0.14:{port}>",
             "Content-Type: application/sdp"]
    if call_id is not None:
        lines.append(f"Call-ID: {call_id}")
    head = "\r\n".join(lines) + "\r\n" + headers
    return (head + f"\r\nContent-Length: {len(sdp)}\r\n\r\n" + sdp).encode("utf-8", "surrogateescape")


MALFORMED = {
    "bare CR in Diversion": "Diversion: <sip:+358401110001@x>;reason=no-answer\r;evil=1",
    "folded Diversion": "Diversion: <sip:+358401110001@x>\r\n ;reason=busy",
    "NUL in Diversion": "Diversion: <sip:+3584011\x0010001@x>;reason=busy",
    "unbalanced Diversion": "Diversion: <sip:+358401110001@x;reason=busy",
    "huge Diversion": "Diversion: <sip:" + "9" * 8000 + "@x>;reason=busy",
    "two hundred Diversions": "\r\n".join(["Diversion: <sip:+358401110001@x>;reason=busy"] * 200),
    "injected display name": 'Diversion: "\\"${SHELL},;)" <sip:+358401110001@x>;reason=busy',
    "non-UTF-8 Diversion": "Diversion: <sip:\udcff\udcfe@x>;reason=busy",
}


class RawSip:
    """One UDP socket on the carrier's address: sends what it is given, answers a final response
    with ACK (and an answered call with BYE), and collects what the PBX sent."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.14", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[str] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.12", 15060))

    def finals(self, timeout: float, on_final: Callable[[str, str], None]) -> dict[str, str]:
        """The first final response (status >= 200) of each dialog within `timeout`, by Call-ID;
        `on_final(call_id, response)` as each arrives."""
        import time

        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode("utf-8", "replace")
            self.received.append(text)
            status = text.split(" ", 2)[1] if text.startswith("SIP/2.0 ") else ""
            call_id = header(text, "Call-ID")
            if status.isdigit() and int(status) >= 200 and call_id not in found:
                found[call_id] = text
                on_final(call_id, text)
        return found


def header(message: str, name: str) -> str:
    return next((line.split(":", 1)[1].strip() for line in message.split("\r\n")
                 if line.lower().startswith(name.lower() + ":")), "")


def end_dialog(raw: RawSip, response: str, to: str, n: int) -> None:
    """ACK the final response; BYE an answered call."""
    status = int(response.split(" ", 2)[1])
    to_header, call_id = header(response, "To"), header(response, "Call-ID")
    base = [f"Via: SIP/2.0/UDP 127.0.0.14:{raw.port};branch=z9hG4bK-{n}{'-ack' if status == 200 else ''};rport",
            "Max-Forwards: 70", f"From: {header(response, 'From')}", f"To: {to_header}", f"Call-ID: {call_id}"]
    uri = f"sip:{to}@127.0.0.12:15060"
    raw.send(("\r\n".join([f"ACK {uri} SIP/2.0", *base, "CSeq: 1 ACK", "Content-Length: 0"]) + "\r\n\r\n").encode())
    if status == 200:
        base[0] = f"Via: SIP/2.0/UDP 127.0.0.14:{raw.port};branch=z9hG4bK-{n}-bye;rport"
        raw.send(("\r\n".join([f"BYE {uri} SIP/2.0", *base, "CSeq: 2 BYE", "Content-Length: 0"]) + "\r\n\r\n").encode())


async def test_malformed_sip_neither_crashes_nor_misroutes(rig: Rig) -> None:
    """Raw INVITEs from the carrier's address to the voicemail number, each malformed in its own
    way: each is refused or answered and ended; then the PBX still serves a normal call, no
    mailbox changed, nothing was dialled out, no channel is left."""
    before = snapshot(rig)
    since, mark = rig.observer.channels.mark(), rig.observer.mark()
    raw = RawSip()
    try:
        # All at once, each its own dialog: one 5 s wait covers the messages the PBX drops unanswered.
        for n, name in enumerate(sorted(MALFORMED)):
            headers = MALFORMED[name]
            data = invite(VOICEMAIL, headers, call_id=f"hostile-{n}@127.0.0.14").replace(b"{port}", str(raw.port).encode())
            raw.send(data.replace(b"{n}", str(n).encode()))
        # Refused at once, or answered by the deposit's apology (ended at once); a message it
        # drops: no answer.
        def ended(call_id: str, response: str) -> None:
            end_dialog(raw, response, VOICEMAIL, int(call_id.split("-", 1)[1].split("@", 1)[0]))

        await asyncio.to_thread(raw.finals, 5.0, ended)
    finally:
        raw.close()
    # The PBX is up and still serves a normal call.
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE)
    await rig.observer.wait_prompt(OUTSIDE, "vm-enter-mailbox", since=mark, timeout=15)
    await call.hangup()
    await calls_over(rig, since)
    assert "carrier" not in rig.observer.channels.dialled(since)
    assert not [p for p in rig.observer.prompts(OUTSIDE, mark) if p in ("vm-main-menu", "vm-you-have", "vm-no-messages")]
    # A Diversion that names anna may leave her a message (the call was hung up at the beep).
    check_unchanged_but(before, snapshot(rig), {(ANNA.tenant, ANNA.box)}, "malformed SIP")


# --- 6. what a device puts in its Request-URI ------------------------------------------------------

# SIP allows ',' (and '&') in a URI's user part: substituted into a Dial() string, a ',' ends the
# target and starts Dial()'s own arguments (timeout, options such as G() that send the call to any
# context). Dialled by a device, the number must reach Dial() whole or not at all.
INJECTED = ["+1,5,G(vipbx-t-borealis^102^1)", "+358451234567,5,G(vipbx-t-borealis^102^1)"]


@pytest.mark.parametrize("dialled", INJECTED)
async def test_a_dialled_number_cannot_inject_dial_arguments(rig: Rig, dialled: str) -> None:
    log = rig.pbx.instance.log_path
    seen = len(log.read_text(encoding="utf-8", errors="replace").splitlines())
    since = rig.observer.channels.mark()
    call = await rig.phone.call(dialled, device=ANNA.device)
    with suppress(TimeoutError):
        await call.wait_hangup(5)
    await call.hangup()
    await rig.phone.hangup_all()
    await calls_over(rig, since)
    dialled_endpoints = rig.observer.channels.dialled(since)
    assert dialled_endpoints <= {"carrier"}, dialled_endpoints
    for device in (JAMES.device, AINO.device):
        assert rig.phone._incoming[device].empty(), device
    new = log.read_text(encoding="utf-8", errors="replace").splitlines()[seen:]
    split = [line for line in new if "Unable to create PJSIP channel" in line]
    assert not split, f"the Dial() string was split at the ',': {split}"
