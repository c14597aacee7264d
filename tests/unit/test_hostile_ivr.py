"""Hostile input to every IVR, property-based: random keys at random moments (while a prompt plays,
after it, during a recording, interleaved with timeouts and hang-ups) into the voicemail access IVR
(login, main menu, listening, greetings), the deposit (greeting, press 1, recording), the activity
IVR and the feature codes, over the real plugins on the fake ARI, a real spool and a real
call-state database with two tenants.

For every call: no handler fails (no ERROR logged, no call handed back to the dialplan by
accident), the call ends and leaves no task behind, and nothing changes that the keys did not ask
for (each mailbox and each user's call state compared before and after against a model of what
the keys may do).

The number of calls per test is `VIPBX_HOSTILE_EXAMPLES` (default 40; e.g. 3000 for a long run:
`VIPBX_HOSTILE_EXAMPLES=3000 pytest tests/unit/test_hostile_ivr.py`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from callstate_support import FakeClock
from hostile import ErrorLog, Moment, RandomCaller, Trace, moments, write_wav
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from people import PIN, user
from pluginharness import running

from ari_app.features import plugin as features_plugin
from ari_app.plugin_api import Plugin, PluginDeps
from ari_app.presence import ivr as activity_module
from ari_app.presence import plugin as presence_plugin
from ari_app.testing import Snapshot
from ari_app.voicemail import access
from ari_app.voicemail import plugin as voicemail_plugin
from base.model import Config, Platform, Tenant
from callstate import CallStateService, TargetRefused, check_target
from vmstore import Envelope

EXAMPLES = int(os.environ.get("VIPBX_HOSTILE_EXAMPLES", "40"))
ANNA, MIKKO, BERT = "+358401110001", "+358401110002", "+358401120001"
OUTSIDE = "+358501234567"
PRESS1 = "+358955512345"
BERT_PIN = "615248"
CONFIG = Config(
    platform=Platform(default_language="sv"),
    tenants=(
        Tenant(id="acme", name="Acme", domain="acme.example",
               users=(user("anna", ANNA, "101", "fi"), user("mikko", MIKKO, "102", "en"),
                      user("nora", "+358401110003", "103", "fi", no_voicemail=True))),
        # The same extension as anna's: an extension never names a user across tenants.
        Tenant(id="beta", name="Beta", domain="beta.example",
               users=(user("bert", BERT, "101", "sv", pin=BERT_PIN),)),
    ),
)
ANNA_BOX = ("acme", CONFIG.find_user("acme", "anna").user.mailbox)  # type: ignore[union-attr]
KEY_TIMEOUT = 0.03  # an unanswered prompt, quickly


def all_plugins(deps: PluginDeps) -> Plugin:
    handlers: dict[str, Any] = {}
    for module in (voicemail_plugin, presence_plugin, features_plugin):
        handlers.update(module.load(deps).handlers)
    return Plugin(handlers=handlers)


class World:
    """One harness for a whole test (hypothesis runs its examples on it): a fresh mailbox set
    and call state before each call."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop = loop
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.clock = FakeClock()
        self.stack = AsyncExitStack()
        self.errors = ErrorLog()
        self.state_db = 0
        self.state: CallStateService | None = None
        self.h: RandomCaller | None = None

    def start(self) -> None:
        self.monkeypatch.setattr(access, "KEY_TIMEOUT", KEY_TIMEOUT)
        self.monkeypatch.setattr(activity_module, "KEY_TIMEOUT", KEY_TIMEOUT)
        self.state = CallStateService(self.tmp / "state.sqlite3", CONFIG, clock=self.clock)
        plugin = SimpleNamespace(load=all_plugins)
        self.h = self.loop.run_until_complete(self.stack.enter_async_context(running(
            lambda fake, client: RandomCaller(fake, client, self.state, self.tmp, plugin, CONFIG),
            self.monkeypatch)))

    def stop(self) -> None:
        self.loop.run_until_complete(self.stack.aclose())
        assert self.state is not None
        self.state.close()

    def reset(self, **anna_settings: Any) -> Snapshot:
        """The same world before each call: messages, a greeting, no lockout, given settings."""
        h, state = self.harness, self.service
        shutil.rmtree(self.tmp / "spool", ignore_errors=True)
        for box, ids in ((ANNA_BOX, "ab"), (("acme", CONFIG.find_user("acme", "mikko").user.mailbox), "m"),  # type: ignore[union-attr]
                         (("beta", CONFIG.find_user("beta", "bert").user.mailbox), "x")):  # type: ignore[union-attr]
            for msg_id in ids:
                self._message(*box, msg_id)
        old = self._message(*ANNA_BOX, "c")
        h.store.mark_old(old)
        greeting = self.tmp / "in" / "greeting.wav"
        write_wav(greeting, 1.5)
        h.store.set_greeting(*ANNA_BOX, greeting)
        for tenant in CONFIG.tenants:
            for u in tenant.users:
                state.reset_pin_lockout(tenant.id, u.id, actor="test", source="test")
        defaults = {"press1_number": None, "always_ask_pin": False, "play_activity": False}
        state.update_voicemail_settings("acme", "anna", actor="test", source="test", **{**defaults, **anna_settings})
        for tenant in CONFIG.tenants:
            for u in tenant.users:
                state.set_presence(tenant.id, u.id, "available", actor="test", source="test")
                state.reset_routing(tenant.id, u.id, actor="test", source="test")
        self.errors.records.clear()
        return self.snapshot()

    def _message(self, tenant: str, box: str, msg_id: str) -> Any:
        envelope = Envelope(caller_number=OUTSIDE, caller_name=None, called_number=ANNA,
                            orig_time=datetime(2024, 3, 5, 9, 30, tzinfo=UTC), duration=1, msg_id=msg_id)
        audio = self.tmp / "in" / f"{msg_id}.wav"
        write_wav(audio, 1)
        return self.harness.store.add(tenant, box, audio, envelope)

    def snapshot(self) -> Snapshot:
        return Snapshot.take(CONFIG, self.harness.store, self.service)

    @property
    def harness(self) -> RandomCaller:
        assert self.h is not None
        return self.h

    @property
    def service(self) -> CallStateService:
        assert self.state is not None
        return self.state

    def call(self, args: list[str], plan: list[Moment], *, number: str,
             variables: dict[str, str] | None = None) -> tuple[str, Trace]:
        with self.errors.attached():
            channel_id, trace = self.loop.run_until_complete(
                self.harness.call(args, plan, number=number, variables=variables))
        assert not self.errors.records, "\n".join(logging.Formatter().format(r) for r in self.errors.records)
        return channel_id, trace


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    loop = asyncio.new_event_loop()
    w = World(loop, tmp_path, monkeypatch)
    try:
        w.start()
        yield w
        w.stop()
    finally:
        loop.close()


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# How a caller reaches the access and activity IVRs: (caller number, channel variables, the plan
# that logs in as anna first, or None when the caller is nobody who can log in).
LOGIN = [Moment(during=ANNA + "#"), Moment(during=PIN + "#")]


@dataclass(frozen=True)
class Way:
    number: str
    variables: dict[str, str]
    login: list[Moment] | None  # the moments that log in as anna; None: nobody is logged in

    def plan(self, rest: list[Moment]) -> list[Moment]:
        return [*(self.login or []), *rest]


WAYS = {
    "own number": Way(ANNA, {}, []),
    "own device": Way("101", {"VIPBX_TENANT": "acme", "VIPBX_USER": "anna"}, []),
    "outside, with PIN": Way(OUTSIDE, {}, LOGIN),
    "outside, random": Way(OUTSIDE, {}, None),
    "beta device, random": Way("101", {"VIPBX_TENANT": "beta", "VIPBX_USER": "nobody"}, None),
}
ways = st.sampled_from(sorted(WAYS))


def only_changed(before: Snapshot, after: Snapshot, allowed: set[tuple[str, str]], trace: Trace) -> None:
    changed = before.changed_users(after)
    assert changed <= allowed, f"{changed - allowed} changed: {trace.steps}"


def anna_only() -> set[tuple[str, str]]:
    return {ANNA_BOX, ("acme", "anna")}


# ---------------------------------------------------------------------- voicemail access


def check_access(before: Snapshot, after: Snapshot, trace: Trace, logged_in: bool, skip: int) -> None:
    """What the keys after the login (`skip` moments) may have done to anna's mailbox."""
    if not logged_in or not trace.heard("vm-main-menu"):
        # Nobody's mailbox opened: nothing but PIN counts may change.
        assert not any(trace.heard(n) for n in ("vm-message-menu", "vm-greeting-saved")), trace.steps
        assert before.boxes == after.boxes and before.greetings == after.greetings, trace.steps
        changed = {k for k in before.users if before.users[k][:3] != after.users[k][:3]}
        assert not changed, (changed, trace.steps)
        return
    only_changed(before, after, anna_only(), trace)
    keys = trace.keys_from(skip)
    was, now = before.boxes[ANNA_BOX], after.boxes[ANNA_BOX]
    assert set(now) <= set(was), "a message appeared"
    deleted = set(was) - set(now)
    assert len(deleted) <= keys.count("7"), (deleted, trace.steps)
    if "1" not in keys:  # new messages: only from the main menu's 1
        assert {m for m, f in was.items() if f == "INBOX"} == {m for m, f in now.items() if f == "INBOX"}, trace.steps
    assert all(now[m] == "Old" for m in now if was[m] == "Old"), "an old message became new"
    if before.greetings[ANNA_BOX] != after.greetings[ANNA_BOX]:
        assert ("5" in keys and after.greetings[ANNA_BOX] is not None) or "6" in keys, trace.steps
    assert before.users[("acme", "anna")][:3] == after.users[("acme", "anna")][:3], "settings changed"


@SETTINGS
@given(way=ways, plan=moments())
def _access(world: World, way: str, plan: list[Moment]) -> None:
    w = WAYS[way]
    before = world.reset()
    channel_id, trace = world.call(["access"], w.plan(plan), number=w.number, variables=w.variables)
    assert not world.harness.continued(channel_id), trace.steps
    check_access(before, world.snapshot(), trace, w.login is not None, len(w.login or []))


def test_random_keys_in_the_voicemail_access_ivr(world: World) -> None:
    _access(world)


# ---------------------------------------------------------------------- deposit


DIVERSIONS = st.one_of(st.sampled_from([ANNA, "0401110001", "358401110001", BERT, "", "+", "101"]),
                       st.text(max_size=40))


@SETTINGS
@given(entry=st.sampled_from(["args", "diverted"]), diverted=DIVERSIONS, press1=st.booleans(),
       activity=st.booleans(), plan=moments(6))
def _deposit(world: World, entry: str, diverted: str, press1: bool, activity: bool, plan: list[Moment]) -> None:
    before = world.reset(press1_number=PRESS1 if press1 else None, play_activity=activity)
    world.harness.variables = {"REDIRECTING(from-num)": diverted}
    args = ["deposit", "acme", "anna", "busy"] if entry == "args" else ["deposit"]
    channel_id, trace = world.call(args, plan, number=OUTSIDE)
    after = world.snapshot()
    target = CONFIG.find_caller(diverted, "358") if entry == "diverted" else CONFIG.find_user("acme", "anna")
    continued = world.harness.continued(channel_id)
    if continued:
        # Only "1" as the first key of the greeting, and only to the number the user set.
        assert press1 and trace.keys[:1] == "1", trace.steps
        assert continued[0].url.params["extension"] == PRESS1
    if target is None or not target.user.has_voicemail:
        assert before == after, trace.steps
        return
    box = (target.tenant.id, target.user.mailbox)
    only_changed(before, after, {box}, trace)
    was, now = before.boxes[box], after.boxes[box]
    assert set(was) <= set(now) and len(now) - len(was) <= 1, "a message lost or more than one added"
    assert all(now[m] == was[m] for m in was), "a message moved"
    if continued:
        assert now == was, "a message recorded for a caller sent to customer service"


def test_random_keys_in_the_deposit(world: World) -> None:
    _deposit(world)


# ---------------------------------------------------------------------- activity IVR


def check_activity(before: Snapshot, after: Snapshot, trace: Trace, logged_in: bool, skip: int) -> None:
    if not logged_in:
        changed = {k for k in before.users if before.users[k][:3] != after.users[k][:3]}
        assert not changed and before.boxes == after.boxes, trace.steps
        return
    only_changed(before, after, {("acme", "anna")}, trace)
    was, now = before.users[("acme", "anna")], after.users[("acme", "anna")]
    assert (was[0], was[2]) == (now[0], now[2]), "routing or voicemail settings changed"
    if was[1] != now[1]:
        keys = trace.keys_from(skip)
        digit = next(a.digit for a in CONFIG.tenants[0].activities if a.key == now[1].activity)
        assert digit in keys, (now[1], trace.steps)
        if now[1].activity != "available":
            # An end time or '#' after the activity's digit.
            assert len(keys) > keys.index(digit) + 1, trace.steps


@SETTINGS
@given(way=ways, plan=moments())
def _activity(world: World, way: str, plan: list[Moment]) -> None:
    w = WAYS[way]
    before = world.reset()
    channel_id, trace = world.call(["activity"], w.plan(plan), number=w.number, variables=w.variables)
    assert not world.harness.continued(channel_id), trace.steps
    check_activity(before, world.snapshot(), trace, w.login is not None, len(w.login or []))


def test_random_keys_in_the_activity_ivr(world: World) -> None:
    _activity(world)


# ---------------------------------------------------------------------- feature codes

HOSTILE_TEXT = st.one_of(
    st.text(alphabet="0123456789+*#", max_size=20),
    st.sampled_from(["", "+", "102", "101", BERT, MIKKO, "0401120001", "+3587001234", "${SHELL}",
                     "1,2", "1;x", "1)", "\n", "+" + "9" * 200]),
    st.text(max_size=30))
DEVICES = st.sampled_from([{"VIPBX_TENANT": "acme", "VIPBX_USER": "anna"}, {},
                           {"VIPBX_TENANT": "beta", "VIPBX_USER": "anna"}, {"VIPBX_TENANT": "acme"}])


@SETTINGS
@given(code=st.sampled_from(["forward", "callwaiting"]), arg=HOSTILE_TEXT, device=DEVICES, plan=moments(3))
def _codes(world: World, code: str, arg: str, device: dict[str, str], plan: list[Moment]) -> None:
    before = world.reset()
    channel_id, trace = world.call([code, arg], plan, number="101", variables=device)
    after = world.snapshot()
    assert not world.harness.continued(channel_id)
    if device != {"VIPBX_TENANT": "acme", "VIPBX_USER": "anna"}:
        assert before == after, trace.steps  # no user: refused
        return
    only_changed(before, after, {("acme", "anna")}, trace)
    was, now = before.users[("acme", "anna")][0], after.users[("acme", "anna")][0]
    if code == "callwaiting":
        if arg not in ("on", "off"):
            assert was == now
        return
    if was != now and arg:
        tenant = CONFIG.tenants[0]
        # What was set is what the rules allow for what was dialled, nothing else.
        assert now.immediate == check_target(CONFIG, tenant, tenant.users[0], arg), (arg, now)


def test_random_feature_code_arguments(world: World) -> None:
    _codes(world)


@SETTINGS
@given(tenant=st.sampled_from(["acme", "beta", "", "gamma", "acme,beta"]), dialled=HOSTILE_TEXT, plan=moments(2))
def _transfer(world: World, tenant: str, dialled: str, plan: list[Moment]) -> None:
    before = world.reset()
    channel_id, trace = world.call(["transfer", tenant, dialled], plan, number=OUTSIDE)
    assert before == world.snapshot(), trace.steps
    continued = world.harness.continued(channel_id)
    found = next((t for t in CONFIG.tenants if t.id == tenant), None)
    if not continued:
        return
    assert found is not None, (tenant, dialled)
    target = continued[0].url.params["extension"]
    try:
        expected = check_target(CONFIG, found, None, dialled)
    except TargetRefused:
        raise AssertionError(f"refused target {dialled!r} dialled") from None
    assert target == expected
    owner = CONFIG.find_number(target)
    # Another tenant's public number may be allowed; its extensions are never in reach.
    assert owner is None or owner[0].id == tenant or dialled != owner[1].extension, "another tenant's extension"


def test_random_transfers(world: World) -> None:
    _transfer(world)


# ---------------------------------------------------------------------- tenant isolation


@pytest.mark.parametrize(("typed", "pin"), [
    (ANNA, BERT_PIN),  # another tenant's user with the caller's own PIN
    ("101", BERT_PIN),  # an extension is nobody's mailbox number: it exists in both tenants
    ("0401110001", BERT_PIN),
    (ANNA, ""),
])
def test_a_device_of_one_tenant_opens_another_tenants_mailbox_only_with_its_pin(
        world: World, typed: str, pin: str) -> None:
    before = world.reset()
    plan = [Moment(during=typed + "#"), Moment(during=pin + "#"), Moment(hang_up=True)]
    _, trace = world.call(["access"], plan, number="101", variables={"VIPBX_TENANT": "beta", "VIPBX_USER": "nobody"})
    assert not trace.heard("vm-main-menu"), trace.steps
    assert before.boxes == world.snapshot().boxes


def test_the_right_pin_opens_the_mailbox_whoever_calls(world: World) -> None:
    """The PIN is the proof: with anna's PIN, a beta device reaches anna's mailbox (and only it)."""
    world.reset()
    plan = [Moment(during=ANNA + "#"), Moment(during=PIN + "#"), Moment(during="*")]
    _, trace = world.call(["access"], plan, number="101", variables={"VIPBX_TENANT": "beta", "VIPBX_USER": "nobody"})
    assert trace.heard("vm-main-menu"), trace.steps


@pytest.mark.parametrize("arg", ["\n", " ", "none", "voicemail", "off"])
def test_987_with_a_word_or_blank_is_refused_and_changes_nothing(world: World, arg: str) -> None:
    """The service reads these as "no forward" or "to voicemail"; from a code they are no number."""
    world.service.set_forward("acme", "anna", "immediate", MIKKO, actor="test", source="test")
    before = world.snapshot()
    channel_id, trace = world.call(["forward", arg], [], number="101",
                                   variables={"VIPBX_TENANT": "acme", "VIPBX_USER": "anna"})
    assert before == world.snapshot()
    assert trace.heard("fc-refused-invalid-number"), trace.steps
    assert not world.harness.continued(channel_id)
