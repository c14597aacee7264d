"""The routing decision (pure) and the FastAGI server over a real TCP socket, with hand-written AGI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from people import user as _user

from agi import server as server_module
from agi.routing import MAX_FORWARD_HOPS, ROUTE_FIELDS, CallFacts, RouteDecision, decide
from agi.server import AgiApplication, quote, start_agi_server
from base.model import (
    Activity,
    Config,
    Platform,
    Tenant,
    TenantNumber,
    User,
)
from base.outbound import OutboundPolicy
from callstate import CallStateService, Presence, Routing, StorageError

ANNA, MIKKO, NORA = "+358401111111", "+358401111112", "+358401111113"
ANNA_MAIN = "+358911111111"  # a tenant number that rings anna
OUTSIDE = "+358501234567"



def user(uid: str, number: str, ext: str, no_voicemail: bool = False) -> User:
    return _user(uid, number, ext, no_voicemail=no_voicemail, pin="1234")


CONFIG = Config(
    platform=Platform(no_answer_seconds=25),
    tenants=(
        Tenant(
            id="acme",
            name="Acme Oy",
            domain="acme.example",
            numbers=(TenantNumber(ANNA_MAIN, "anna"),),
            users=(user("anna", ANNA, "101"), user("mikko", MIKKO, "102"),
                   user("nora", NORA, "103", no_voicemail=True)),
        ),
    ),
)
VM = Routing(busy="voicemail", no_answer="voicemail", unreachable="voicemail", no_answer_seconds=25)


# ---------------------------------------------------------------------- the decision


def test_known_user_rings_with_the_defaults() -> None:
    decision = decide(CONFIG, "acme", "anna")
    assert decision == RouteDecision("ring", 25, on_busy="voicemail", on_no_answer="voicemail",
                                     on_unavailable="voicemail", from_number=ANNA, chain=("acme:anna",))
    assert decision.variables() == {
        "VIPBX_ACTION": "ring", "VIPBX_TIMEOUT": "25", "VIPBX_TARGET": "", "VIPBX_ON_BUSY": "voicemail",
        "VIPBX_ON_NOANSWER": "voicemail", "VIPBX_ON_UNAVAIL": "voicemail", "VIPBX_FROM": ANNA,
        "VIPBX_CHAIN": "acme:anna", "VIPBX_RECORD": "",
    }
    # Stored defaults give the same answer as no stored state.
    assert decide(CONFIG, "acme", "anna", VM) == decision


def test_no_voicemail_user_defaults_go_nowhere() -> None:
    decision = decide(CONFIG, "acme", "nora")
    assert (decision.action, decision.on_busy, decision.on_no_answer, decision.on_unavailable) == (
        "ring", "none", "none", "none")


@pytest.mark.parametrize(("tenant", "uid"), [("acme", "nobody"), ("nope", "anna"), ("", "")])
def test_unknown_tenant_or_user_still_rings(tenant: str, uid: str) -> None:
    decision = decide(CONFIG, tenant, uid, Routing(immediate=OUTSIDE), CallFacts("INUSE"))
    assert (decision.action, decision.timeout, decision.known, decision.target) == ("ring", 25, False, "")


def test_immediate_forward() -> None:
    decision = decide(CONFIG, "acme", "anna", Routing(immediate=OUTSIDE, busy="voicemail"))
    assert (decision.action, decision.target, decision.loop) == ("forward", OUTSIDE, False)
    variables = decision.variables()
    assert (variables["VIPBX_ACTION"], variables["VIPBX_TARGET"], variables["VIPBX_FROM"]) == (
        "forward", OUTSIDE, ANNA)


def test_stored_forwards_the_rules_now_refuse_are_not_followed() -> None:
    # Stored while the number was allowed; the tenant has since denied that range.
    tightened = replace(CONFIG, tenants=(replace(CONFIG.tenants[0], outbound=OutboundPolicy(
        allow=("+358",), deny=("+35850",))),))
    stored = Routing(immediate=OUTSIDE, busy=OUTSIDE, no_answer="voicemail", unreachable="voicemail")
    decision = decide(tightened, "acme", "anna", stored)
    assert (decision.action, decision.target) == ("ring", "")
    assert decision.on_busy == "voicemail"  # the default, not the refused number
    assert decide(CONFIG, "acme", "anna", stored).action == "forward"  # allowed before


def test_immediate_forward_wins_over_busy() -> None:
    routing = Routing(immediate=MIKKO, call_waiting=False)
    assert decide(CONFIG, "acme", "anna", routing, CallFacts("INUSE")).action == "forward"


def test_immediate_to_voicemail() -> None:
    decision = decide(CONFIG, "acme", "anna", Routing(immediate="voicemail", busy="voicemail"))
    assert (decision.action, decision.target) == ("voicemail", "")


@pytest.mark.parametrize("state", ["INUSE", "BUSY", "RINGINUSE", "ONHOLD", "HOLDINUSE", "inuse"])
def test_in_call_without_call_waiting_is_busy_now(state: str) -> None:
    routing = Routing(busy="voicemail", call_waiting=False)
    decision = decide(CONFIG, "acme", "anna", routing, CallFacts(state))
    assert (decision.action, decision.on_busy) == ("busy", "voicemail")
    assert decision.variables()["VIPBX_ACTION"] == "busy"


@pytest.mark.parametrize("state", ["INUSE", "RINGINUSE"])
def test_in_call_with_call_waiting_rings(state: str) -> None:
    assert decide(CONFIG, "acme", "anna", VM, CallFacts(state)).action == "ring"


@pytest.mark.parametrize("state", ["", "NOT_INUSE", "UNAVAILABLE", "RINGING", "UNKNOWN"])
def test_not_in_call_rings_even_without_call_waiting(state: str) -> None:
    routing = Routing(busy="voicemail", call_waiting=False)
    assert decide(CONFIG, "acme", "anna", routing, CallFacts(state)).action == "ring"


def test_conditional_forwards_in_variables() -> None:
    routing = Routing(busy=MIKKO, no_answer="voicemail", unreachable=OUTSIDE, no_answer_seconds=12)
    variables = decide(CONFIG, "acme", "anna", routing).variables()
    assert {k: variables[k] for k in ("VIPBX_ACTION", "VIPBX_TIMEOUT", "VIPBX_TARGET", "VIPBX_ON_BUSY",
                                      "VIPBX_ON_NOANSWER", "VIPBX_ON_UNAVAIL")} == {
        "VIPBX_ACTION": "ring", "VIPBX_TIMEOUT": "12", "VIPBX_TARGET": "", "VIPBX_ON_BUSY": MIKKO,
        "VIPBX_ON_NOANSWER": "voicemail", "VIPBX_ON_UNAVAIL": OUTSIDE}


def test_a_to_b_to_a_is_not_followed() -> None:
    # anna forwards to mikko, mikko back to anna (set before the set-time check, or via a tenant number).
    first = decide(CONFIG, "acme", "anna", Routing(immediate=MIKKO))
    assert (first.action, first.target, first.loop, first.chain) == ("forward", MIKKO, False, ("acme:anna",))
    facts = CallFacts.parse("NOT_INUSE", first.variables()["VIPBX_CHAIN"], "1")
    for back in (ANNA, ANNA_MAIN):
        mikko = Routing(immediate=back, busy=back, no_answer=OUTSIDE, unreachable=back)
        second = decide(CONFIG, "acme", "mikko", mikko, facts)
        assert (second.action, second.target, second.loop) == ("ring", "", True)
        # Forwards back to anna fall back to mikko's defaults; others are followed.
        assert (second.on_busy, second.on_no_answer, second.on_unavailable) == ("voicemail", OUTSIDE, "voicemail")
        assert second.variables()["VIPBX_CHAIN"] == "acme:anna/acme:mikko"


def test_a_loop_falls_back_to_no_voicemail_defaults() -> None:
    facts = CallFacts(chain=("acme:anna",))
    decision = decide(CONFIG, "acme", "nora", Routing(immediate=ANNA, busy=ANNA), facts)
    assert (decision.action, decision.loop, decision.on_busy, decision.on_no_answer) == (
        "ring", True, "none", "none")


def test_a_forward_to_someone_not_in_the_chain_is_followed() -> None:
    facts = CallFacts(chain=("acme:anna",))
    decision = decide(CONFIG, "acme", "mikko", Routing(immediate=NORA), facts)
    assert (decision.action, decision.target, decision.loop) == ("forward", NORA, False)


def chain_of(n: int) -> tuple[str, ...]:
    return tuple(f"other{i}:user{i}" for i in range(n))


def test_hop_limit_by_chain_length() -> None:
    routing = Routing(immediate=OUTSIDE, busy=OUTSIDE, no_answer="voicemail")
    below = decide(CONFIG, "acme", "anna", routing, CallFacts(chain=chain_of(MAX_FORWARD_HOPS - 1)))
    assert (below.action, below.target, below.loop) == ("forward", OUTSIDE, False)
    at = decide(CONFIG, "acme", "anna", routing, CallFacts(chain=chain_of(MAX_FORWARD_HOPS)))
    assert (at.action, at.target, at.loop) == ("ring", "", True)
    assert (at.on_busy, at.on_no_answer) == ("voicemail", "voicemail")  # the defaults, voicemail kept
    assert len(at.chain) == MAX_FORWARD_HOPS + 1


def test_hop_limit_by_redirect_count() -> None:
    routing = Routing(immediate=OUTSIDE)
    below = decide(CONFIG, "acme", "anna", routing, CallFacts(redirects=MAX_FORWARD_HOPS - 1))
    assert (below.action, below.loop) == ("forward", False)
    at = decide(CONFIG, "acme", "anna", routing, CallFacts.parse("", "", str(MAX_FORWARD_HOPS)))
    assert (at.action, at.target, at.loop) == ("ring", "", True)


@pytest.mark.parametrize(("args", "facts"), [
    (("", "", ""), CallFacts("", (), 0)),
    ((" INUSE ", "acme:anna/acme:mikko", "2"), CallFacts("INUSE", ("acme:anna", "acme:mikko"), 2)),
    (("NOT_INUSE", "//acme:anna//", "x"), CallFacts("NOT_INUSE", ("acme:anna",), 0)),
    (("", "/", "-3"), CallFacts("", (), 0)),
    (("", "", "1.5"), CallFacts("", (), 0)),
    (("garbage", "", "99999999999999999999"), CallFacts("garbage", (), 99999999999999999999)),
])
def test_call_facts_parse(args: tuple[str, str, str], facts: CallFacts) -> None:
    assert CallFacts.parse(*args) == facts


def test_junk_facts_still_decide() -> None:
    facts = CallFacts.parse("\x00", "??", "many")
    assert not facts.in_call
    assert decide(CONFIG, "acme", "anna", Routing(immediate=OUTSIDE), facts).action == "forward"


# ---------------------------------------------------------------------- activities (presence)

# acme's own list beside the defaults: a substitute outside, a colleague (mikko), anna's own main
# number, plain ring and plain voicemail.
ACTIVITIES = (
    Activity("available", "1"),
    Activity("training", "2", "away", OUTSIDE),
    Activity("cover", "3", "dnd", MIKKO),
    Activity("main", "4", "dnd", ANNA_MAIN),
    Activity("desk", "5", "away", "ring"),
    Activity("away", "6", "xa", "voicemail"),
)
OWN = replace(CONFIG, tenants=(replace(CONFIG.tenants[0], activities=ACTIVITIES),))


def act(config: Config, uid: str, activity: str, routing: Routing | None = None,
        facts: CallFacts = CallFacts()) -> RouteDecision:
    return decide(config, "acme", uid, routing, facts, Presence(activity))


@pytest.mark.parametrize("activity", ["meeting", "off-work", "vacation", "sick"])
def test_voicemail_activities_send_calls_to_voicemail(activity: str) -> None:
    decision = act(CONFIG, "anna", activity)
    normal = decide(CONFIG, "acme", "anna")
    assert (decision.action, decision.target, decision.loop) == ("voicemail", "", False)
    assert decision == replace(normal, action="voicemail")  # the rest as without the activity
    assert act(OWN, "anna", "away").action == "voicemail"


@pytest.mark.parametrize(("config", "activity"), [(CONFIG, "busy"), (CONFIG, "lunch"), (OWN, "desk")])
def test_ring_activities_ring(config: Config, activity: str) -> None:
    assert act(config, "anna", activity) == decide(config, "acme", "anna")
    assert act(config, "anna", activity, VM, CallFacts("INUSE")).action == "ring"  # call waiting on
    busy_now = act(config, "anna", activity, replace(VM, call_waiting=False), CallFacts("INUSE"))
    assert busy_now.action == "busy"


@pytest.mark.parametrize("presence", [None, Presence(), Presence("available", None, "note"),
                                      Presence("holiday")])  # an activity no longer in the list
def test_available_and_unknown_activities_route_normally(presence: Presence | None) -> None:
    for uid in ("anna", "nora"):
        assert decide(CONFIG, "acme", uid, VM, CallFacts(), presence) == decide(CONFIG, "acme", uid, VM)
    routing = replace(VM, call_waiting=False)
    assert decide(CONFIG, "acme", "anna", routing, CallFacts("INUSE"), presence).action == "busy"


def test_substitute_number_forwards() -> None:
    decision = act(OWN, "anna", "training")
    assert (decision.action, decision.target, decision.loop) == ("forward", OUTSIDE, False)
    variables = decision.variables()
    assert (variables["VIPBX_ACTION"], variables["VIPBX_TARGET"], variables["VIPBX_FROM"],
            variables["VIPBX_CHAIN"]) == ("forward", OUTSIDE, ANNA, "acme:anna")
    # To a colleague: followed, and the chain lets mikko's router see where the call has been.
    cover = act(OWN, "anna", "cover")
    assert (cover.action, cover.target, cover.loop) == ("forward", MIKKO, False)
    # A "No voicemail" user's substitute works the same.
    assert (act(OWN, "nora", "training").action, act(OWN, "nora", "training").target) == ("forward", OUTSIDE)


def test_substitute_back_to_the_user_rings_instead() -> None:
    # anna's own main number: the call would come straight back.
    decision = act(OWN, "anna", "main")
    assert (decision.action, decision.target, decision.loop) == ("ring", "", True)
    assert decision.on_busy == "voicemail"
    # mikko's cover is anna; a call anna forwarded to mikko is not sent back to her.
    back = replace(OWN, tenants=(replace(OWN.tenants[0], activities=(
        *ACTIVITIES, Activity("cover-anna", "7", "dnd", ANNA))),))
    facts = CallFacts.parse("NOT_INUSE", act(back, "anna", "cover").variables()["VIPBX_CHAIN"], "1")
    second = act(back, "mikko", "cover-anna", facts=facts)
    assert (second.action, second.target, second.loop, second.chain) == (
        "ring", "", True, ("acme:anna", "acme:mikko"))
    # Not in the chain: followed.
    assert act(back, "mikko", "cover-anna").action == "forward"


def test_substitute_respects_the_hop_limit() -> None:
    below = act(OWN, "anna", "training", facts=CallFacts(chain=chain_of(MAX_FORWARD_HOPS - 1)))
    assert (below.action, below.loop) == ("forward", False)
    at = act(OWN, "anna", "training", facts=CallFacts(chain=chain_of(MAX_FORWARD_HOPS)))
    assert (at.action, at.target, at.loop) == ("ring", "", True)
    redirected = act(OWN, "anna", "training", facts=CallFacts(redirects=MAX_FORWARD_HOPS))
    assert (redirected.action, redirected.loop) == ("ring", True)


def test_no_voicemail_users_voicemail_activity_rings() -> None:
    for activity in ("vacation", "meeting"):
        decision = act(CONFIG, "nora", activity)
        assert decision == decide(CONFIG, "acme", "nora")
        assert (decision.action, decision.loop) == ("ring", False)
    assert act(OWN, "nora", "away").action == "ring"
    # As when Available: in a call with call waiting off, busy now (with nowhere to go).
    busy = act(CONFIG, "nora", "vacation", Routing(call_waiting=False), CallFacts("INUSE"))
    assert (busy.action, busy.on_busy) == ("busy", "none")


def test_immediate_forward_beats_the_activity() -> None:
    for config, activity in ((CONFIG, "vacation"), (OWN, "training"), (OWN, "main")):
        decision = act(config, "anna", activity, Routing(immediate=NORA, busy="voicemail"))
        assert (decision.action, decision.target, decision.loop) == ("forward", NORA, False)
        to_vm = act(config, "anna", activity, Routing(immediate="voicemail"))
        assert (to_vm.action, to_vm.target) == ("voicemail", "")


def test_an_immediate_forward_not_followed_leaves_the_activity() -> None:
    # anna's immediate forward to mikko would loop (the call came from mikko): her activity decides.
    facts = CallFacts(chain=("acme:mikko",))
    decision = act(CONFIG, "anna", "vacation", Routing(immediate=MIKKO, busy="voicemail"), facts)
    assert (decision.action, decision.loop) == ("voicemail", True)
    substitute = act(OWN, "anna", "training", Routing(immediate=MIKKO), facts)
    assert (substitute.action, substitute.target, substitute.loop) == ("forward", OUTSIDE, True)


@pytest.mark.parametrize("state", ["INUSE", "BUSY", "ONHOLD"])
def test_activity_beats_busy_now(state: str) -> None:
    routing = Routing(busy="voicemail", no_answer="voicemail", unreachable="voicemail", call_waiting=False)
    assert act(CONFIG, "anna", "vacation", routing, CallFacts(state)).action == "voicemail"
    forwarded = act(OWN, "anna", "training", routing, CallFacts(state))
    assert (forwarded.action, forwarded.target) == ("forward", OUTSIDE)
    assert act(CONFIG, "anna", "busy", routing, CallFacts(state)).action == "busy"  # a ring activity


def test_quote() -> None:
    assert quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


@pytest.fixture
async def agi() -> AsyncIterator[tuple[AgiApplication, int]]:
    server, app = await start_agi_server(CONFIG, "127.0.0.1", 0, key=KEY)
    yield app, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


KEY = "agi-key-of-the-tests"


def agi_env(script: str, *args: str, key: str | None = KEY) -> bytes:
    """What Asterisk sends for `AGI(agi://127.0.0.1/SCRIPT,KEY,ARGS...)`; key None: no key."""
    args = args if key is None else (key, *args)
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1/{script}",
        "agi_channel: PJSIP/carrier-00000001",
        "agi_language: fi",
        "agi_uniqueid: 1700000000.1",
        "agi_callerid: +358409999999",
        "agi_context: vipbx-call-user",
        "agi_extension: s",
        "agi_priority: 2",
    ]
    lines += [f"agi_arg_{n}: {arg}" for n, arg in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


async def converse(port: int, env: bytes, reply: bytes = b"200 result=1\n") -> list[str]:
    """Play Asterisk: send the environment, answer each command with `reply`, collect commands."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env)
    await writer.drain()
    commands = []
    while line := await asyncio.wait_for(reader.readline(), 5):
        commands.append(line.decode().rstrip("\n"))
        writer.write(reply)
        await writer.drain()
    writer.close()
    return commands


def set_commands(variables: dict[str, str]) -> list[str]:
    """The one command a route answer is: every variable packed into VIPBX_ROUTE."""
    packed = ",".join(variables[name] for name in ROUTE_FIELDS)
    return [f"SET VARIABLE VIPBX_ROUTE {quote(packed)}"]


def as_vars(commands: list[str]) -> dict[str, str]:
    """The variables the dialplan ends up with (VIPBX_ROUTE split as its ARRAY() does)."""
    out = {}
    for command in commands:
        verb, name, value = command.split(" ", 3)[1:] if command.startswith("SET ") else ("", "", "")
        assert verb == "VARIABLE" and value.startswith('"') and value.endswith('"'), command
        if name == "VIPBX_ROUTE":
            parts = value[1:-1].split(",")
            assert len(parts) == len(ROUTE_FIELDS), value
            out.update(zip(ROUTE_FIELDS, parts))
        else:
            out[name] = value[1:-1]
    return out


async def test_route_sets_every_variable(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    commands = await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0"))
    assert commands == set_commands(decide(CONFIG, "acme", "anna").variables())
    assert len(commands) == 1  # one round trip for the whole answer
    assert as_vars(commands) == decide(CONFIG, "acme", "anna").variables()
    assert (as_vars(commands)["VIPBX_ACTION"], as_vars(commands)["VIPBX_TIMEOUT"]) == ("ring", "25")
    # The older two-argument form still gets an answer.
    assert await converse(port, agi_env("route", "acme", "anna")) == commands


async def test_route_unknown_user_is_left_to_the_dialplan(
    agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture
) -> None:
    # No variables: the dialplan's own fallback then rings, and sends busy / unanswered calls to
    # voicemail when the user has one, as it does without the router.
    _, port = agi
    assert await converse(port, agi_env("route", "acme", "ghost", "NOT_INUSE", "", "0")) == []
    assert "unknown tenant/user 'acme'/'ghost'" in caplog.text


class FailingState:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def call_state(self, tenant_id: str, user_id: str) -> tuple[Routing, Presence]:
        self.asked.append((tenant_id, user_id))
        raise StorageError("the call-state database is locked")


@pytest.fixture
def state(tmp_path: Path) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG) as service:
        yield service


@pytest.fixture
async def agi_state(state: CallStateService) -> AsyncIterator[tuple[CallStateService, int]]:
    server, app = await start_agi_server(CONFIG, "127.0.0.1", 0, state, key=KEY)
    assert app.state is state
    yield state, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_route_reads_the_stored_forward(agi_state: tuple[CallStateService, int]) -> None:
    state, port = agi_state
    state.set_forward("acme", "anna", "immediate", "102", actor="op", source="cli")
    got = as_vars(await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0")))
    assert (got["VIPBX_ACTION"], got["VIPBX_TARGET"], got["VIPBX_FROM"], got["VIPBX_CHAIN"]) == (
        "forward", MIKKO, ANNA, "acme:anna")


async def test_route_reads_call_waiting_delay_and_conditional_forwards(
        agi_state: tuple[CallStateService, int]) -> None:
    state, port = agi_state
    state.set_forward("acme", "mikko", "no_answer", "0501234567", actor="op", source="cli", no_answer_seconds=9)
    state.set_forward("acme", "mikko", "unreachable", "none", actor="op", source="cli")
    state.set_forward("acme", "mikko", "busy", "101", actor="op", source="cli")  # back to anna
    state.set_call_waiting("acme", "mikko", False, actor="op", source="cli")

    idle = as_vars(await converse(port, agi_env("route", "acme", "mikko", "NOT_INUSE", "", "0")))
    assert idle == {"VIPBX_ACTION": "ring", "VIPBX_TIMEOUT": "9", "VIPBX_TARGET": "", "VIPBX_ON_BUSY": ANNA,
                    "VIPBX_ON_NOANSWER": OUTSIDE, "VIPBX_ON_UNAVAIL": "none", "VIPBX_FROM": MIKKO,
                    "VIPBX_CHAIN": "acme:mikko", "VIPBX_RECORD": ""}
    # In a call, call waiting off, and the call came forwarded from anna: busy now, and the busy
    # forward back to anna is replaced by mikko's default (voicemail).
    busy = as_vars(await converse(port, agi_env("route", "acme", "mikko", "INUSE", "acme:anna", "1")))
    assert (busy["VIPBX_ACTION"], busy["VIPBX_ON_BUSY"], busy["VIPBX_CHAIN"]) == (
        "busy", "voicemail", "acme:anna/acme:mikko")
    state.set_call_waiting("acme", "mikko", True, actor="op", source="cli")
    waiting = as_vars(await converse(port, agi_env("route", "acme", "mikko", "INUSE", "", "0")))
    assert waiting["VIPBX_ACTION"] == "ring"


async def test_route_reads_the_stored_activity(agi_state: tuple[CallStateService, int]) -> None:
    state, port = agi_state
    until = datetime.now(UTC) + timedelta(days=3)
    state.set_presence("acme", "anna", "vacation", until=until, actor="op", source="cli")
    got = as_vars(await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0")))
    assert (got["VIPBX_ACTION"], got["VIPBX_TARGET"], got["VIPBX_ON_BUSY"], got["VIPBX_FROM"]) == (
        "voicemail", "", "voicemail", ANNA)
    # Her own immediate forward still comes first.
    state.set_forward("acme", "anna", "immediate", "102", actor="op", source="cli")
    first = as_vars(await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0")))
    assert (first["VIPBX_ACTION"], first["VIPBX_TARGET"]) == ("forward", MIKKO)
    state.set_forward("acme", "anna", "immediate", "none", actor="op", source="cli")
    state.set_presence("acme", "anna", "available", actor="op", source="cli")
    back = as_vars(await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0")))
    assert back["VIPBX_ACTION"] == "ring"


async def test_route_unknown_user_does_not_ask_the_state(caplog: pytest.LogCaptureFixture) -> None:
    failing = FailingState()
    server, _ = await start_agi_server(CONFIG, "127.0.0.1", 0, failing, key=KEY)
    async with server:
        port = server.sockets[0].getsockname()[1]
        assert await converse(port, agi_env("route", "acme", "ghost", "", "", "")) == []
    assert failing.asked == []


async def test_route_fails_when_the_state_cannot_be_read(caplog: pytest.LogCaptureFixture) -> None:
    # No variable is set: the dialplan then takes its fallback (ring; voicemail where the user
    # has one), the same as when the router is down. The server goes on serving.
    failing = FailingState()
    server, _ = await start_agi_server(CONFIG, "127.0.0.1", 0, failing, key=KEY)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="agi.server"):
            assert await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0")) == []
        assert failing.asked == [("acme", "anna")]
        assert "request from" in caplog.text and "locked" in caplog.text
        assert await converse(port, agi_env("ping")) == ['SET VARIABLE VIPBX_PONG "1"']


async def test_config_can_be_replaced(agi: tuple[AgiApplication, int]) -> None:
    app, port = agi
    app.config = Config(platform=Platform(no_answer_seconds=7), tenants=CONFIG.tenants)
    commands = await converse(port, agi_env("route", "acme", "anna"))
    assert as_vars(commands)["VIPBX_TIMEOUT"] == "7"


async def test_ping(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    assert await converse(port, agi_env("ping")) == ['SET VARIABLE VIPBX_PONG "1"']


async def test_script_with_query_string_routes(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    assert await converse(port, agi_env("ping?x=1")) == ['SET VARIABLE VIPBX_PONG "1"']


async def test_unknown_script_closes(agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture) -> None:
    _, port = agi
    assert await converse(port, agi_env("nosuch")) == []
    assert "no script 'nosuch'" in caplog.text


async def test_refused_command_stops_the_script(
    agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, port = agi
    commands = await converse(port, agi_env("route", "acme", "anna"), reply=b"HANGUP\n")
    assert commands == set_commands(decide(CONFIG, "acme", "anna").variables())  # then it stops
    assert "request from" in caplog.text


async def test_peer_closing_early_does_not_freeze_the_loop(agi: tuple[AgiApplication, int]) -> None:
    # panoramisk 1.4's own reader spins forever on this; ours must give up and keep serving.
    _, port = agi
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"agi_network: yes\n")
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(converse(port, agi_env("ping")), 2) == ['SET VARIABLE VIPBX_PONG "1"']


async def test_silent_peer_times_out(agi: tuple[AgiApplication, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "ENV_TIMEOUT", 0.1)
    _, port = agi
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"agi_network: yes\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # server hung up on us
    writer.close()


# ---------------------------------------------------------------------- the outbound check


async def test_outbound_check_answers_allow_or_refuse_and_logs_one_line_per_refusal(
    agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture
) -> None:
    app, port = agi
    app.config = replace(CONFIG, tenants=(replace(CONFIG.tenants[0], outbound=OutboundPolicy(
        allow=("+358",), max_calls=1, max_calls_per_minute=5)),))
    with caplog.at_level(logging.INFO, logger="agi.server"):
        allowed = await converse(port, agi_env("outbound", "acme", "anna", OUTSIDE, "1"))
        barred = await converse(port, agi_env("outbound", "acme", "anna", "+358600123456", "1"))
        busy = await converse(port, agi_env("outbound", "acme", "anna", OUTSIDE, "2"))
    assert allowed == ['SET VARIABLE VIPBX_OUTBOUND "allow"']
    assert barred == ['SET VARIABLE VIPBX_OUTBOUND "refuse,barred,21"']
    assert busy == ['SET VARIABLE VIPBX_OUTBOUND "refuse,limit,34"']
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refusals) == 2
    for line, number in zip(refusals, ("+358600123456", OUTSIDE), strict=True):
        assert "tenant acme" in line and "user anna" in line and "PJSIP/carrier-00000001" in line
        assert number in line
    assert "+35860" in refusals[0]
    assert "limit of 1 simultaneous calls" in refusals[1]
