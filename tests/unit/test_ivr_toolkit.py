"""The IVR toolkit (ari_app.ivr) over the fake ARI: login by own number, by number + PIN with the
call-state lockout (a real service on a temporary SQLite file), menus as key → action tables,
and keys that interrupt any prompt and are then acted upon."""

from __future__ import annotations

import asyncio

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from callstate_support import FakeClock
from people import PIN, TRUNKS, user, via
from pluginharness import PluginHarness, running

from ari_app.caller import Caller
from ari_app.client import AriClient
from ari_app.ivr import (
    Goodbye,
    Ivr,
    Login,
    LoginPrompts,
    Menu,
    leave,
    pin_gate,
)
from ari_app.plugin_api import Plugin, PluginDeps
from ari_app.session import CallSession
from ari_app.testing import FakeAri, channel
from ari_app.voice import Voice
from base.model import Config, Platform, Tenant
from callstate import CallStateService

ANNA, MIKKO, NORA = "+358401110001", "+358401110002", "+358401110003"
OUTSIDE = "+358501234567"
CONFIG = Config(
    platform=Platform(default_language="sv", trunks=TRUNKS),
    tenants=(Tenant(id="acme", name="Acme", domain="acme.example",
                    users=(user("anna", ANNA, "101", "fi"), user("mikko", MIKKO, "102", "en"),
                           user("nora", NORA, "103", "fi", no_voicemail=True))),),
)
PROMPTS = LoginPrompts(number="vm-enter-mailbox")
KEY_TIMEOUT = 0.25  # an unanswered prompt, quickly

Script = Callable[[Ivr], Awaitable[Any]]


class Entry:
    """A plugin with one Stasis entry, "ivr": answers, runs the test's script on an `Ivr` in the
    platform's language, keeps its result (or the Goodbye), and hangs up."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.results: list[Any] = []
        self.voice: Voice | None = None

    def load(self, deps: PluginDeps) -> Plugin:
        self.voice = Voice(deps.sounds_dir, deps.config.platform.default_language)
        return Plugin(handlers={"ivr": self.serve})

    async def serve(self, call: CallSession) -> None:
        assert self.script is not None and self.voice is not None
        await call.answer()
        ivr = Ivr(call, self.voice, CONFIG.platform.default_language)
        try:
            self.results.append(await self.script(ivr))
        except Goodbye as bye:
            self.results.append(bye)
        self.results.append(ivr.lang)
        await call.hangup()


class Harness(PluginHarness):
    def __init__(self, fake: FakeAri, client: AriClient, state: CallStateService, sounds: Path) -> None:
        self.entry = Entry()
        super().__init__(fake, client, state, sounds, self.entry, CONFIG)  # type: ignore[arg-type]
        self.keys: list[tuple[str, str]] = []
        self.channel: dict[str, Any] = {}
        self.starts: list[tuple[str, float, str]] = []  # (channel, loop time, prompt) of each playback

    def press(self, prompt: str, keys: str) -> Harness:
        """`keys` are pressed while the next playback holding `prompt` plays."""
        self.keys.append((prompt, keys))
        return self

    async def playing(self, channel_id: str, playback_id: str, request: httpx.Request) -> None:
        names = [uri.rsplit("/", 1)[1] for uri in request.url.params["media"].split(",")]
        self.starts.append((channel_id, asyncio.get_running_loop().time(), names[0]))
        if self.keys and self.keys[0][0] in names:
            for key in self.keys.pop(0)[1]:
                await self.fake.send({"type": "ChannelDtmfReceived", "digit": key, "channel": self.channel})
        await super().playing(channel_id, playback_id, request)

    async def run(self, script: Script, number: str = OUTSIDE, *, device: tuple[str, str] | None = None,
                  channel_id: str = "c1", trunk: str | None = "carrier") -> list[Any]:
        """One call from `number` (or from a device of (tenant, user)) through `script`:
        [its result or Goodbye, the conversation's language at the end]."""
        self.entry.script = script
        self.entry.results = []
        chan = channel(channel_id, app_data="vipbx,ivr", number=number)
        chan["channelvars"] = via(trunk)
        if device is not None:
            chan["channelvars"] = {"VIPBX_TENANT": device[0], "VIPBX_USER": device[1]}
        self.channel = chan
        self.fake.channels[channel_id] = chan
        await self.fake.send({"type": "StasisStart", "args": ["ivr"], "channel": chan})
        await self.until(lambda: bool(self.fake.calls("DELETE", f"/channels/{channel_id}")))
        assert self.keys == [], f"keys never asked for: {self.keys}"
        return self.entry.results

    def timed(self, channel_id: str = "c1") -> list[tuple[float, str]]:
        """When each playback to the channel started, with its first prompt."""
        return [(at, name) for chan, at, name in self.starts if chan == channel_id]

    def names(self, channel_id: str = "c1") -> list[str]:
        return [name for _, name in self.played(channel_id)]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG, clock=FakeClock()) as service:
        yield service


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch, state: CallStateService, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(lambda fake, client: Harness(fake, client, state, tmp_path / "sounds"), monkeypatch) as harness:
        yield harness


def login(h: Harness, **options: Any) -> Script:
    options.setdefault("verdict_seconds", 0.01)
    return Login(CONFIG, pin_gate(h.state), PROMPTS, key_timeout=KEY_TIMEOUT, **options)


def who(result: Caller | None) -> tuple[str, bool] | None:
    return None if result is None else (result.user.id, result.by_pin)


def lock(state: CallStateService, user_id: str = "anna") -> None:
    while not state.pin_status("acme", user_id).locked:
        state.check_pin("acme", user_id, "000000", source="test")


# ---------------------------------------------------------------------- login


async def test_own_number_logs_in_without_a_pin(h: Harness) -> None:
    result, lang = await h.run(login(h), "0401110002")  # Mikko's number, national form
    assert (who(result), lang) == (("mikko", False), "en")
    assert h.names() == [] and h.state.audit() == []


async def test_own_device_logs_in_without_a_pin(h: Harness) -> None:
    result, lang = await h.run(login(h), "101", device=("acme", "anna"))
    assert (who(result), lang) == (("anna", False), "fi")


async def test_always_ask_pin_asks_it_in_the_users_language(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    h.press("vm-enter-pin", PIN + "#")
    result, lang = await h.run(login(h), ANNA)
    assert (who(result), lang) == (("anna", True), "fi")
    assert h.played() == [("fi", "vm-enter-pin")]
    [ok] = [e for e in h.state.audit() if e.field == "pin"]
    assert (ok.event, ok.actor, ok.source) == ("pin_ok", ANNA, "ivr")


async def test_a_failed_own_pin_login_keeps_the_platform_language(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    for _ in range(3):
        h.press("vm-enter-pin", "111111#")
    result, lang = await h.run(login(h), ANNA)
    assert (result, lang) == (None, "sv")
    assert h.played() == [("fi", "vm-enter-pin"), ("fi", "vm-pin-wrong")] * 3


async def test_foreign_number_gives_number_and_pin(h: Harness) -> None:
    h.press("vm-enter-mailbox", "0401110001#").press("vm-enter-pin", PIN + "#")
    result, lang = await h.run(login(h), OUTSIDE)
    assert (who(result), lang) == (("anna", True), "fi")
    assert h.played() == [("sv", "vm-enter-mailbox"), ("sv", "vm-enter-pin")]


THREE_WRONG = ["vm-enter-mailbox"] + ["vm-enter-pin", "vm-pin-wrong"] * 3


async def test_an_unknown_number_is_still_asked_a_pin(h: Harness) -> None:
    h.press("vm-enter-mailbox", "0509999999#").press("vm-enter-pin", PIN + "#")
    result, _ = await h.run(login(h), OUTSIDE)
    assert result is None
    assert h.names() == THREE_WRONG
    assert h.state.audit() == []


async def test_who_is_not_eligible_is_an_unknown_number(h: Harness) -> None:
    has_voicemail = login(h, eligible=lambda u: u.has_voicemail)
    # Nora has no voicemail: from her own number she is not known, and her number is "unknown".
    h.press("vm-enter-mailbox", NORA + "#").press("vm-enter-pin", PIN + "#")
    result, _ = await h.run(has_voicemail, NORA)
    assert result is None
    assert h.names() == THREE_WRONG
    assert h.state.audit() == []


async def _heard(h: Harness, number: str, pins: list[str], channel_id: str) -> list[str]:
    """What a caller from OUTSIDE hears typing `number`, then `pins` (one per PIN prompt)."""
    h.press("vm-enter-mailbox", number + "#")
    for pin in pins:
        h.press("vm-enter-pin", pin + "#")
    result, _ = await h.run(login(h, verdict_seconds=0.2), OUTSIDE, channel_id=channel_id)
    assert result is None
    return h.names(channel_id)


async def test_a_real_an_unknown_and_a_locked_mailbox_sound_the_same(h: Harness) -> None:
    wrong = ["111111", "222222", "333333"]
    real = await _heard(h, ANNA, wrong, "c1")
    unknown = await _heard(h, "0509999999", wrong, "c2")
    lock(h.state, "mikko")
    locked = await _heard(h, MIKKO, [PIN, PIN, PIN], "c3")  # even the right PIN: refused alike
    assert real == unknown == locked == THREE_WRONG
    assert [e.event for e in h.state.audit("acme", "mikko", limit=3)] == ["pin_refused"] * 3


async def test_every_verdict_waits_the_same_floor_after_the_pin(h: Harness) -> None:
    """A checked PIN (a database write) and an unknown number's are said after the same pause."""
    for number, channel_id in ((ANNA, "c1"), ("0509999999", "c2")):
        await _heard(h, number, ["111111"], channel_id)
        starts = [at for at, name in h.timed(channel_id) if name in ("vm-enter-pin", "vm-pin-wrong")]
        assert starts[1] - starts[0] >= 0.2  # the "wrong" after the floor, never sooner


async def test_a_key_over_wrong_pin_is_the_next_pins_first_digit(h: Harness) -> None:
    h.press("vm-enter-mailbox", ANNA + "#").press("vm-enter-pin", "000000#").press("vm-pin-wrong", PIN + "#")
    result, _ = await h.run(login(h), OUTSIDE)
    assert who(result) == ("anna", True)
    # The key cut "wrong PIN" short and skipped the next "enter PIN": all six digits counted.
    assert h.names() == ["vm-enter-mailbox", "vm-enter-pin", "vm-pin-wrong"]
    assert [e.event for e in reversed(h.state.audit())] == ["pin_failed", "pin_ok"]


async def test_a_locked_user_known_by_number_hears_locked_before_any_pin(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    lock(h.state)
    result, _ = await h.run(login(h), ANNA)
    assert result is None
    assert h.names() == ["vm-locked"]


async def test_without_lock_first_a_locked_user_is_asked_a_pin_and_refused(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    lock(h.state)
    h.press("vm-enter-pin", PIN + "#")
    result, _ = await h.run(login(h, lock_first=False), ANNA)
    assert result is None  # the right PIN, but locked
    assert h.names() == ["vm-enter-pin", "vm-locked"]
    assert h.state.audit()[0].event == "pin_refused"


async def test_the_failure_that_locks_a_typed_mailbox_sounds_like_any_other(h: Harness) -> None:
    for _ in range(3):
        h.state.check_pin("acme", "anna", "000000", source="test")  # two failures from the lock
    h.press("vm-enter-mailbox", ANNA + "#").press("vm-enter-pin", "111111#").press("vm-enter-pin", "222222#")
    h.press("vm-enter-pin", PIN + "#")
    result, _ = await h.run(login(h), OUTSIDE)
    assert result is None
    assert h.names() == THREE_WRONG
    assert h.state.pin_status("acme", "anna").locked
    assert h.state.audit()[0].event == "pin_refused"


async def test_login_reaches_the_call_state_off_the_event_loop(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    for name in ("voicemail_settings", "pin_status", "check_pin"):
        real = getattr(h.state, name)

        def spy(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(h.state, name, spy)
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    h.press("vm-enter-pin", PIN + "#")
    result, _ = await h.run(login(h), ANNA)
    assert who(result) == ("anna", True)
    assert len(threads) == 3 and all(t.startswith("vipbx-blocking") for t in threads), threads


# ---------------------------------------------------------------------- menus


class Actions:
    """Actions that record which ran; "7" says a short confirmation, "5" ends the menu with "done"."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def menu(self, ivr: Ivr, **options: Any) -> Menu:
        async def record(key: str) -> None:
            self.ran.append(key)

        async def delete() -> None:
            self.ran.append("7")
            await ivr.say("vm-deleted")

        async def done() -> str:
            self.ran.append("5")
            return "done"

        actions = {"1": lambda: record("1"), "3": lambda: record("3"), "7": delete, "5": done, "*": leave}
        return Menu(actions, timeout=KEY_TIMEOUT, **options)


def menu_script(actions: Actions, **options: Any) -> Script:
    async def script(ivr: Ivr) -> Any:
        return await actions.menu(ivr, **options).run(ivr, ivr.prompt("vm-main-menu"), intro=ivr.prompt("vm-intro"))
    return script


async def test_keys_run_their_actions_until_one_returns(h: Harness) -> None:
    actions = Actions()
    h.press("vm-main-menu", "1").press("vm-main-menu", "3").press("vm-main-menu", "5")
    result, _ = await h.run(menu_script(actions))
    assert result == "done" and actions.ran == ["1", "3", "5"]
    # The intro in the first menu's playback; after each action the menu alone.
    assert h.names() == ["vm-intro", "vm-main-menu", "vm-main-menu", "vm-main-menu"]
    assert len(h.calls("POST", r"/channels/c1/play/.+")) == 3


async def test_the_repeat_key_says_the_menu_again_without_its_intro(h: Harness) -> None:
    actions = Actions()
    h.press("vm-main-menu", "0").press("vm-main-menu", "5")
    await h.run(menu_script(actions))
    assert h.names() == ["vm-intro", "vm-main-menu", "vm-main-menu"]
    assert actions.ran == ["5"]


async def test_without_a_repeat_key_zero_is_invalid(h: Harness) -> None:
    actions = Actions()
    h.press("vm-main-menu", "0").press("vm-main-menu", "5")
    await h.run(menu_script(actions, repeat_key=None))
    assert h.names() == ["vm-intro", "vm-main-menu", "vm-invalid-key", "vm-intro", "vm-main-menu"]


async def test_an_invalid_key_is_answered_and_the_menu_said_again(h: Harness) -> None:
    actions = Actions()
    h.press("vm-main-menu", "9").press("vm-main-menu", "#").press("vm-main-menu", "5")
    await h.run(menu_script(actions))
    # Until the first choice the intro comes with the menu.
    assert h.names() == ["vm-intro", "vm-main-menu", "vm-invalid-key", "vm-intro", "vm-main-menu", "vm-invalid-key",
                         "vm-intro", "vm-main-menu"]
    assert actions.ran == ["5"]


async def test_unanswered_menus_end_in_goodbye(h: Harness) -> None:
    actions = Actions()
    result, _ = await h.run(menu_script(actions))
    assert isinstance(result, Goodbye)
    assert h.names() == ["vm-intro", "vm-main-menu"] * 3


async def test_a_key_resets_the_unanswered_count(h: Harness) -> None:
    actions = Actions()
    # Silent, silent, invalid, silent, silent, silent: goodbye after the last three only.
    h.press("vm-main-menu", "").press("vm-main-menu", "").press("vm-main-menu", "9")
    result, _ = await h.run(menu_script(actions))
    assert isinstance(result, Goodbye)
    assert h.names().count("vm-main-menu") == 6


async def test_the_end_key_says_goodbye(h: Harness) -> None:
    h.press("vm-main-menu", "*")
    result, _ = await h.run(menu_script(Actions()))
    assert isinstance(result, Goodbye)


async def test_a_key_during_invalid_key_is_the_next_choice(h: Harness) -> None:
    actions = Actions()
    h.press("vm-main-menu", "9").press("vm-invalid-key", "1").press("vm-main-menu", "5")
    await h.run(menu_script(actions))
    assert actions.ran == ["1", "5"]
    # "1" cut "invalid key" short and chose at once: the menu was not said in between.
    assert h.names() == ["vm-intro", "vm-main-menu", "vm-invalid-key", "vm-main-menu"]


async def test_a_key_during_a_short_confirmation_is_the_next_choice(h: Harness) -> None:
    actions = Actions()
    h.press("vm-main-menu", "7").press("vm-deleted", "3").press("vm-main-menu", "5")
    await h.run(menu_script(actions))
    assert actions.ran == ["7", "3", "5"]
    assert h.names() == ["vm-intro", "vm-main-menu", "vm-deleted", "vm-main-menu"]


async def test_choose_returns_a_valid_key(h: Harness) -> None:
    actions = Actions()

    async def script(ivr: Ivr) -> str:
        return await actions.menu(ivr, repeat_key=None).choose(ivr, ivr.prompt("vm-message-menu"))

    h.press("vm-message-menu", "8").press("vm-message-menu", "3")
    result, _ = await h.run(script)
    assert result == "3" and actions.ran == []  # chosen, not run
    assert h.names() == ["vm-message-menu", "vm-invalid-key", "vm-message-menu"]


# ---------------------------------------------------------------------- saying


async def test_the_last_words_are_not_cut(h: Harness) -> None:
    async def script(ivr: Ivr) -> None:
        await ivr.announce("vm-locked")

    h.press("vm-locked", "5")
    await h.run(script)
    assert not h.calls("DELETE", r"/playbacks/.+")
