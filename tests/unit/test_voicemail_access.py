"""The voicemail access IVR (`Stasis(app,access)`) as the Stasis app runs it: the voicemail plugin's
real wiring over the fake ARI (real websocket for events, MockTransport REST), which presses keys
while a given prompt plays and records greetings; a real spool in a temporary folder and a real
call-state service on a temporary SQLite file. Every key of both menus, the logins, and that a
stalled database or mailbox lock holds up only its own call."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import threading
import wave
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from callstate_support import FakeClock
from people import PIN, TRUNKS, user, via
from pluginharness import PluginHarness, running

from ari_app.client import AriClient
from ari_app.testing import FakeAri, channel
from ari_app.voicemail import access
from ari_app.voicemail import plugin as voicemail_plugin
from base.model import Config, Platform, Tenant
from callstate import CallStateService, VoicemailSettings
from vmstore import Envelope, VoicemailStore
from vmstore import store as store_module

ANNA, MIKKO, NORA = "+358401110001", "+358401110002", "+358401110003"
OUTSIDE = "+358501234567"
CONFIG = Config(
    platform=Platform(default_language="sv", trunks=TRUNKS),
    tenants=(Tenant(id="acme", name="Acme", domain="acme.example",
                    users=(user("anna", ANNA, "101", "fi"), user("mikko", MIKKO, "102", "en"),
                           user("nora", NORA, "103", "fi", no_voicemail=True))),),
)
BOX = CONFIG.tenants[0].users[0].mailbox  # anna's
MAIN = "vm-main-menu"
MESSAGE_MENU = "vm-message-menu"
NO_MESSAGES = ["vm-no-messages"]  # the counts of an empty mailbox, in Finnish
TWO_NEW = ["vm-you-have", "num-2", "vm-new-n"]
THREE_NEW = ["vm-you-have", "num-3", "vm-new-n"]
ENVELOPE_FIRST = "vm-message-from"  # an envelope's first prompt; the message follows it
STALL_LIMIT = 2.0  # the longest a stalled database or lock holds up its own call here


def write_wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\1" * int(8000 * seconds))


class Harness(PluginHarness):
    """The voicemail plugin's entries over the fake ARI. Per channel, `press(prompt, keys)` queues
    keys pressed while the next playback holding `prompt` plays (keys "" let one pass). Playbacks
    are recorded as labels: a prompt's name, `msg:INBOX/msg0000` for a message (its envelope
    left out), `greeting:unavail` for an own greeting, `recording` for a recording played back
    (and `recording started` when a recording begins)."""

    def __init__(self, fake: FakeAri, client: AriClient, state: CallStateService, tmp: Path) -> None:
        super().__init__(fake, client, state, tmp / "sounds", voicemail_plugin, CONFIG)
        self.store = VoicemailStore(tmp / "spool")  # the plugin's spool
        self.recordings = tmp / "recording"
        self.script: dict[str, list[tuple[str, str]]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.order: list[tuple[str, str]] = []  # (channel, label) as played; other events too
        self.envelopes: dict[str, list[list[str]]] = {}  # channel → what was said before each message
        self.snapshots: list[tuple[str, str, dict[str, tuple[str, int]]]] = []  # (channel, label, where)
        self.greeting_seconds = 2.0  # how long the caller speaks when recording
        self.keys_while_recording = "#"
        self.hang_up_at: dict[str, str] = {}  # channel → the prompt during which the caller hangs up
        fake.route("POST", r"/channels/([^/]+)/record", self._record)

    def press(self, prompt: str, keys: str, channel_id: str = "c1") -> Harness:
        self.script.setdefault(channel_id, []).append((prompt, keys))
        return self

    def seed(self, msg_ids: str, box: str = BOX, folder: str = "INBOX") -> None:
        for msg_id in msg_ids:
            envelope = Envelope(caller_number=OUTSIDE, caller_name=None, called_number=ANNA,
                                orig_time=datetime(2024, 3, 5, 9, 30, tzinfo=UTC), duration=1, msg_id=msg_id)
            audio = self.sounds.parent / "in" / f"{msg_id}.wav"
            write_wav(audio, 1)
            message = self.store.add("acme", box, audio, envelope)
            if folder == "Old":
                self.store.mark_old(message)

    def where(self, box: str = BOX) -> dict[str, tuple[str, int]]:
        """msg_id → (folder, number) of every message in the mailbox, now."""
        return {m.envelope.msg_id: (m.folder, m.number)
                for folder in ("INBOX", "Old") for m in self.store.list("acme", box, folder)}

    def greeting(self, box: str = BOX) -> Path | None:
        return self.store.greeting("acme", box)

    # --- what the fake Asterisk does --------------------------------------------------

    def label(self, uri: str) -> str:
        path = Path(uri.removeprefix("sound:"))
        if path.is_relative_to(self.sounds):
            return path.name
        if path.is_relative_to(self.recordings):
            return "recording"
        if path.parent.name in ("INBOX", "Old"):
            return f"msg:{path.parent.name}/{path.name}"
        return f"greeting:{path.name}"

    def labels(self, request: httpx.Request, channel_id: str) -> list[str]:
        labels = [self.label(uri) for uri in request.url.params["media"].split(",")]
        if any(label.startswith("msg:") for label in labels):
            self.envelopes.setdefault(channel_id, []).append(labels[:-1])
            return labels[-1:]
        return labels

    async def playing(self, channel_id: str, playback_id: str, request: httpx.Request) -> None:
        labels = self.labels(request, channel_id)
        for label in labels:
            self.order.append((channel_id, label))
            self.snapshots.append((channel_id, label, self.where()))
        if self.hang_up_at.get(channel_id) in labels:
            await self.fake.send({"type": "StasisEnd", "channel": self.channels[channel_id]})
            return
        script = self.script.get(channel_id)
        if script and script[0][0] in labels:
            for key in script.pop(0)[1]:  # pressed while the prompt plays: before its end
                await self.dtmf(channel_id, key)
        await super().playing(channel_id, playback_id, request)

    async def dtmf(self, channel_id: str, key: str) -> None:
        await self.fake.send({"type": "ChannelDtmfReceived", "digit": key, "channel": self.channels[channel_id]})

    def _record(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        channel_id, name = match.group(1), request.url.params["name"]
        write_wav(self.recordings / f"{name}.wav", self.greeting_seconds)
        self.order.append((channel_id, "recording started"))

        async def finish() -> None:
            for key in self.keys_while_recording:  # e.g. the # that ends it: queued before the end
                await self.dtmf(channel_id, key)
            await self.fake.send({"type": "RecordingFinished", "recording": {
                "name": name, "target_uri": f"channel:{channel_id}", "state": "done"}})

        asyncio.get_running_loop().create_task(finish())
        return httpx.Response(201, json={"name": name, "target_uri": f"channel:{channel_id}", "state": "queued"})

    # --- calls ------------------------------------------------------------------------

    async def dial(self, number: str = ANNA, *, device: str | None = None, channel_id: str = "c1",
                   trunk: str | None = "carrier") -> None:
        """A call from `number` (from anna's or another user's device when `device` names the user)
        enters Stasis(vipbx,access)."""
        chan = channel(channel_id, app_data="vipbx,access", number=number)
        chan["channelvars"] = via(trunk)
        if device is not None:
            chan["channelvars"] = {"VIPBX_TENANT": "acme", "VIPBX_USER": device}
        self.channels[channel_id] = chan
        self.fake.channels[channel_id] = chan
        await self.fake.send({"type": "StasisStart", "args": ["access"], "channel": chan})

    async def ended(self, channel_id: str = "c1") -> None:
        """Until the handler of the call is done: it said goodbye and hung up."""
        await self.until(lambda: channel_id not in self.app.sessions
                         and bool(self.fake.calls("DELETE", f"/channels/{channel_id}")))
        assert not self.script.get(channel_id), f"keys never asked for: {self.script[channel_id]}"

    async def call(self, number: str = ANNA, *, device: str | None = None, channel_id: str = "c1",
                   trunk: str | None = "carrier") -> list[str]:
        """A whole call (through `trunk` unless from a device); what it heard."""
        await self.dial(number, device=device, channel_id=channel_id, trunk=trunk)
        await self.ended(channel_id)
        return self.names(channel_id)

    def names(self, channel_id: str = "c1") -> list[str]:
        return [label for chan, label in self.order if chan == channel_id]

    def langs(self, channel_id: str = "c1") -> list[str]:
        return [lang for lang, _ in self.prompts(channel_id)]

    def prompts(self, channel_id: str = "c1") -> list[tuple[str, str]]:
        """(language, name) of every catalogue prompt played."""
        out = []
        for request in self.calls("POST", rf"/channels/{channel_id}/play/.+"):
            for uri in request.url.params["media"].split(","):
                path = Path(uri.removeprefix("sound:"))
                if path.is_relative_to(self.sounds):
                    out.append((path.parent.name, path.name))
        return out

    def at(self, label: str, nth: int = 0, channel_id: str = "c1") -> dict[str, tuple[str, int]]:
        """The mailbox as it was when `label` played (the nth time) on the channel."""
        return [where for chan, name, where in self.snapshots if chan == channel_id and name == label][nth]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG, clock=FakeClock()) as service:
        yield service


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch, state: CallStateService, tmp_path: Path) -> AsyncIterator[Harness]:
    monkeypatch.setattr(access, "KEY_TIMEOUT", 0.25)  # an unanswered prompt, quickly
    async with running(lambda fake, client: Harness(fake, client, state, tmp_path), monkeypatch) as harness:
        yield harness


def hung_up_by_us(h: Harness, channel_id: str = "c1") -> bool:
    return bool(h.calls("POST", f"/channels/{channel_id}/answer")) and bool(h.calls("DELETE", f"/channels/{channel_id}"))


# ---------------------------------------------------------------------- login


async def test_own_number_opens_the_mailbox_at_once(h: Harness) -> None:
    h.press(MAIN, "*")
    assert await h.call(ANNA) == [*NO_MESSAGES, MAIN, "vm-goodbye"]
    assert set(h.langs()) == {"fi"}  # anna's language throughout
    assert hung_up_by_us(h)
    assert h.state.audit() == []  # no PIN event either


async def test_own_device_opens_the_mailbox_at_once(h: Harness) -> None:
    h.press(MAIN, "*")
    assert await h.call("101", device="anna") == [*NO_MESSAGES, MAIN, "vm-goodbye"]


async def test_always_ask_pin_asks_the_own_number(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    h.press("vm-enter-pin", PIN + "#").press(MAIN, "*")
    assert await h.call(ANNA) == ["vm-enter-pin", *NO_MESSAGES, MAIN, "vm-goodbye"]  # no mailbox asked
    assert set(h.langs()) == {"fi"}
    [ok] = [e for e in h.state.audit() if e.field == "pin"]
    assert (ok.event, ok.actor, ok.source) == ("pin_ok", ANNA, "ivr")


async def test_another_number_gives_mailbox_number_and_pin(h: Harness) -> None:
    h.press("vm-enter-mailbox", "0401110001#").press("vm-enter-pin", "000000#")
    h.press("vm-enter-pin", PIN + "#").press(MAIN, "*")
    assert await h.call(OUTSIDE) == ["vm-enter-mailbox", "vm-enter-pin", "vm-pin-wrong", "vm-enter-pin",
                                     *NO_MESSAGES, MAIN, "vm-goodbye"]
    # In the platform's language until the mailbox is known, then in anna's.
    assert h.langs() == ["sv", "sv", "sv", "sv", "fi", "fi", "fi"]
    assert [(e.event, e.actor) for e in reversed(h.state.audit())] == [("pin_failed", OUTSIDE), ("pin_ok", OUTSIDE)]


async def test_a_pin_typed_over_the_wrong_pin_prompt_is_kept(h: Harness) -> None:
    h.press("vm-enter-mailbox", ANNA + "#").press("vm-enter-pin", "000000#")
    h.press("vm-pin-wrong", PIN + "#").press(MAIN, "*")
    assert await h.call(OUTSIDE) == ["vm-enter-mailbox", "vm-enter-pin", "vm-pin-wrong", *NO_MESSAGES, MAIN,
                                     "vm-goodbye"]


async def test_three_wrong_pins_end_the_call(h: Harness) -> None:
    h.press("vm-enter-mailbox", ANNA + "#")
    for _ in range(3):
        h.press("vm-enter-pin", "999999#")
    assert await h.call(OUTSIDE) == ["vm-enter-mailbox", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
    status = h.state.pin_status("acme", "anna")
    assert (status.failures, status.locked) == (3, False)


async def test_a_locked_own_number_is_refused_before_any_pin(h: Harness) -> None:
    h.state.update_voicemail_settings("acme", "anna", actor="op", source="cli", always_ask_pin=True)
    while not h.state.pin_status("acme", "anna").locked:
        h.state.check_pin("acme", "anna", "000000", source="test")
    audited = len(h.state.audit())
    assert await h.call(ANNA) == ["vm-locked", "vm-goodbye"]
    assert len(h.state.audit()) == audited  # no PIN was taken


async def test_a_locked_typed_mailbox_sounds_like_a_wrong_pin(h: Harness) -> None:
    while not h.state.pin_status("acme", "anna").locked:
        h.state.check_pin("acme", "anna", "000000", source="test")
    h.press("vm-enter-mailbox", ANNA + "#")
    for _ in range(3):
        h.press("vm-enter-pin", PIN + "#")
    assert await h.call(OUTSIDE) == ["vm-enter-mailbox", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
    assert [e.event for e in h.state.audit(limit=3)] == ["pin_refused"] * 3


async def test_the_fifth_wrong_pin_locks_during_the_call_without_saying_so(h: Harness) -> None:
    for _ in range(3):
        h.state.check_pin("acme", "anna", "000000", source="test")
    h.press("vm-enter-mailbox", ANNA + "#").press("vm-enter-pin", "111111#").press("vm-enter-pin", "222222#")
    h.press("vm-enter-pin", "333333#")
    assert await h.call(OUTSIDE) == ["vm-enter-mailbox", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
    assert h.state.pin_status("acme", "anna").locked


async def test_a_user_without_voicemail_has_no_mailbox(h: Harness) -> None:
    # Not logged in by her own number; her number typed is as unknown as any: a PIN, then "wrong".
    h.press("vm-enter-mailbox", NORA + "#")
    for _ in range(3):
        h.press("vm-enter-pin", PIN + "#")
    assert await h.call(NORA) == ["vm-enter-mailbox", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
    assert h.state.audit() == []


# ---------------------------------------------------------------------- the main menu


async def test_0_repeats_the_menu_without_the_counts(h: Harness) -> None:
    h.seed("abc")
    h.press(MAIN, "0").press(MAIN, "*")
    assert await h.call() == [*THREE_NEW, MAIN, MAIN, "vm-goodbye"]
    assert h.where() == {"a": ("INBOX", 0), "b": ("INBOX", 1), "c": ("INBOX", 2)}


async def test_invalid_keys_are_answered(h: Harness) -> None:
    h.press(MAIN, "9").press(MAIN, "#").press(MAIN, "3").press(MAIN, "*")
    # Until the first choice the counts come with the menu.
    assert await h.call() == [*NO_MESSAGES, MAIN, "vm-invalid-key", *NO_MESSAGES, MAIN, "vm-invalid-key",
                              *NO_MESSAGES, MAIN, "vm-invalid-key", *NO_MESSAGES, MAIN, "vm-goodbye"]


async def test_a_key_during_invalid_key_is_the_next_choice(h: Harness) -> None:
    h.press(MAIN, "9").press("vm-invalid-key", "4").press(MAIN, "*")  # 4: no greeting, then the menu
    assert await h.call() == [*NO_MESSAGES, MAIN, "vm-invalid-key", "vm-no-greeting", MAIN, "vm-goodbye"]


async def test_an_unanswered_menu_says_goodbye(h: Harness) -> None:
    assert await h.call() == [*NO_MESSAGES, MAIN] * 3 + ["vm-goodbye"]
    assert hung_up_by_us(h)


async def test_1_and_2_with_empty_folders(h: Harness) -> None:
    h.press(MAIN, "1").press(MAIN, "2").press(MAIN, "*")
    assert await h.call() == [*NO_MESSAGES, MAIN, "vm-no-new-messages", MAIN, "vm-no-old-messages", MAIN,
                              "vm-goodbye"]


async def test_4_without_an_own_greeting(h: Harness) -> None:
    h.press(MAIN, "4").press(MAIN, "*")
    assert await h.call() == [*NO_MESSAGES, MAIN, "vm-no-greeting", MAIN, "vm-goodbye"]


async def test_5_records_plays_back_and_saves_the_greeting_and_4_plays_it(h: Harness) -> None:
    h.press(MAIN, "5").press(MAIN, "4").press(MAIN, "*")
    heard = await h.call()
    # The # that ended the recording is not taken as a key: it would cut the playback short.
    assert heard == [*NO_MESSAGES, MAIN, "vm-greeting-record-after-beep", "recording started", "recording",
                     "vm-greeting-saved", MAIN, "greeting:unavail", MAIN, "vm-goodbye"]
    greeting = h.greeting()
    assert greeting is not None and greeting.name == "unavail.wav"
    with wave.open(str(greeting)) as saved:
        assert saved.getnframes() == 2 * 8000
    assert not [p for p in h.recordings.rglob("*.wav")]  # moved in, nothing left behind
    [record] = h.calls("POST", "/channels/c1/record")
    assert record.url.params["terminateOn"] == "#" and record.url.params["maxDurationSeconds"] == "60"


async def test_5_with_a_recording_too_short_keeps_no_greeting(h: Harness) -> None:
    h.greeting_seconds = 0.4
    h.press(MAIN, "5").press(MAIN, "*")
    heard = await h.call()
    assert heard == [*NO_MESSAGES, MAIN, "vm-greeting-record-after-beep", "recording started",
                     "vm-greeting-too-short", MAIN, "vm-goodbye"]
    assert h.greeting() is None and not [p for p in h.recordings.rglob("*.wav")]


async def test_a_key_during_the_recorded_greeting_is_the_next_choice(h: Harness) -> None:
    h.press(MAIN, "5").press("recording", "*")
    heard = await h.call()
    assert heard[-3:] == ["recording started", "recording", "vm-goodbye"]  # "saved" and the menu skipped
    assert h.greeting() is not None  # saved all the same


async def test_6_deletes_the_greeting(h: Harness) -> None:
    h.press(MAIN, "5").press(MAIN, "6").press(MAIN, "4").press(MAIN, "*")
    heard = await h.call()
    assert heard[-6:] == [MAIN, "vm-greeting-deleted", MAIN, "vm-no-greeting", MAIN, "vm-goodbye"]
    assert h.greeting() is None
    assert not list(h.store.mailbox_dir("acme", BOX).glob("unavail.*"))
    assert not list(h.store.mailbox_dir("acme", BOX).glob("busy.*"))


async def test_a_key_during_greeting_deleted_is_the_next_choice(h: Harness) -> None:
    h.press(MAIN, "6").press("vm-greeting-deleted", "*")
    assert await h.call() == [*NO_MESSAGES, MAIN, "vm-greeting-deleted", "vm-goodbye"]


# ---------------------------------------------------------------------- the message menu


async def test_3_next_makes_the_message_left_old(h: Harness) -> None:
    h.seed("abc")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "").press(MESSAGE_MENU, "3")  # heard to its end
    h.press("msg:INBOX/msg0000", "*")  # b, now first in INBOX: * during it
    assert await h.call() == [*THREE_NEW, MAIN, "msg:INBOX/msg0000", MESSAGE_MENU, "msg:INBOX/msg0000",
                              "vm-goodbye"]
    assert h.at(MESSAGE_MENU) == {"a": ("INBOX", 0), "b": ("INBOX", 1), "c": ("INBOX", 2)}  # still on it
    assert h.at("msg:INBOX/msg0000", 1) == {"b": ("INBOX", 0), "c": ("INBOX", 1), "a": ("Old", 0)}
    assert h.where() == {"c": ("INBOX", 0), "a": ("Old", 0), "b": ("Old", 1)}  # * left b: heard, old


async def test_the_envelope_is_said_before_each_message(h: Harness) -> None:
    h.seed("a")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "*")
    await h.call()
    [envelope] = h.envelopes["c1"]
    assert envelope[0] == ENVELOPE_FIRST and "vm-received-at" in envelope
    assert envelope[1:3] == ["plus", "digit-3"]  # the caller's number, digit by digit


async def test_2_replays_and_the_message_stays_new_meanwhile(h: Harness) -> None:
    h.seed("ab")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "2").press("msg:INBOX/msg0000", "0").press(MAIN, "*")
    assert await h.call() == [*TWO_NEW, MAIN, "msg:INBOX/msg0000", "msg:INBOX/msg0000", MAIN, "vm-goodbye"]
    assert h.at("msg:INBOX/msg0000", 1) == {"a": ("INBOX", 0), "b": ("INBOX", 1)}  # replayed: still new
    assert h.at(MAIN, 1) == {"b": ("INBOX", 0), "a": ("Old", 0)}  # 0 left it: old


async def test_1_previous_goes_back_and_the_first_says_so(h: Harness) -> None:
    h.seed("ab")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "1")  # previous on the first
    h.press("msg:INBOX/msg0000", "3").press("msg:INBOX/msg0000", "1")
    h.press("msg:Old/msg0000", "0").press(MAIN, "*")
    assert await h.call() == [*TWO_NEW, MAIN, "msg:INBOX/msg0000",
                              "vm-first-message", "msg:INBOX/msg0000", "msg:INBOX/msg0000", "msg:Old/msg0000",
                              MAIN, "vm-goodbye"]
    # Back to a (moved to Old when left), and b, left for it, went to Old too.
    assert h.at("msg:Old/msg0000") == {"a": ("Old", 0), "b": ("Old", 1)}
    assert h.where() == {"a": ("Old", 0), "b": ("Old", 1)}


async def test_3_on_the_last_message_goes_back_to_the_main_menu(h: Harness) -> None:
    h.seed("a")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "3").press(MAIN, "*")
    assert await h.call() == ["vm-you-have", "vm-new-1", MAIN, "msg:INBOX/msg0000", "vm-no-more-messages", MAIN,
                              "vm-goodbye"]
    assert h.at("vm-no-more-messages") == {"a": ("INBOX", 0)}  # not left yet ...
    assert h.where() == {"a": ("Old", 0)}  # ... until the folder was


async def test_7_deletes_the_file_and_the_next_message_plays(h: Harness) -> None:
    h.seed("abc")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "7").press("msg:INBOX/msg0000", "*")
    assert await h.call() == [*THREE_NEW, MAIN, "msg:INBOX/msg0000", "vm-deleted", "msg:INBOX/msg0000",
                              "vm-goodbye"]
    assert h.store.find("acme", BOX, "a") is None
    box = h.store.mailbox_dir("acme", BOX)
    assert sorted(str(p.relative_to(box)) for p in box.glob("*/msg*")) == [
        "INBOX/msg0000.txt", "INBOX/msg0000.wav", "Old/msg0000.txt", "Old/msg0000.wav"]  # a's files gone
    assert h.at("vm-deleted") == {"b": ("INBOX", 0), "c": ("INBOX", 1)}
    assert h.where() == {"c": ("INBOX", 0), "b": ("Old", 0)}


async def test_7_on_the_last_message_goes_back_to_the_main_menu(h: Harness) -> None:
    h.seed("a", folder="Old")
    h.press(MAIN, "2").press("msg:Old/msg0000", "7").press(MAIN, "*")
    assert await h.call() == ["vm-no-new-messages", "vm-you-have", "vm-old-1", MAIN, "msg:Old/msg0000",
                              "vm-deleted", "vm-no-more-messages", MAIN, "vm-goodbye"]
    assert h.where() == {}


async def test_a_key_during_deleted_answers_for_the_next_message_unheard(h: Harness) -> None:
    h.seed("abc")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "7").press("vm-deleted", "3")  # 3: skip b unheard
    h.press("msg:INBOX/msg0001", "*")
    assert await h.call() == [*THREE_NEW, MAIN, "msg:INBOX/msg0000", "vm-deleted", "msg:INBOX/msg0001",
                              "vm-goodbye"]
    assert h.where() == {"b": ("INBOX", 0), "c": ("Old", 0)}  # b was never heard: still new


async def test_a_key_during_no_more_messages_is_the_next_main_menu_choice(h: Harness) -> None:
    h.seed("a")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "3").press("vm-no-more-messages", "*")
    assert await h.call() == ["vm-you-have", "vm-new-1", MAIN, "msg:INBOX/msg0000", "vm-no-more-messages",
                              "vm-goodbye"]
    assert h.where() == {"a": ("Old", 0)}


async def test_an_invalid_key_in_the_message_menu_is_answered(h: Harness) -> None:
    h.seed("a")
    h.press(MAIN, "1").press("msg:INBOX/msg0000", "9").press(MESSAGE_MENU, "0")
    h.press(MAIN, "*")
    assert await h.call() == ["vm-you-have", "vm-new-1", MAIN, "msg:INBOX/msg0000", "vm-invalid-key",
                              MESSAGE_MENU, MAIN, "vm-goodbye"]


async def test_an_unanswered_message_menu_says_goodbye_and_the_message_is_old(h: Harness) -> None:
    h.seed("ab")
    h.press(MAIN, "1")
    assert await h.call() == [*TWO_NEW, MAIN, "msg:INBOX/msg0000", MESSAGE_MENU, MESSAGE_MENU, MESSAGE_MENU,
                              "vm-goodbye"]
    assert h.where() == {"b": ("INBOX", 0), "a": ("Old", 0)}


async def test_a_hang_up_in_the_message_menu_still_makes_the_message_heard_old(h: Harness) -> None:
    h.seed("ab")
    h.press(MAIN, "1")
    h.hang_up_at["c1"] = MESSAGE_MENU
    await h.dial()
    await h.until(lambda: h.where() == {"b": ("INBOX", 0), "a": ("Old", 0)})
    await h.until(lambda: "c1" not in h.app.sessions)
    assert h.names() == [*TWO_NEW, MAIN, "msg:INBOX/msg0000", MESSAGE_MENU]
    assert not h.calls("DELETE", "/channels/c1")  # the caller hung up, not us


# ---------------------------------------------------------------------- a stall holds up one call only


class Stall:
    """Blocking work of one call held up in a worker thread until `release` (or STALL_LIMIT s),
    noted in the harness's order of events as ("stall", "entered") and ("stall", "released")."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        self.h.order.append(("stall", "entered"))
        self.entered.set()
        self.release.wait(STALL_LIMIT)
        self.h.order.append(("stall", "released"))


async def b_is_answered_while_a_stalls(h: Harness, stall: Stall) -> None:
    """Call B (mikko, channel c2) waits in its main menu; call A (anna, c1) is stalled; B's key 4
    must be answered, and A finish only after the stall is released."""
    h.press(MAIN, "", "c2").press(MAIN, "*", "c2")
    await h.dial(MIKKO, channel_id="c2")
    await h.until(lambda: MAIN in h.names("c2"))
    await h.dial(ANNA, channel_id="c1")
    await h.until(stall.entered.is_set)
    await h.dtmf("c2", "4")
    await h.until(lambda: "vm-no-greeting" in h.names("c2"))
    stall.release.set()
    await h.ended("c2")
    await h.ended("c1")
    order = h.order
    assert order.index(("c2", "vm-no-greeting")) < order.index(("stall", "released"))
    assert order.index(("stall", "released")) < order.index(("c1", "vm-goodbye"))


async def test_a_stalled_database_holds_up_only_its_own_call(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "KEY_TIMEOUT", 5.0)  # B waits in its menu for the key the test sends
    stall = Stall(h)
    real = h.state.voicemail_settings

    def stalled(tenant_id: str, user_id: str) -> VoicemailSettings:
        if user_id == "anna":  # A's login: does anna want the PIN always?
            stall.hold()
        return real(tenant_id, user_id)

    monkeypatch.setattr(h.state, "voicemail_settings", stalled)
    h.press(MAIN, "*", "c1")
    await b_is_answered_while_a_stalls(h, stall)
    assert h.names("c1") == [*NO_MESSAGES, MAIN, "vm-goodbye"]  # A went on once released
    assert h.names("c2") == ["vm-no-messages", MAIN, "vm-no-greeting", MAIN, "vm-goodbye"]


async def test_a_locked_mailbox_holds_up_only_its_own_call(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "KEY_TIMEOUT", 5.0)
    h.seed("a")
    stall = Stall(h)
    lock_file = h.store.mailbox_dir("acme", BOX) / ".vipbx.lock"
    locked = threading.Event()

    def holder() -> None:  # another process's hold on anna's mailbox, as the kernel sees it
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked.set()
            stall.release.wait(STALL_LIMIT)
            h.order.append(("stall", "released"))
        finally:
            os.close(fd)

    real_lock = store_module.mailbox_lock

    def watched(*args: Any, **kwargs: Any) -> Any:
        if locked.is_set() and not stall.entered.is_set():  # A's delete, about to wait for the lock
            h.order.append(("stall", "entered"))
            stall.entered.set()
        return real_lock(*args, **kwargs)

    monkeypatch.setattr(store_module, "mailbox_lock", watched)
    thread = threading.Thread(target=holder)
    # A: into new messages, 7 during the first: the delete waits for the lock.
    h.press(MAIN, "1", "c1").press("msg:INBOX/msg0000", "7", "c1").press(MAIN, "*", "c1")
    h.press(MAIN, "", "c2").press(MAIN, "*", "c2")
    await h.dial(MIKKO, channel_id="c2")
    await h.until(lambda: MAIN in h.names("c2"))
    thread.start()
    await h.until(locked.is_set)
    await h.dial(ANNA, channel_id="c1")
    await h.until(stall.entered.is_set)
    await h.dtmf("c2", "4")
    await h.until(lambda: "vm-no-greeting" in h.names("c2"))
    stall.release.set()
    await h.ended("c2")
    await h.ended("c1")
    thread.join()
    order = h.order
    assert order.index(("c2", "vm-no-greeting")) < order.index(("stall", "released"))
    assert order.index(("stall", "released")) < order.index(("c1", "vm-deleted"))
    assert h.names("c1")[-4:] == ["vm-deleted", "vm-no-more-messages", MAIN, "vm-goodbye"]
    assert h.where() == {}


# ---------------------------------------------------------------------- leaving a message on a full disk


async def deposit(h: Harness, channel_id: str = "d1") -> list[str]:
    """A caller leaves a message for anna (the PBX's routing sent the call to voicemail)."""
    chan = channel(channel_id, app_data="vipbx,deposit,acme,anna,noanswer", number=OUTSIDE)
    h.channels[channel_id] = chan
    h.fake.channels[channel_id] = chan
    await h.fake.send({"type": "StasisStart", "args": ["deposit", "acme", "anna", "noanswer"], "channel": chan})
    await h.until(lambda: channel_id not in h.app.sessions and bool(h.fake.calls("DELETE", f"/channels/{channel_id}")))
    return [name for _, name in h.played(channel_id)]


def journal_files(h: Harness) -> list[str]:
    return sorted(p.suffix for p in h.recordings.rglob("*") if p.is_file())


async def test_a_message_the_full_disk_cannot_take_is_told_and_kept_for_the_next_scan(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module, "_write_durable", full)
    heard = await deposit(h)
    assert heard[-1] == "vm-message-not-saved" and "vm-message-saved" not in heard
    assert h.store.counts("acme", BOX) == (0, 0)
    assert journal_files(h) == [".json", ".wav"]  # the recording and its entry wait for the scan


async def test_no_room_for_the_journal_entry_is_told_before_recording(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmstore import journal as journal_module

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module.json, "dump", full)
    heard = await deposit(h)
    assert heard[-1] == "vm-message-not-saved"
    assert not h.fake.calls("POST", r"/channels/d1/record")  # nothing recorded that could be lost


async def test_a_recording_the_full_disk_kept_too_little_of_is_told_not_saved(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asterisk reports a recording whose writes failed as finished, with what it wrote: 0.3 s.
    The disk is full now: that is why, and the caller is told."""
    from vmstore import Recordings

    # Room before the recording starts, none once it has run.
    monkeypatch.setattr(Recordings, "space_left",
                        lambda self: 0 if ("d1", "recording started") in h.order else 10 << 20)
    h.greeting_seconds = 0.3
    heard = await deposit(h)
    assert heard[-1] == "vm-message-not-saved"
    assert h.store.counts("acme", BOX) == (0, 0) and journal_files(h) == []


async def test_a_full_disk_is_told_before_recording(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmstore import Recordings

    monkeypatch.setattr(Recordings, "space_left", lambda self: 1000)
    heard = await deposit(h)
    assert heard[-1] == "vm-message-not-saved"
    assert not h.fake.calls("POST", r"/channels/d1/record") and journal_files(h) == []


async def test_a_short_recording_is_no_message_and_no_complaint(h: Harness) -> None:
    h.greeting_seconds = 0.3
    heard = await deposit(h)
    assert heard[-1] == "vm-goodbye" and "vm-message-not-saved" not in heard
