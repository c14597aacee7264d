"""The activity-change number (`Stasis(app,activity)`) as the Stasis app runs it: the presence
plugin's real wiring, a fake ARI (real websocket for events, MockTransport REST) that presses keys
when a given prompt is played, a real call-state service on a temporary SQLite file, and no AMI.
Also `parse_end_time`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from callstate_support import FakeClock
from people import TRUNKS, user, via
from pluginharness import PluginHarness, running

from ari_app.client import AriClient
from ari_app.presence import ivr as ivr_module
from ari_app.presence import plugin as presence_plugin
from ari_app.presence.ivr import ActivityIvr, parse_end_time
from ari_app.testing import FakeAri, channel
from base.model import Config, Platform, Tenant
from callstate import CallStateService, Presence, StorageError
from prompts import speech

HELSINKI = ZoneInfo("Europe/Helsinki")
ANNA, MIKKO, NORA = "+358401110001", "+358401110002", "+358401110003"
OUTSIDE = "+358501234567"
PIN = "480264"
# Friday 25 October 2024, 15:00 in Helsinki (summer time, +3); winter time (+2) starts on Sunday.
NOW = datetime(2024, 10, 25, 15, 0, tzinfo=HELSINKI)



CONFIG = Config(
    platform=Platform(default_language="sv", trunks=TRUNKS),
    tenants=(Tenant(id="acme", name="Acme", domain="acme.example",
                    users=(user("anna", ANNA, "101", "fi"), user("mikko", MIKKO, "102", "en"),
                           user("nora", NORA, "103", "fi", no_voicemail=True))),),
)
MENU = ["act-choose", "act-available", "press", "digit-1", "act-busy", "press", "digit-2",
        "act-meeting", "press", "digit-3", "act-lunch", "press", "digit-4", "act-off-work", "press", "digit-5",
        "act-vacation", "press", "digit-6", "act-sick", "press", "digit-7", "act-menu-tail"]


class Harness(PluginHarness):
    """The presence plugin's entries over the fake ARI and a real call-state service;
    `press(prompt, keys)` queues keys pressed while `prompt` plays."""

    def __init__(self, fake: FakeAri, client: AriClient, state: CallStateService, sounds: Path) -> None:
        super().__init__(fake, client, state, sounds, presence_plugin, CONFIG)
        ivr = self.plugin.handlers["activity"]
        assert isinstance(ivr, ActivityIvr)
        self.ivr = ivr
        self.ivr.voice.now = lambda: NOW  # type: ignore[method-assign]
        self.script: list[tuple[str, str]] = []
        self.channel: dict[str, Any] = {}

    def press(self, prompt: str, keys: str) -> Harness:
        self.script.append((prompt, keys))
        return self

    async def playing(self, channel_id: str, playback_id: str, request: httpx.Request) -> None:
        names = [uri.rsplit("/", 1)[1] for uri in request.url.params["media"].split(",")]
        if self.script and self.script[0][0] in names:
            for key in self.script.pop(0)[1]:  # pressed while the prompt plays: before its end
                await self.fake.send({"type": "ChannelDtmfReceived", "digit": key, "channel": self.channel})
        await super().playing(channel_id, playback_id, request)

    async def call(self, number: str = ANNA, *, tenant: str | None = None, user_id: str | None = None,
                   channel_id: str = "c1", trunk: str | None = "carrier") -> None:
        """A call enters Stasis(vipbx,activity) from `number` (a device of tenant/user when they are
        given) and the handler runs to its end."""
        chan = channel(channel_id, app_data="vipbx,activity", number=number)
        variables = (("VIPBX_TENANT", tenant), ("VIPBX_USER", user_id))
        chan["channelvars"] = {k: v for k, v in variables if v is not None} or via(trunk)
        self.channel = chan
        self.fake.channels[channel_id] = chan
        await self.fake.send({"type": "StasisStart", "args": ["activity"], "channel": chan})
        await self.until(lambda: channel_id not in self.app.sessions
                         and bool(self.fake.calls("DELETE", f"/channels/{channel_id}")))
        assert self.script == [], f"keys never asked for: {self.script}"

    def names(self, channel_id: str = "c1") -> list[str]:
        return [name for _, name in self.played(channel_id)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW.astimezone(UTC))


@pytest.fixture
def state(tmp_path: Path, clock: FakeClock) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG, clock=clock) as service:
        yield service


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch, state: CallStateService, tmp_path: Path) -> AsyncIterator[Harness]:
    monkeypatch.setattr(ivr_module, "KEY_TIMEOUT", 0.25)  # an unanswered prompt, quickly
    async with running(lambda fake, client: Harness(fake, client, state, tmp_path / "sounds"), monkeypatch) as harness:
        yield harness


def lang_of(h: Harness) -> set[str]:
    return {lang for lang, _ in h.played()}


def answered_and_hung_up(h: Harness, channel_id: str = "c1") -> bool:
    return (len(h.fake.calls("POST", f"/channels/{channel_id}/answer")) == 1
            and len(h.fake.calls("DELETE", f"/channels/{channel_id}")) == 1
            and not h.fake.calls("POST", f"/channels/{channel_id}/continue"))


# ---------------------------------------------------------------------- wiring and login


async def test_plugin_serves_the_activity_entry(h: Harness) -> None:
    assert set(h.app.handlers) == {"activity"}


async def test_own_device_logs_in_without_pin(h: Harness) -> None:
    h.press("act-choose", "*")
    await h.call("101", tenant="acme", user_id="anna")  # a device's caller number: the extension
    assert h.names() == ["act-current-is", "act-available", *MENU, "vm-goodbye"]
    assert lang_of(h) == {"fi"}  # the user's language throughout
    assert answered_and_hung_up(h)
    assert h.state.audit() == []  # no PIN event either


@pytest.mark.parametrize("number", [MIKKO, "0401110002", "358401110002", "00358401110002"])
async def test_own_caller_number_logs_in_without_pin(h: Harness, number: str) -> None:
    h.press("act-choose", "*")
    await h.call(number)
    assert h.played()[:2] == [("en", "act-current-is"), ("en", "act-available")]
    assert "vm-enter-pin" not in h.names()


async def test_always_ask_pin_asks_it(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    h.press("vm-enter-pin", PIN + "#").press("act-choose", "*")
    await h.call(ANNA)
    assert h.names()[:3] == ["vm-enter-pin", "act-current-is", "act-available"]
    assert lang_of(h) == {"fi"}
    [ok] = [e for e in h.state.audit() if e.field == "pin"]
    assert (ok.event, ok.actor, ok.source) == ("pin_ok", ANNA, "ivr")


async def test_always_ask_pin_from_the_own_device_too(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    h.press("vm-enter-pin", "111111#").press("vm-enter-pin", "222222#").press("vm-enter-pin", "333333#")
    await h.call("101", tenant="acme", user_id="anna")
    assert h.names() == ["vm-enter-pin", "vm-pin-wrong"] * 3 + ["vm-goodbye"]
    assert h.state.pin_status("acme", "anna").failures == 3


async def test_foreign_number_gives_number_and_pin(h: Harness) -> None:
    h.press("act-enter-number", "0401110001#").press("vm-enter-pin", PIN + "#").press("act-choose", "4")
    h.press("act-enter-until", "#")
    await h.call(OUTSIDE)
    # Asked in the platform's language until the caller is known, then in anna's.
    assert h.played()[:2] == [("sv", "act-enter-number"), ("sv", "vm-enter-pin")]
    assert h.played()[2:4] == [("fi", "act-current-is"), ("fi", "act-available")]
    assert h.state.presence("acme", "anna") == Presence("lunch")
    change = h.state.audit()[0]
    assert (change.field, change.new, change.actor, change.source) == ("presence.activity", "lunch", OUTSIDE, "ivr")


async def test_foreign_number_with_a_wrong_pin_changes_nothing(h: Harness) -> None:
    h.press("act-enter-number", ANNA + "#")
    for _ in range(3):
        h.press("vm-enter-pin", "999999#")
    await h.call(OUTSIDE)
    assert h.names() == ["act-enter-number", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
    assert "act-choose" not in h.names()
    assert h.state.presence("acme", "anna") == Presence()
    status = h.state.pin_status("acme", "anna")
    assert (status.failures, status.locked) == (3, False)
    assert [e.event for e in h.state.audit()] == ["pin_failed"] * 3
    assert all(e.actor == OUTSIDE for e in h.state.audit())


async def test_wrong_pins_lock_the_user_without_saying_so_to_a_typed_number(h: Harness) -> None:
    three_wrong = ["act-enter-number", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
    for channel_id in ("c1", "c2"):
        h.press("act-enter-number", "0401110001#")
        for _ in range(3):
            h.press("vm-enter-pin", "999999#")
        await h.call(OUTSIDE, channel_id=channel_id)
        assert h.names(channel_id) == three_wrong  # the fifth failure locks, as quietly as the others
    assert h.state.pin_status("acme", "anna").locked
    # Locked: even the right PIN is refused now, in the words of any wrong PIN.
    h.press("act-enter-number", "0401110001#")
    for _ in range(3):
        h.press("vm-enter-pin", PIN + "#")
    await h.call(OUTSIDE, channel_id="c3")
    assert h.names("c3") == three_wrong
    assert h.state.presence("acme", "anna") == Presence()


async def test_unknown_number_still_asks_a_pin(h: Harness) -> None:
    h.press("act-enter-number", "0509999999#")
    for _ in range(3):
        h.press("vm-enter-pin", PIN + "#")
    await h.call(OUTSIDE)
    assert h.names() == ["act-enter-number", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
    assert h.state.audit() == []


def test_find_caller_by_any_written_form() -> None:
    from base.model import TenantNumber

    svea = Tenant(id="svea", name="Svea", domain="svea.example", country_code="46",
                  users=(user("sven", "+46701110001", "401", "sv"),))
    acme = Tenant(id="acme", name="Acme", domain="acme.example", numbers=(TenantNumber("+358912340000", "anna"),),
                  users=CONFIG.tenants[0].users)
    config = Config(platform=Platform(), tenants=(acme, svea))
    anna = (acme, acme.users[0])
    for raw in (ANNA, "0401110001", "358401110001", "00358401110001", "+358912340000", "0912340000"):
        assert config.find_caller(raw, "358") == anna, raw
    assert config.find_caller("0701110001", "46") == (svea, svea.users[0])  # national in Sweden
    assert config.find_caller("+46701110001", "358") == (svea, svea.users[0])
    for raw in ("", "101", OUTSIDE, "0501234567", "abc", "+"):
        assert config.find_caller(raw, "358") is None, raw
    assert config.find_number("0401110001") is None  # find_number takes E.164 only
    assert config.find_user("acme", "anna") == anna and config.find_user("svea", "anna") is None


# ---------------------------------------------------------------------- what is heard


async def test_current_activity_with_its_end_time(h: Harness) -> None:
    until = datetime(2024, 10, 28, 0, 0, tzinfo=HELSINKI)
    h.state.set_presence("acme", "anna", "vacation", until=until, actor="op", source="cli")
    h.press("act-choose", "*")
    await h.call(ANNA)
    assert h.names()[:2] == ["act-current-is", "act-vacation"]
    assert h.names()[2:-len(MENU) - 1] == speech.until_phrase("fi", until, NOW)
    assert h.names()[2:-len(MENU) - 1] == ["wd-until-1", "until"]  # "maanantaihin asti"


async def test_menu_lists_each_activity_with_its_digit(h: Harness) -> None:
    h.press("act-choose", "*")
    await h.call(MIKKO)
    assert h.names()[2:-1] == MENU
    assert lang_of(h) == {"en"}


async def test_invalid_key_and_repeat(h: Harness) -> None:
    h.press("act-choose", "9").press("act-choose", "#").press("act-choose", "0").press("act-choose", "*")
    await h.call(ANNA)
    assert h.names() == ["act-current-is", "act-available", *MENU, "vm-invalid-key", *MENU, "vm-invalid-key",
                         *MENU, *MENU, "vm-goodbye"]
    assert h.state.presence("acme", "anna") == Presence() and h.state.audit() == []


async def test_a_key_during_invalid_key_is_the_next_choice(h: Harness) -> None:
    h.press("act-choose", "9").press("vm-invalid-key", "4").press("act-enter-until", "#")
    await h.call(ANNA)
    assert h.names()[2:2 + len(MENU) + 2] == [*MENU, "vm-invalid-key", "act-enter-until"]
    assert h.state.presence("acme", "anna") == Presence("lunch")


async def test_call_state_down_is_said(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise StorageError("state database: disk I/O error")

    monkeypatch.setattr(h.state, "voicemail_settings", down)
    await h.call(ANNA)
    assert h.names() == ["fc-refused-error", "vm-goodbye"]
    assert answered_and_hung_up(h)


async def test_unanswered_menu_says_goodbye(h: Harness) -> None:
    await h.call(ANNA)
    assert h.names() == ["act-current-is", "act-available", *MENU, *MENU, *MENU, "vm-goodbye"]


# ---------------------------------------------------------------------- choosing


async def test_vacation_for_three_days(h: Harness) -> None:
    h.press("act-choose", "6").press("act-enter-until", "3#")
    await h.call(ANNA)
    # Midnight three days ahead in Helsinki, after the change to winter time (+2).
    until = datetime(2024, 10, 28, 0, 0, tzinfo=HELSINKI)
    assert until.utcoffset() == timedelta(hours=2)
    assert h.state.presence("acme", "anna") == Presence("vacation", datetime(2024, 10, 27, 22, 0, tzinfo=UTC))
    tail = ["act-changed", "act-current-is", "act-vacation", *speech.until_phrase("fi", until, NOW), "vm-goodbye"]
    assert h.names()[-len(tail):] == tail
    assert h.names()[2 + len(MENU)] == "act-enter-until"
    assert [(e.field, e.new, e.actor, e.source) for e in reversed(h.state.audit())] == [
        ("presence.activity", "vacation", ANNA, "ivr"), ("presence.until", "2024-10-27T22:00:00.000000Z", ANNA, "ivr")]


@pytest.mark.parametrize(("typed", "until"), [
    ("1630#", datetime(2024, 10, 25, 16, 30, tzinfo=HELSINKI)),  # later today
    ("1430#", datetime(2024, 10, 26, 14, 30, tzinfo=HELSINKI)),  # passed today: tomorrow
    ("0000#", datetime(2024, 10, 26, 0, 0, tzinfo=HELSINKI)),
    ("1#", datetime(2024, 10, 26, 0, 0, tzinfo=HELSINKI)),  # back tomorrow morning
])
async def test_end_time_as_a_clock_time_or_days(h: Harness, typed: str, until: datetime) -> None:
    h.press("act-choose", "3").press("act-enter-until", typed)
    await h.call(ANNA)
    assert h.state.presence("acme", "anna") == Presence("meeting", until.astimezone(UTC))
    assert "act-invalid-time" not in h.names()


async def test_hash_alone_means_no_end_time(h: Harness) -> None:
    h.press("act-choose", "7").press("act-enter-until", "#")
    await h.call(ANNA)
    assert h.state.presence("acme", "anna") == Presence("sick")
    assert h.names()[-4:] == ["act-changed", "act-current-is", "act-sick", "vm-goodbye"]


@pytest.mark.parametrize("typed", ["2400#", "1260#", "9999#", "0#", "366#", "*#", ""])
async def test_invalid_times_are_said_and_asked_again(h: Harness, typed: str) -> None:
    h.press("act-choose", "5").press("act-enter-until", typed).press("act-enter-until", "2#")
    await h.call(ANNA)
    enter = [i for i, name in enumerate(h.names()) if name == "act-enter-until"]
    assert len(enter) == 2
    assert h.names()[enter[0] + 1:enter[1]] == ["act-invalid-time"]
    assert h.state.presence("acme", "anna") == Presence(
        "off-work", datetime(2024, 10, 27, 0, 0, tzinfo=HELSINKI).astimezone(UTC))


async def test_three_invalid_times_go_back_to_the_menu(h: Harness) -> None:
    h.press("act-choose", "6")
    for _ in range(3):
        h.press("act-enter-until", "2500#")
    h.press("act-choose", "*")
    await h.call(ANNA)
    assert h.names().count("act-invalid-time") == 3
    assert h.names()[-len(MENU) - 1:] == [*MENU, "vm-goodbye"]
    assert h.state.presence("acme", "anna") == Presence() and h.state.audit() == []


async def test_available_asks_no_end_time(h: Harness) -> None:
    h.state.set_presence("acme", "anna", "meeting", until=NOW + timedelta(hours=1), actor="op", source="cli")
    h.press("act-choose", "1")
    await h.call(ANNA)
    assert "act-enter-until" not in h.names()
    assert h.names()[-4:] == ["act-changed", "act-current-is", "act-available", "vm-goodbye"]
    assert h.state.presence("acme", "anna") == Presence()
    assert h.state.audit()[0].field == "presence.until" and h.state.audit()[0].actor == ANNA


async def test_a_no_voicemail_user_can_change_too(h: Harness) -> None:
    h.press("act-choose", "2").press("act-enter-until", "#")
    await h.call(NORA)
    assert h.state.presence("acme", "nora") == Presence("busy")


# ---------------------------------------------------------------------- parse_end_time


@pytest.mark.parametrize(("typed", "expected"), [
    ("1630", datetime(2024, 10, 25, 16, 30)),
    ("1500", datetime(2024, 10, 26, 15, 0)),  # now exactly: tomorrow
    ("1501", datetime(2024, 10, 25, 15, 1)),
    ("0000", datetime(2024, 10, 26, 0, 0)),
    ("2359", datetime(2024, 10, 25, 23, 59)),
    ("1", datetime(2024, 10, 26, 0, 0)),
    ("3", datetime(2024, 10, 28, 0, 0)),
    ("03", datetime(2024, 10, 28, 0, 0)),
    ("365", datetime(2025, 10, 25, 0, 0)),
])
def test_parse_end_time(typed: str, expected: datetime) -> None:
    got = parse_end_time(typed, NOW)
    assert got is not None and got.tzinfo is HELSINKI
    assert got.replace(tzinfo=None) == expected
    assert got.utcoffset() == expected.replace(tzinfo=HELSINKI).utcoffset()


@pytest.mark.parametrize("typed", ["", "0", "000", "366", "2400", "1260", "9999", "12a4", "#", "*1", "12345"])
def test_parse_end_time_refuses(typed: str) -> None:
    assert parse_end_time(typed, NOW) is None


def test_parse_end_time_is_dst_safe() -> None:
    # Two days from Saturday evening is Monday midnight, across the switch to winter time.
    saturday = datetime(2024, 10, 26, 21, 0, tzinfo=HELSINKI)
    monday = parse_end_time("2", saturday)
    assert monday is not None and monday.astimezone(UTC) == datetime(2024, 10, 27, 22, 0, tzinfo=UTC)
    # A clock time on the other side of the switch keeps its wall-clock time.
    sunday = parse_end_time("0900", saturday)
    assert sunday is not None and sunday.astimezone(UTC) == datetime(2024, 10, 27, 7, 0, tzinfo=UTC)
    # Spring: into summer time.
    march = parse_end_time("1", datetime(2025, 3, 29, 12, 0, tzinfo=HELSINKI))
    assert march is not None and march.astimezone(UTC) == datetime(2025, 3, 29, 22, 0, tzinfo=UTC)
    after = parse_end_time("2", datetime(2025, 3, 29, 12, 0, tzinfo=HELSINKI))
    assert after is not None and after.astimezone(UTC) == datetime(2025, 3, 30, 21, 0, tzinfo=UTC)

