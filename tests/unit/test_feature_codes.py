"""The feature codes (987 forward, *43# call waiting) and the in-call transfer, as the Stasis app
runs them: a fake ARI (real websocket for events, MockTransport REST) and a real call-state
service on a temporary SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from people import user
from pluginharness import PluginHarness, running

from ari_app.client import AriClient
from ari_app.features import plugin as features_plugin
from ari_app.testing import FakeAri, channel
from base.model import (
    Config,
    Platform,
    Tenant,
    TenantNumber,
)
from base.outbound import OutboundPolicy
from callstate import CallStateService, Routing, SettingsError, StorageError
from prompts import speech

ANNA, MIKKO = "+358401110001", "+358401110002"
OUTSIDE = "+358501234567"



CONFIG = Config(
    platform=Platform(default_language="sv"),
    tenants=(
        Tenant(id="acme", name="Acme", domain="acme.example",
               numbers=(TenantNumber("+358912340000", "anna"),),
               users=(user("anna", ANNA, "101", "fi"), user("mikko", MIKKO, "102", "fi"),
                      user("nora", "+358401110003", "103", "en", no_voicemail=True))),
        Tenant(id="nordic", name="Nordic", domain="nordic.example",
               outbound=OutboundPolicy(allow=("+46",), deny=("+4690",)),
               users=(user("olli", "+358502220001", "301", "fi"), user("petra", "+358502220002", "302", "fi"))),
    ),
)


class Harness(PluginHarness):
    """The features plugin's entries over the fake ARI and a real call-state service."""

    def __init__(self, fake: FakeAri, client: AriClient, state: CallStateService, sounds: Path) -> None:
        super().__init__(fake, client, state, sounds, features_plugin, CONFIG)

    async def call(self, *args: str, tenant: str | None = "acme", user_id: str | None = "anna",
                   channel_id: str = "c1") -> None:
        """A device's channel enters Stasis(vipbx,ARGS...) and the handler runs to its end."""
        chan = channel(channel_id, app_data=",".join(("vipbx",) + args), number=ANNA)
        variables = (("VIPBX_TENANT", tenant), ("VIPBX_USER", user_id))
        chan["channelvars"] = {k: v for k, v in variables if v is not None}
        self.fake.channels[channel_id] = chan
        await self.fake.send({"type": "StasisStart", "args": list(args), "channel": chan})
        await self.until(lambda: channel_id not in self.app.sessions
                         and bool(self.calls("DELETE", f"/channels/{channel_id}")
                                  or self.calls("POST", f"/channels/{channel_id}/continue")), timeout=3.0)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG) as service:
        yield service


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch, state: CallStateService, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(lambda fake, client: Harness(fake, client, state, tmp_path / "sounds"), monkeypatch) as harness:
        yield harness


def fi(*names: str) -> list[tuple[str, str]]:
    return [("fi", n) for n in names]


def answered_and_hung_up(h: Harness, channel_id: str = "c1") -> bool:
    return (len(h.calls("POST", f"/channels/{channel_id}/answer")) == 1
            and len(h.calls("DELETE", f"/channels/{channel_id}")) == 1
            and not h.calls("POST", f"/channels/{channel_id}/continue"))


async def test_plugin_serves_the_three_entries(h: Harness) -> None:
    assert set(h.app.handlers) == {"forward", "callwaiting", "transfer", "outbound-refused"}


# ---------------------------------------------------------------------- 987


async def test_forward_code_sets_and_reads_back(h: Harness) -> None:
    await h.call("forward", "0501234567")
    assert h.state.routing("acme", "anna").immediate == OUTSIDE
    assert h.played() == fi("fc-forward-set", *speech.digits("fi", OUTSIDE))
    assert h.played()[1:4] == fi("plus", "digit-3", "digit-5")
    assert answered_and_hung_up(h)
    [entry] = h.state.audit()
    assert (entry.actor, entry.source, entry.field, entry.old, entry.new) == (
        "PJSIP/c1", "code", "forward.immediate", "none", OUTSIDE)


async def test_forward_code_to_a_colleague_extension(h: Harness) -> None:
    await h.call("forward", "102")
    assert h.state.routing("acme", "anna").immediate == MIKKO
    assert h.played() == fi("fc-forward-set", *speech.digits("fi", MIKKO))


@pytest.mark.parametrize("args", [("forward", ""), ("forward",)])
async def test_forward_code_alone_clears(h: Harness, args: tuple[str, ...]) -> None:
    h.state.set_forward("acme", "anna", "immediate", OUTSIDE, actor="op", source="cli")
    await h.call(*args)
    assert h.state.routing("acme", "anna").immediate == "none"
    assert h.played() == fi("fc-forward-removed")
    assert answered_and_hung_up(h)
    assert h.state.audit()[0].field == "forward.immediate" and h.state.audit()[0].new == "none"


@pytest.mark.parametrize(("digits", "reason"), [
    ("+358201243100", "voicemail-number"),
    ("0201243100", "voicemail-number"),
    ("+358201243200", "activity-number"),
    ("0401110001", "own-number"),
    ("101", "own-number"),
    ("+358912340000", "own-number"),
    ("999", "invalid-number"),
    ("0600123456", "number-barred"),
    ("0046701234567", "number-barred"),
])
async def test_forward_code_refusals_change_nothing(h: Harness, digits: str, reason: str) -> None:
    h.state.set_forward("acme", "anna", "immediate", "102", actor="op", source="cli")
    before, audit = h.state.routing("acme", "anna"), h.state.audit()
    await h.call("forward", digits)
    assert h.played() == fi(f"fc-refused-{reason}")
    assert h.state.routing("acme", "anna") == before and h.state.audit() == audit
    assert answered_and_hung_up(h)


async def test_forward_code_refuses_a_loop(h: Harness) -> None:
    h.state.set_forward("acme", "mikko", "immediate", "101", actor="op", source="cli")
    await h.call("forward", "102")
    assert h.played() == fi("fc-refused-loop")
    assert h.state.routing("acme", "anna").immediate == "none"


async def test_forward_code_follows_the_tenant_allow_list(h: Harness) -> None:
    await h.call("forward", "0046701234567", tenant="nordic", user_id="olli")
    assert h.state.routing("nordic", "olli").immediate == "+46701234567"
    await h.call("forward", "0501234567", tenant="nordic", user_id="petra", channel_id="c2")
    assert h.played("c2") == fi("fc-refused-number-barred")
    assert h.state.routing("nordic", "petra").immediate == "none"


@pytest.mark.parametrize(("tenant", "user_id"), [(None, None), ("acme", None), (None, "anna"),
                                                 ("acme", "ghost"), ("nope", "anna"), ("", "")])
@pytest.mark.parametrize("args", [("forward", "0501234567"), ("callwaiting", "off")])
async def test_a_channel_of_no_user_is_refused(h: Harness, tenant: str | None, user_id: str | None,
                                               args: tuple[str, ...]) -> None:
    await h.call(*args, tenant=tenant, user_id=user_id)
    assert h.played() == [("sv", "fc-refused-not-allowed")]  # the platform's default language
    assert h.state.audit() == []
    assert h.state.routing("acme", "anna") == Routing(busy="voicemail", no_answer="voicemail",
                                                      unreachable="voicemail")
    assert answered_and_hung_up(h)


async def test_storage_error_says_technical_error(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Routing:
        raise StorageError("the call-state database is locked")

    monkeypatch.setattr(h.state, "set_forward", broken)
    monkeypatch.setattr(h.state, "set_call_waiting", broken)
    monkeypatch.setattr(h.state, "routing", broken)
    await h.call("forward", "0501234567")
    await h.call("forward", channel_id="c2")
    await h.call("callwaiting", "on", channel_id="c3")
    await h.call("callwaiting", "status", channel_id="c4")
    for channel_id in ("c1", "c2", "c3", "c4"):
        assert h.played(channel_id) == fi("fc-refused-error")
        assert answered_and_hung_up(h, channel_id)


async def test_other_refusals_say_it_could_not_be_done(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Routing:
        raise SettingsError("no")

    monkeypatch.setattr(h.state, "set_forward", refuse)
    await h.call("forward", "0501234567")
    assert h.played() == fi("fc-refused")


# ---------------------------------------------------------------------- *43# / #43# / *#43#


async def test_call_waiting_codes(h: Harness) -> None:
    await h.call("callwaiting", "status", channel_id="c1")
    assert h.played("c1") == fi("cw-is-on")
    await h.call("callwaiting", "off", channel_id="c2")
    assert h.played("c2") == fi("cw-off")
    assert h.state.routing("acme", "anna").call_waiting is False
    await h.call("callwaiting", "status", channel_id="c3")
    assert h.played("c3") == fi("cw-is-off")
    await h.call("callwaiting", "on", channel_id="c4")
    assert h.played("c4") == fi("cw-on")
    assert h.state.routing("acme", "anna").call_waiting is True
    assert [(e.field, e.old, e.new, e.source, e.actor) for e in reversed(h.state.audit())] == [
        ("call_waiting", "on", "off", "code", "PJSIP/c2"), ("call_waiting", "off", "on", "code", "PJSIP/c4")]
    assert all(answered_and_hung_up(h, c) for c in ("c1", "c2", "c3", "c4"))


async def test_call_waiting_speaks_the_users_language(h: Harness) -> None:
    await h.call("callwaiting", "off", user_id="nora")
    assert h.played() == [("en", "cw-off")]
    assert h.state.routing("acme", "nora").call_waiting is False
    assert h.state.routing("acme", "anna").call_waiting is True


# ---------------------------------------------------------------------- transfer


def continued(h: Harness, channel_id: str = "c1") -> list[tuple[str | None, str | None, str | None]]:
    return [(r.url.params.get("context"), r.url.params.get("extension"), r.url.params.get("priority"))
            for r in h.calls("POST", f"/channels/{channel_id}/continue")]


@pytest.mark.parametrize(("tenant", "digits", "target"), [
    ("acme", "0501234567", OUTSIDE),
    ("acme", "102", MIKKO),  # a colleague's extension
    ("acme", "101", ANNA),  # no "own number" in a transfer: the transferred party is not anna
    ("nordic", "0046701234567", "+46701234567"),
    ("nordic", "302", "+358502220002"),
])
async def test_transfer_allowed_continues_to_the_target(h: Harness, tenant: str, digits: str,
                                                        target: str) -> None:
    # The transferred party is often an outside caller: no VIPBX_TENANT / VIPBX_USER of its own.
    await h.call("transfer", tenant, digits, tenant=None, user_id=None)
    chain = [(r.url.params.get("variable"), r.url.params.get("value"))
             for r in h.calls("POST", "/channels/c1/variable")]
    # The call goes out (if the target is outside) as the tenant's: the outbound check's policy.
    assert chain == [("VIPBX_CHAIN", ""), ("VIPBX_OUT_TENANT", tenant), ("VIPBX_OUT_USER", "")]
    assert continued(h) == [("vipbx-connect", target, "1")]
    assert h.played() == [] and not h.calls("DELETE", "/channels/c1")
    assert h.state.audit() == []


@pytest.mark.parametrize(("tenant", "digits"), [
    ("acme", "+358201243100"),
    ("acme", "0201243200"),
    ("acme", "0600123456"),
    ("acme", "0046701234567"),
    ("acme", "999"),
    ("nordic", "0501234567"),
    ("nordic", "+46901234567"),
    ("nope", "0501234567"),
])
async def test_transfer_refused_explains_and_hangs_up(h: Harness, tenant: str, digits: str) -> None:
    await h.call("transfer", tenant, digits, tenant=None, user_id=None)
    assert h.played() == [("sv", "xfer-refused")]
    assert len(h.calls("DELETE", "/channels/c1")) == 1
    assert continued(h) == [] and not h.calls("POST", "/channels/c1/variable")


async def test_transfer_without_arguments_is_refused(h: Harness) -> None:
    await h.call("transfer")
    assert h.played() == [("sv", "xfer-refused")]
    assert continued(h) == []


# ---------------------------------------------------------------------- outbound refusal


@pytest.mark.parametrize(("reason", "hangup"), [("barred", "rejected"), ("limit", "congestion"),
                                                ("error", "rejected"), ("nonsense", "rejected")])
async def test_a_refused_call_out_hears_why_unanswered_and_ends_with_the_cause(
        h: Harness, reason: str, hangup: str) -> None:
    h.fake.route("POST", r"/channels/([^/]+)/progress", lambda request, match: httpx.Response(204))
    chan = channel("c1", app_data=f"vipbx,outbound-refused,{reason},acme,anna", number=ANNA)
    chan["state"] = "Ring"  # a call being dialled: not answered, early media only
    h.fake.channels["c1"] = chan
    await h.fake.send({"type": "StasisStart", "args": ["outbound-refused", reason, "acme", "anna"],
                       "channel": chan})
    await h.until(lambda: bool(h.calls("DELETE", "/channels/c1")))
    expected = reason if reason in ("barred", "limit") else "error"
    assert h.played() == fi(f"out-refused-{expected}")  # in anna's language
    assert len(h.calls("POST", "/channels/c1/progress")) == 1
    assert not h.calls("POST", "/channels/c1/answer")
    assert h.calls("DELETE", "/channels/c1")[0].url.params["reason"] == hangup
