"""Trust through the IVRs and the feature codes: only a platform device, or a user's number on a
trusted trunk, is known without a PIN; an untrusted interconnect's caller ID proves nothing.

The login runs on the IVR toolkit's harness (test_ivr_toolkit), whose platform has the trusted
"carrier" (Finland) and the untrusted "ic" (Sweden); the codes on the features plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import test_ivr_toolkit
from people import CARRIER, user
from pluginharness import PluginHarness, running
from test_ivr_toolkit import ANNA, PIN, Harness, login, who

from ari_app.client import AriClient
from ari_app.features import plugin as features_plugin
from ari_app.testing import FakeAri, channel
from base.model import Config, Platform, Tenant, Trunk
from callstate import CallStateService

# The toolkit's fixtures, by name: `h` (the harness) over `state` (its call-state service).
h, state = test_ivr_toolkit.h, test_ivr_toolkit.state

# --- the login ---------------------------------------------------------------------------------------


async def test_a_users_caller_id_on_the_trusted_trunk_logs_in_at_once(h: Harness) -> None:
    result, lang = await h.run(login(h), ANNA, trunk="carrier")
    assert (who(result), lang) == (("anna", False), "fi")
    assert h.names() == []


@pytest.mark.parametrize("trunk", ["ic", None, "no-such-trunk"])
async def test_a_users_caller_id_from_anywhere_else_is_asked_number_and_pin(h: Harness, trunk: str | None) -> None:
    h.press("vm-enter-mailbox", ANNA + "#").press("vm-enter-pin", PIN + "#")
    result, lang = await h.run(login(h), ANNA, trunk=trunk)
    assert (who(result), lang) == (("anna", True), "fi")
    assert h.names() == ["vm-enter-mailbox", "vm-enter-pin"]
    [ok] = [e for e in h.state.audit() if e.field == "pin"]
    assert ok.event == "pin_ok"


async def test_a_wrong_pin_from_an_untrusted_trunk_logs_nobody_in(h: Harness) -> None:
    h.press("vm-enter-mailbox", ANNA + "#")
    for _ in range(3):
        h.press("vm-enter-pin", "111111#")
    result, _ = await h.run(login(h), ANNA, trunk="ic")
    assert result is None
    assert [e.event for e in h.state.audit() if e.field == "pin"] == ["pin_failed"] * 3


async def test_a_typed_national_number_is_read_in_the_trunks_country(h: Harness) -> None:
    # 0401110001 typed on the Swedish interconnect is +46401110001: nobody here, so no login
    # with Anna's PIN (in Finland it would be Anna's number).
    h.press("vm-enter-mailbox", "0401110001#")
    for _ in range(3):
        h.press("vm-enter-pin", PIN + "#")
    result, _ = await h.run(login(h), "+46700000000", trunk="ic")
    assert result is None
    assert [e for e in h.state.audit() if e.field == "pin"] == []
    h.press("vm-enter-mailbox", "0401110001#").press("vm-enter-pin", PIN + "#")
    result, _ = await h.run(login(h), "+46700000000", trunk="carrier", channel_id="c2")
    assert who(result) == ("anna", True)


# --- the feature codes -----------------------------------------------------------------------------

MOBILE = "+358401110001"
CORE = Trunk("core", "192.0.2.10", match=("192.0.2.10",), trusted=True, mobile_core=True,
             handset_prefix="*88")
IC = Trunk("ic", "192.0.2.20", match=("192.0.2.20",), trusted=False, country_code="46")
CODES_CONFIG = Config(
    platform=Platform(default_language="sv", trunks=(CARRIER, CORE, IC)),
    tenants=(Tenant(id="acme", name="Acme", domain="acme.example",
                    users=(user("anna", MOBILE, "101", "fi"), user("mikko", "+358401110002", "102"))),),
)


class Codes(PluginHarness):
    def __init__(self, fake: FakeAri, client: AriClient, store: CallStateService, sounds: Path) -> None:
        super().__init__(fake, client, store, sounds, features_plugin, CODES_CONFIG)

    async def dial(self, *args: str, number: str = MOBILE, trunk: str | None = "core",
                   channel_id: str = "c1") -> list[str]:
        """A trunk call from `number` enters Stasis(vipbx,ARGS...); the prompts it heard."""
        chan = channel(channel_id, app_data=",".join(("vipbx",) + args), number=number)
        chan["name"] = f"PJSIP/{trunk}-00000001"
        chan["channelvars"] = {"VIPBX_TRUNK": trunk} if trunk else {}
        self.fake.channels[channel_id] = chan
        await self.fake.send({"type": "StasisStart", "args": list(args), "channel": chan})
        await self.until(lambda: channel_id not in self.app.sessions
                         and bool(self.calls("DELETE", f"/channels/{channel_id}")), timeout=3.0)
        return [name for _, name in self.played(channel_id)]


@pytest.fixture
def codes_state(tmp_path: Path) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CODES_CONFIG) as service:
        yield service


@pytest.fixture
async def codes(monkeypatch: pytest.MonkeyPatch, codes_state: CallStateService, tmp_path: Path) -> AsyncIterator[Codes]:
    async with running(lambda fake, client: Codes(fake, client, codes_state, tmp_path / "sounds"),
                       monkeypatch) as harness:
        yield harness


async def test_codes_from_the_users_mobile_through_the_trusted_core_act_for_the_user(codes: Codes) -> None:
    heard = await codes.dial("forward", "0401110002")  # national, in the core's country
    assert heard[0] == "fc-forward-set"
    assert codes.state.routing("acme", "anna").immediate == "+358401110002"
    [entry] = codes.state.audit()
    assert (entry.actor, entry.source) == (MOBILE, "code")
    assert await codes.dial("callwaiting", "off", channel_id="c2") == ["cw-off"]
    assert codes.state.routing("acme", "anna").call_waiting is False


@pytest.mark.parametrize("trunk", ["ic", None])
async def test_codes_from_an_untrusted_trunk_are_refused_aloud_and_change_nothing(codes: Codes, trunk: str | None) -> None:
    assert await codes.dial("forward", "+358401110002", trunk=trunk) == ["fc-refused-not-allowed"]
    assert await codes.dial("callwaiting", "off", trunk=trunk, channel_id="c2") == ["fc-refused-not-allowed"]
    routing = codes.state.routing("acme", "anna")
    assert (routing.immediate, routing.call_waiting) == ("none", True)
    assert codes.state.audit() == []
    assert len(codes.calls("POST", "/channels/c1/answer")) == 1  # answered, to say why


async def test_a_code_from_a_trusted_trunk_and_nobodys_number_is_refused(codes: Codes) -> None:
    assert await codes.dial("forward", "+358401110002", number="+358509999999") == ["fc-refused-not-allowed"]
    assert codes.state.audit() == []
