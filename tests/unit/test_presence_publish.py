"""Presence as Asterisk sees it: the `CustomPresence:` ids and values, publishing them over AMI (to
a small fake AMI server on 127.0.0.1), the end-time timer's publishing, and the greeting's
activity sentence."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from callstate_support import T0, FakeClock
from people import user

from ari_app.presence import services as services_module
from ari_app.presence.asterisk import presence_id, presence_value, publish
from ari_app.presence.services import PresenceService
from base.ami import AmiSettings
from base.model import DEFAULT_ACTIVITIES, Activity, Config, Platform, Tenant
from callstate import CallStateService, Presence, StorageError
from prompts import speech

HELSINKI = ZoneInfo("Europe/Helsinki")



ACME = Tenant(id="acme", name="Acme", domain="acme.example",
              users=(user("anna.virtanen", "+358401110001", "101"), user("mikko", "+358401110002", "102", "en")))
NORDIC = Tenant(id="nordic", name="Nordic", domain="nordic.example",
                activities=(Activity("available", "1", "chat"), Activity("training", "2", "away", "+358501234567")),
                users=(user("olli", "+358502220001", "301"),))
CONFIG = Config(platform=Platform(), tenants=(ACME, NORDIC))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------------- ids and values


def test_presence_id() -> None:
    assert presence_id("acme", "anna.virtanen") == "acme+anna.virtanen"
    assert presence_id("nordic", "olli") == "nordic+olli"


@pytest.mark.parametrize("activity", DEFAULT_ACTIVITIES, ids=lambda a: a.key)
def test_each_activity_shows_its_state(activity: Activity) -> None:
    assert presence_value(ACME, Presence(activity.key)) == f"{activity.presence},,,e"


def test_values_of_the_default_list() -> None:
    assert presence_value(ACME, Presence()) == "available,,,e"
    assert presence_value(ACME, Presence("busy")) == "dnd,,,e"
    assert presence_value(ACME, Presence("lunch")) == "away,,,e"
    assert presence_value(ACME, Presence("vacation", T0)) == "xa,,,e"  # the end time is not shown


def test_a_tenants_own_states_and_unknown_activities() -> None:
    assert presence_value(NORDIC, Presence()) == "chat,,,e"
    assert presence_value(NORDIC, Presence("training")) == "away,,,e"
    assert presence_value(NORDIC, Presence("vacation")) == "available,,,e"  # not in nordic's list


def test_the_note_goes_base64() -> None:
    value = presence_value(ACME, Presence("meeting", None, "Neuvottelu ÄÖ, huone 3"))
    assert value == f"dnd,,{b64('Neuvottelu ÄÖ, huone 3')},e"
    assert base64.b64decode(value.split(",")[2]).decode() == "Neuvottelu ÄÖ, huone 3"


@pytest.mark.parametrize("note", ["a,b,c", "line\nbreak", "crlf\r\nAction: Logoff", "x" * 100, "e,e,e,",
                                  "ääkköset 🙂", '"quoted" ${EXTEN} $[1+1]'])
def test_no_note_can_break_the_value(note: str) -> None:
    value = presence_value(ACME, Presence("busy", None, note))
    state, subtype, message, options = value.split(",")
    assert (state, subtype, options) == ("dnd", "", "e")
    assert base64.b64decode(message, validate=True).decode() == note
    assert value.isprintable() and not set(value) & set("\r\n ;|&()")


# ---------------------------------------------------------------------- a fake AMI


@dataclass
class FakeAmi:
    """Enough of AMI for panoramisk: the banner, Login (Success unless `refuse_login`), and any other
    action recorded and answered Success (Error for `fail_action`)."""

    actions: list[dict[str, str]] = field(default_factory=list)
    refuse_login: bool = False
    fail_action: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            fields = dict(line.split(": ", 1) for line in raw.decode().strip().split("\r\n") if ": " in line)
            self.actions.append(fields)
            action = fields.get("Action", "")
            ok = not (self.refuse_login if action == "Login" else action == self.fail_action)
            answer, message = ("Success", "ok") if ok else ("Error", "refused")
            writer.write(f"Response: {answer}\r\nActionID: {fields.get('ActionID', '')}\r\n"
                         f"Message: {message}\r\n\r\n".encode())
            await writer.drain()
        writer.close()

    def setvars(self) -> list[tuple[str, str]]:
        return [(a["Variable"], a["Value"]) for a in self.actions if a.get("Action") == "Setvar"]


@pytest.fixture
async def ami() -> AsyncIterator[tuple[FakeAmi, AmiSettings]]:
    fake = FakeAmi()
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield fake, AmiSettings("127.0.0.1", port, "vipbx", "s3cret")


async def closed_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


# ---------------------------------------------------------------------- publish


async def test_publish_sets_each_presence_state(ami: tuple[FakeAmi, AmiSettings]) -> None:
    fake, settings = ami
    states = [("acme+anna.virtanen", f"xa,,{b64('Lapland')},e"), ("acme+mikko", "available,,,e")]
    assert await publish(settings, states) == 2
    login = [a for a in fake.actions if a.get("Action") == "Login"]
    assert [(a["Username"], a["Secret"]) for a in login] == [("vipbx", "s3cret")]
    setvars = [a for a in fake.actions if a.get("Action") == "Setvar"]
    assert [(a["Variable"], a["Value"]) for a in setvars] == [
        ("PRESENCE_STATE(CustomPresence:acme+anna.virtanen)", "xa,,TGFwbGFuZA==,e"),
        ("PRESENCE_STATE(CustomPresence:acme+mikko)", "available,,,e"),
    ]
    assert all("Channel" not in a for a in setvars)  # a global function write, no channel


async def test_publish_nothing(ami: tuple[FakeAmi, AmiSettings]) -> None:
    fake, settings = ami
    assert await publish(settings, []) == 0
    assert fake.setvars() == []


async def test_publish_never_raises_when_ami_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    settings = AmiSettings("127.0.0.1", await closed_port(), "vipbx", "x")
    with caplog.at_level(logging.WARNING, logger="ari_app.presence.asterisk"):
        assert await publish(settings, [("acme+mikko", "available,,,e")], timeout=2) == 0
    assert "presence: 0 state(s) published" in caplog.text


async def test_publish_never_raises_when_login_or_setvar_is_refused(ami: tuple[FakeAmi, AmiSettings],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    fake, settings = ami
    fake.refuse_login = True
    assert await publish(settings, [("acme+mikko", "available,,,e")], timeout=2) == 0
    assert fake.setvars() == []
    fake.refuse_login, fake.fail_action = False, "Setvar"
    assert await publish(settings, [("acme+mikko", "available,,,e"), ("acme+x", "dnd,,,e")], timeout=2) == 0
    assert len(fake.setvars()) == 1  # the first refused: the rest wait for the next publish
    assert "refused" in caplog.text


async def test_publish_gives_up_on_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never a banner

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with server:
        settings = AmiSettings("127.0.0.1", server.sockets[0].getsockname()[1], "vipbx", "x")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await publish(settings, [("acme+mikko", "available,,,e")], timeout=0.5) == 0
        assert loop.time() - started < 3


# ---------------------------------------------------------------------- the service


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(tmp_path: Path, clock: FakeClock) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG, clock=clock) as service:
        yield service


def anna_id() -> str:
    return "PRESENCE_STATE(CustomPresence:acme+anna.virtanen)"


async def test_change_stores_and_publishes(state: CallStateService, ami: tuple[FakeAmi, AmiSettings]) -> None:
    fake, settings = ami
    service = PresenceService(CONFIG, state, settings)
    anna = ACME.users[0]
    got = await service.change(ACME, anna, "meeting", T0 + timedelta(hours=1), actor="+358401110001", source="ivr")
    assert got == Presence("meeting", T0 + timedelta(hours=1), "")
    assert state.presence("acme", "anna.virtanen") == got
    assert fake.setvars() == [(anna_id(), "dnd,,,e")]
    assert (state.audit()[-1].actor, state.audit()[-1].source) == ("+358401110001", "ivr")


async def test_change_without_ami_only_stores(state: CallStateService) -> None:
    service = PresenceService(CONFIG, state, None)
    await service.change(ACME, ACME.users[1], "lunch", None, actor="op", source="cli")
    assert state.presence("acme", "mikko").activity == "lunch"


async def test_publish_all(state: CallStateService, ami: tuple[FakeAmi, AmiSettings]) -> None:
    fake, settings = ami
    state.set_presence("acme", "mikko", "vacation", note="Lapland", actor="op", source="cli")
    state.set_presence("nordic", "olli", "training", actor="op", source="cli")
    await PresenceService(CONFIG, state, settings).publish_all()
    assert fake.setvars() == [
        (anna_id(), "available,,,e"),
        ("PRESENCE_STATE(CustomPresence:acme+mikko)", f"xa,,{b64('Lapland')},e"),
        ("PRESENCE_STATE(CustomPresence:nordic+olli)", "away,,,e"),
    ]


async def test_end_due_publishes_available_for_ended_users(state: CallStateService, clock: FakeClock,
                                                           ami: tuple[FakeAmi, AmiSettings]) -> None:
    fake, settings = ami
    service = PresenceService(CONFIG, state, settings)
    state.set_presence("acme", "anna.virtanen", "meeting", until=T0 + timedelta(minutes=30), note="room 3",
                       actor="op", source="cli")
    state.set_presence("acme", "mikko", "vacation", until=T0 + timedelta(days=2), actor="op", source="cli")
    assert await service.end_due() == 0
    assert fake.setvars() == []
    clock.advance(minutes=30)
    assert await service.end_due() == 1
    assert fake.setvars() == [(anna_id(), f"available,,{b64('room 3')},e")]
    assert state.audit()[0].actor == "system" and state.audit()[0].source == "timer"
    assert await service.end_due() == 0 and len(fake.setvars()) == 1


async def test_end_due_skips_users_no_longer_in_the_yaml(tmp_path: Path, clock: FakeClock,
                                                         ami: tuple[FakeAmi, AmiSettings]) -> None:
    fake, settings = ami
    with CallStateService(tmp_path / "state.sqlite3", CONFIG, clock=clock) as state:
        state.set_presence("acme", "mikko", "lunch", until=T0 + timedelta(hours=1), actor="op", source="cli")
        fewer = Config(platform=CONFIG.platform, tenants=(NORDIC,))
        state.reload(fewer)
        clock.advance(hours=1)
        assert await PresenceService(fewer, state, settings).end_due() == 1  # ended in the database
        assert fake.setvars() == []


class BrokenAtStart:
    """A state whose database fails for the start-up publish, then works."""

    def __init__(self, state: CallStateService) -> None:
        self.state = state
        self.fail = True
        self.ended = 0

    def presence(self, tenant_id: str, user_id: str) -> Presence:
        if self.fail:
            raise StorageError("database unavailable")
        return self.state.presence(tenant_id, user_id)

    def end_presences(self) -> list[tuple[str, str]]:
        self.ended += 1
        return self.state.end_presences()

    def next_presence_end(self) -> datetime | None:
        return self.state.next_presence_end()


async def test_timer_survives_a_failing_start(state: CallStateService, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture,
                                              ami: tuple[FakeAmi, AmiSettings]) -> None:
    monkeypatch.setattr(services_module, "TIMER_MAX_SLEEP", 0.01)
    broken = BrokenAtStart(state)
    task = asyncio.create_task(PresenceService(CONFIG, broken, ami[1]).run_timer())  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(3):
            while broken.ended < 2:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert not task.done() or task.cancelled()
    assert "presence: publishing at start" in caplog.text


async def test_timer_ends_activities_when_due(tmp_path: Path, ami: tuple[FakeAmi, AmiSettings]) -> None:
    # The real clock: an end time a moment away is ended by the timer, which sleeps until then.
    fake, settings = ami
    with CallStateService(tmp_path / "state.sqlite3", CONFIG) as state:
        state.set_presence("acme", "mikko", "lunch", until=datetime.now(UTC) + timedelta(seconds=0.3),
                           actor="op", source="cli")
        task = asyncio.create_task(PresenceService(CONFIG, state, settings).run_timer())
        try:
            async with asyncio.timeout(5):
                while ("PRESENCE_STATE(CustomPresence:acme+mikko)", "available,,,e") not in fake.setvars():
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
        # The start-up publish first (lunch), then the end.
        mikko = [v for k, v in fake.setvars() if k.endswith("acme+mikko)")]
        assert mikko == ["away,,,e", "available,,,e"]
        assert state.audit()[0].source == "timer"


# ---------------------------------------------------------------------- the greeting's sentence


async def test_greeting_sentence(state: CallStateService) -> None:
    service = PresenceService(CONFIG, state, None)
    anna, now = ACME.users[0], T0.astimezone(HELSINKI)  # Thursday 1 August, 12:00 in Helsinki
    assert await service.greeting_sentence(ACME, anna, "fi", now) is None  # Available: nothing to say
    state.set_presence("acme", "anna.virtanen", "available", note="note only", actor="op", source="cli")
    assert await service.greeting_sentence(ACME, anna, "fi", now) is None

    state.set_presence("acme", "anna.virtanen", "meeting", actor="op", source="cli")
    assert await service.greeting_sentence(ACME, anna, "fi", now) == ["act-person-is", "act-is-meeting"]

    until = datetime(2024, 8, 12, 0, 0, tzinfo=HELSINKI)  # Monday, midnight: "until Monday 12 August"
    state.set_presence("acme", "anna.virtanen", "vacation", until=until, actor="op", source="cli")
    assert await service.greeting_sentence(ACME, anna, "fi", now) == [
        "act-person-is", "act-is-vacation", "wd-until-1", "day-until-12", "month-8", "until"]
    assert await service.greeting_sentence(ACME, anna, "en", now) == [
        "act-person-is", "act-is-vacation", "until", "wd-1", "month-8", "day-12"]
    assert await service.greeting_sentence(ACME, anna, "sv", now) == [
        "act-person-is", "act-is-vacation", *speech.until_phrase("sv", until, now)]


async def test_greeting_sentence_says_the_end_time_in_nows_zone(state: CallStateService) -> None:
    service = PresenceService(CONFIG, state, None)
    anna, now = ACME.users[0], T0.astimezone(HELSINKI)
    state.set_presence("acme", "anna.virtanen", "lunch", until=datetime(2024, 8, 1, 10, 30, tzinfo=UTC),
                       actor="op", source="cli")  # 13:30 in Helsinki, today
    assert await service.greeting_sentence(ACME, anna, "fi", now) == [
        "act-person-is", "act-is-lunch", *speech.clock("fi", datetime(2024, 8, 1, 13, 30)), "until"]


async def test_greeting_sentence_for_an_activity_without_prompts(state: CallStateService,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    service = PresenceService(CONFIG, state, None)
    state.set_presence("nordic", "olli", "training", actor="op", source="cli")
    assert await service.greeting_sentence(NORDIC, NORDIC.users[0], "fi", T0.astimezone(HELSINKI)) is None
    assert "no prompts for the activity 'training'" in caplog.text


async def test_voicemail_greeting_gets_the_activity_sentence(state: CallStateService, tmp_path: Path) -> None:
    # The voicemail plugin's deposit handler, wired as `vipbx serve` wires it.
    from ari_app.plugin_api import PluginDeps
    from ari_app.voicemail import plugin as voicemail_plugin
    from base.model import TenantUser
    from vmstore import VoicemailStore

    deps = PluginDeps(config=CONFIG, store=VoicemailStore(tmp_path / "spool"), callstate=state,
                      presence=PresenceService(CONFIG, state, None), notifier=None, ami=None, recordings_dir=tmp_path / "recording", sounds_dir=tmp_path / "sounds")
    deposit = voicemail_plugin.load(deps).handlers["deposit"]
    mailbox = TenantUser(ACME, ACME.users[0])
    assert await deposit.activity_sentence(mailbox, "fi") is None  # type: ignore[attr-defined]
    state.set_presence("acme", "anna.virtanen", "sick", actor="op", source="cli")
    assert await deposit.activity_sentence(mailbox, "sv") == ["act-person-is", "act-is-sick"]  # type: ignore[attr-defined]
    with_activity = await deposit._greeting(mailbox, "fi", True, None)  # type: ignore[attr-defined]
    without = await deposit._greeting(mailbox, "fi", False, None)  # type: ignore[attr-defined]
    assert [m.rsplit("/", 1)[1] for m in with_activity[len(without):]] == ["act-person-is", "act-is-sick"]


async def test_a_reconnection_to_asterisk_publishes_everyone_again(
        state: CallStateService, ami: tuple[FakeAmi, AmiSettings]) -> None:
    fake, settings = ami
    service = PresenceService(CONFIG, state, settings)
    await service.on_ari_connect()  # the first connection: run_timer publishes at start instead
    assert fake.setvars() == []
    await service.on_ari_connect()  # Asterisk came back (it may have lost its presence database)
    published = {k for k, _ in fake.setvars()}
    assert published == {f"PRESENCE_STATE(CustomPresence:{t.id}+{u.id})" for t in CONFIG.tenants for u in t.users}
