"""Conference rooms: the YAML key, the room PIN in the call state (rules, lockout, audit), the
rendered Asterisk files, the conference number's IVR, and the Conferences page and API over a fake
AMI, including isolation on every route."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from clicase import shown
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webharness import WebHarness, example_config, make_harness
from yamlcase import find, problems, tenant_yaml

from ari_app.conference.ivr import BRIDGE_VARIABLE, ROOM_CONTEXT, ConferenceIvr
from ari_app.conference.services import ConferenceService, bridge_name, room_owner
from asterisk_conf import confcheck
from asterisk_conf.deploy import RELOAD_TARGETS
from asterisk_conf.render import render_config
from base.ami import AmiError
from base.model import TenantUser
from base.secrets import SecretStore
from callstate import CallStateService, default_db_path
from callstate.pin import PIN_FAILED, PIN_OK
from cli.main import main
from web.conference_service import ConferenceControl, LiveUnavailable, participant_id
from web.pages.conferences import CONTROL

GOOD_PIN = "735194"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


# ---------------------------------------------------------------- YAML


def test_the_conference_number_is_validated_and_unique(in_tmp: Path) -> None:
    platform = 'platform:\n  conference_number: "+358401110001"\n'
    found = problems(platform + tenant_yaml())
    find(found, 2, "platform.conference_number", "more than once")
    find(found, 11, "tenants[acme].users[anna].number", "more than once")
    found = problems('platform:\n  conference_number: "0201243300"\n' + tenant_yaml())
    find(found, 2, "platform.conference_number", "E.164")
    # Left out: the default, which no user may have either.
    found = problems(tenant_yaml().replace('"+358401110001"', '"+358201243300"'))
    assert "default conference_number" in find(found, 9, "tenants[acme].users[anna].number", "more than once").message


def test_the_example_platform_has_a_conference_number(site: WebHarness) -> None:
    assert site.config.platform.conference_number == "+358201243300"


# ---------------------------------------------------------------- the call state: test_callstate_conference.py


def test_the_schema_has_the_conference_migration(site: WebHarness) -> None:
    assert site.state.schema_version >= 9


# ---------------------------------------------------------------- rendered files


def test_rendered_files_route_the_conference_number_to_the_application(site: WebHarness, tmp_path: Path) -> None:
    files = render_config(site.config, SecretStore(tmp_path / "secrets.json"))
    assert confcheck.check(files) == []
    dialplan = files["extensions.conf"]
    assert "exten => +358201243300,1,Goto(vipbx-conference-number,s,1)" in dialplan
    assert "exten => s,1,Stasis(vipbx,conference)" in dialplan
    assert "ConfBridge(${VIPBX_CONF_BRIDGE},vipbx-room,vipbx-caller)" in dialplan
    # Reached from the application only: no device or trunk context includes it.
    assert "include => vipbx-conference" not in dialplan
    assert "Goto(vipbx-conference," not in dialplan
    profiles = {s.name: s for s in confcheck.parse(files["confbridge.conf"], "confbridge.conf")[0]}
    assert profiles["vipbx-room"].get("type") == "bridge"
    assert profiles["vipbx-caller"].get("type") == "user"
    assert "load => app_confbridge.so" in files["modules.conf"]
    # Listing, mute and kick need no AMI class beyond those the application already had.
    assert "write=system,call,user\n" in files["manager.conf"]
    assert RELOAD_TARGETS["confbridge.conf"] == "app_confbridge.so"


# ---------------------------------------------------------------- the conference number's IVR


class FakeCall:
    """The caller's side: keys typed in answer to each read, what was played."""

    def __init__(self, answers: list[str], number: str = "+358451234567") -> None:
        self.answers = answers
        self.caller_number = number
        self.played: list[str] = []
        self.vars: dict[str, str] = {}
        self.continued: tuple[str, str, int] | None = None
        self.hung_up = False

    async def answer(self) -> None:
        pass

    async def play(self, media: list[str], *, barge_in: bool = True) -> None:
        self.played += media

    def push_back(self, key: str) -> None:
        raise AssertionError("no key is pressed during a prompt here")

    async def read(self, media: list[str], max_digits: int, timeout: float, terminator: str) -> str:
        self.played += media
        return self.answers.pop(0) if self.answers else ""

    async def set_var(self, name: str, value: str) -> None:
        self.vars[name] = value

    async def continue_in_dialplan(self, context: str, exten: str, priority: int) -> None:
        self.continued = (context, exten, priority)

    async def hangup(self) -> None:
        self.hung_up = True


class Names:
    def media(self, lang: str, names: list[str]) -> list[str]:
        return list(names)


def ivr_of(site: WebHarness) -> ConferenceIvr:
    return ConferenceIvr(ConferenceService(site.state), Names(), verdict_seconds=0)  # type: ignore[arg-type]


async def test_the_right_room_and_pin_enter_the_room(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    site.state.conferences.set_pin("acme", "anna.virtanen", GOOD_PIN, actor="t", source="test")
    call = FakeCall(["358401110001", "111222", "358401110001", GOOD_PIN])
    await ivr_of(site)(call)  # type: ignore[arg-type]
    assert call.played == ["conf-welcome", "conf-enter-room", "conf-enter-pin", "conf-refused",
                           "conf-enter-room", "conf-enter-pin", "conf-joining"]
    assert call.vars == {BRIDGE_VARIABLE: "acme-358401110001"} == {BRIDGE_VARIABLE: bridge_name(anna)}
    assert call.continued == (ROOM_CONTEXT, "enter", 1) and not call.hung_up
    audit = site.state.audit("acme", "anna.virtanen", limit=2)
    assert [(e.event, e.actor, e.source) for e in audit] == [(PIN_OK, "+358451234567", "ivr"),
                                                            (PIN_FAILED, "+358451234567", "ivr")]


async def test_unknown_closed_and_wrong_rooms_sound_alike_and_end_after_three_tries(site: WebHarness) -> None:
    site.state.conferences.set_pin("acme", "anna.virtanen", GOOD_PIN, actor="t", source="test")
    # A tenant's extra number is no room; Mikko's room has no PIN; Anna's PIN is wrong.
    call = FakeCall(["358923130000", GOOD_PIN, "358401110002", GOOD_PIN, "358401110001", "999999"])
    await ivr_of(site)(call)  # type: ignore[arg-type]
    assert call.played == ["conf-welcome", *["conf-enter-room", "conf-enter-pin", "conf-refused"] * 3,
                           "vm-goodbye"]
    assert call.continued is None and call.hung_up and not call.vars


def test_room_numbers_are_the_owners_own_numbers(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    assert room_owner(site.config, "358401110001") == anna
    for room in ("", "+358401110001", "0401110001", "358923130000", "358401110001#", "1" * 16):
        assert room_owner(site.config, room) is None, room


# ---------------------------------------------------------------- the page over a fake AMI


class FakeAmi:
    """The rooms Asterisk holds (bridge → channel → its variables) and the actions it was sent;
    like the real one, it answers only the write classes the AMI user has (system, call, user)."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, dict[str, str]]] = {}
        self.actions: list[tuple[str, dict[str, str]]] = []
        self.sessions = 0  # AMI logins
        self.open_now = self.most_open = 0
        self.down = False
        self.gone_after_listing = ""  # a channel that hangs up right after the room is listed

    def join(self, who: TenantUser, channel: str, number: str, name: str = "") -> str:
        bridge = bridge_name(who)
        self.rooms.setdefault(bridge, {})[channel] = {"CALLERID(num)": number, "CALLERID(name)": name or "<unknown>"}
        return participant_id(bridge, channel)

    def muted(self, who: TenantUser, channel: str) -> bool:
        return self.rooms[bridge_name(who)][channel].get("muted") == "yes"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[FakeAmi]:
        if self.down:
            raise AmiError("cannot reach AMI")
        self.sessions += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await asyncio.sleep(0.01)  # a login's round trip: lets concurrent requests overlap
            yield self
        finally:
            self.open_now -= 1

    def _channel(self, name: str) -> dict[str, str]:
        for room in self.rooms.values():
            if name in room:
                return room[name]
        raise AmiError(f"Getvar: No such channel {name}")

    async def action(self, action: str, **fields: str) -> dict[str, str]:
        if action == "Getvar":
            variable = fields["Variable"]
            if variable.startswith("CONFBRIDGE_CHANNELS(parties,"):
                return {"Value": ",".join(self.rooms.get(variable.removeprefix("CONFBRIDGE_CHANNELS(parties,")[:-1], {}))}
            return {"Value": self._channel(fields["Channel"]).get(variable, "")}
        self.actions.append((action, fields))
        if fields.get("Channel") == self.gone_after_listing:
            raise AmiError(f"{action}: No Channel by that name found in conference.")
        if action == "Setvar":
            self._channel(fields["Channel"])[fields["Variable"]] = fields["Value"]
            return {"Response": "Success"}
        assert action in ("ConfbridgeMute", "ConfbridgeUnmute", "ConfbridgeKick"), action
        room = self.rooms[fields["Conference"]]
        if action == "ConfbridgeKick":
            del room[fields["Channel"]]
        else:
            room[fields["Channel"]]["muted"] = "yes" if action == "ConfbridgeMute" else "no"
        return {"Response": "Success"}


@pytest.fixture
def ami(site: WebHarness) -> FakeAmi:
    fake = FakeAmi()
    control = site.deps.extras[CONTROL] = ConferenceControl(fake.open)
    control.FRESH_SECONDS = 0  # these tests change the room behind the page's back: always ask
    return fake


async def test_many_pages_polling_one_room_share_the_answers(site: WebHarness) -> None:
    """Each poll would be an AMI login: concurrent and recent questions about a room are shared,
    and the sessions open at once are capped."""
    fake = FakeAmi()
    control = site.deps.extras[CONTROL] = ConferenceControl(fake.open)
    anna, mikko = site.who("acme", "anna.virtanen"), site.who("acme", "mikko.korhonen")
    fake.join(anna, "PJSIP/carrier-00000001", "+358451234567")
    answers = await asyncio.gather(*(control.participants(anna) for _ in range(50)))
    assert fake.sessions == 1 and all(len(a) == 1 for a in answers)
    assert len(await control.participants(anna)) == 1 and fake.sessions == 1  # still fresh
    assert len(await control.participants(anna, fresh=True)) == 1 and fake.sessions == 2  # an opened page asks
    await asyncio.gather(*(control.participants(site.who(*u)) for u in
                           [("acme", "anna.virtanen"), ("acme", "mikko.korhonen"), ("acme", "sara.lindqvist"),
                            ("acme", "workshop"), ("borealis", site.config.tenants[1].users[0].id)]))
    assert fake.most_open <= ConferenceControl.MAX_SESSIONS
    # A change to the room is asked afresh at once.
    guest = participant_id(bridge_name(anna), "PJSIP/carrier-00000001")
    before = fake.sessions
    await control.set_muted(anna, guest, True)
    assert (await control.participants(anna))[0].muted and fake.sessions > before
    # A failure is not kept: the next question, however soon, asks again.
    control = ConferenceControl(fake.open)
    fake.down = True
    with pytest.raises(LiveUnavailable):
        await control.participants(mikko)
    fake.down = False
    assert await control.participants(mikko) == []


async def test_the_page_shows_the_dial_in_details_and_changes_the_pin(site: WebHarness, ami: FakeAmi) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        page = await c.get("/conferences")
        assert page.status_code == 200
        for text in ("+358201243300", "358401110001", 'id="conference-empty"', 'for="conference-new-pin"'):
            assert text in page.text
        refused = await site.post_form(c, "/conferences/pin", csrf, pin="123456")
        assert refused.status_code == 422 and 'role="alert"' in refused.text
        assert not site.state.conferences.room("acme", "anna.virtanen").open
        done = await site.post_form(c, "/conferences/pin", csrf, pin=GOOD_PIN)
        assert done.status_code == 303 and done.headers["location"] == "/conferences?done=conferences_pin_changed"
        assert site.state.conferences.room("acme", "anna.virtanen").pin == GOOD_PIN
        page = await c.get(done.headers["location"])
        assert f'<dd id="conference-pin">{GOOD_PIN}</dd>' in page.text and 'role="status"' in page.text
        # Without the form's CSRF token nothing changes.
        assert (await c.post("/conferences/pin", data={"pin": "580372"})).status_code == 403
    assert site.state.conferences.room("acme", "anna.virtanen").pin == GOOD_PIN
    entry = site.state.audit("acme", "anna.virtanen", limit=1)[0]
    assert (entry.field, entry.actor, entry.source) == ("conference.pin", "web:anna.virtanen@acme", "web")


async def test_participants_are_listed_muted_and_removed(site: WebHarness, ami: FakeAmi) -> None:
    anna = site.who("acme", "anna.virtanen")
    mikko = ami.join(anna, "PJSIP/acme-mikko-soft-00000001", "+358401110002")
    guest = ami.join(anna, "PJSIP/carrier-00000002", "+358451234567", "Guest")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        page = (await c.get("/conferences")).text
        assert f'id="participant-{mikko}"' in page and "Mikko Korhonen" in page
        assert f'id="participant-{guest}"' in page and "Guest" in page and "+358451234567" in page
        assert "PJSIP/" not in page  # channels never reach the browser
        live = await c.get("/conferences/live")
        assert f'id="participant-{guest}"' in live.text and "<html" not in live.text
        muted = await site.post_form(c, f"/conferences/participants/{guest}/mute", csrf, muted="1")
        assert muted.headers["location"] == "/conferences?done=conferences_muted"
        assert ami.actions[-2:] == [
            ("ConfbridgeMute", {"Conference": "acme-358401110001", "Channel": "PJSIP/carrier-00000002"}),
            ("Setvar", {"Channel": "PJSIP/carrier-00000002", "Variable": "VIPBX_CONF_MUTED", "Value": "1"})]
        assert ami.muted(anna, "PJSIP/carrier-00000002")
        assert f'id="participant-{guest}" data-muted="yes"' in (await c.get("/conferences")).text
        await site.post_form(c, f"/conferences/participants/{guest}/mute", csrf, muted="0")
        assert ami.actions[-2][0] == "ConfbridgeUnmute" and not ami.muted(anna, "PJSIP/carrier-00000002")
        removed = await site.post_form(c, f"/conferences/participants/{guest}/remove", csrf)
        assert removed.headers["location"] == "/conferences?done=conferences_removed"
        assert ami.actions[-1] == ("ConfbridgeKick", {"Conference": "acme-358401110001",
                                                      "Channel": "PJSIP/carrier-00000002"})
        assert f"participant-{guest}" not in (await c.get("/conferences")).text
        # Leaving between the list and the action: "not found" too.
        ami.gone_after_listing = "PJSIP/acme-mikko-soft-00000001"
        assert (await site.post_form(c, f"/conferences/participants/{mikko}/mute", csrf, muted="1")).status_code == 404
        ami.gone_after_listing = ""
        # Gone: acting on it again is "not found".
        assert (await site.post_form(c, f"/conferences/participants/{guest}/remove", csrf)).status_code == 404
        ami.down = True
        page = await c.get("/conferences")
        assert page.status_code == 200 and 'id="conference-unavailable"' in page.text
        assert (await site.post_form(c, f"/conferences/participants/{mikko}/remove", csrf)).status_code == 503


async def test_the_json_api(site: WebHarness, ami: FakeAmi) -> None:
    anna = site.who("acme", "anna.virtanen")
    guest = ami.join(anna, "PJSIP/carrier-00000002", "+358451234567")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        header = {"x-csrf-token": csrf}
        room = (await c.get("/api/v1/conference")).json()
        assert room == {"conference_number": "+358201243300", "room": "358401110001", "pin": None,
                        "locked": False, "pin_digits": 6}
        assert (await c.put("/api/v1/conference/pin", json={"pin": GOOD_PIN})).status_code == 403
        assert (await c.put("/api/v1/conference/pin", json={"pin": "111111"}, headers=header)).status_code == 422
        changed = await c.put("/api/v1/conference/pin", json={"pin": GOOD_PIN}, headers=header)
        assert changed.status_code == 200 and changed.json()["pin"] == GOOD_PIN
        listed = (await c.get("/api/v1/conference/participants")).json()
        assert listed == [{"id": guest, "number": "+358451234567", "name": "", "muted": False}]
        muted = await c.post(f"/api/v1/conference/participants/{guest}/mute", json={"muted": True}, headers=header)
        assert muted.status_code == 200 and muted.json()["muted"] is True
        assert ami.muted(anna, "PJSIP/carrier-00000002")
        assert (await c.delete(f"/api/v1/conference/participants/{guest}", headers=header)).status_code == 204
        assert ami.actions[-1][0] == "ConfbridgeKick"
        schema = (await c.get("/api/openapi.json")).json()
        assert "/api/v1/conference/participants/{pid}/mute" in schema["paths"]


# ---------------------------------------------------------------- isolation, every route

ROUTES = [
    ("GET", "/conferences"), ("GET", "/conferences/live"), ("POST", "/conferences/pin"),
    ("POST", "/conferences/participants/{pid}/mute"), ("POST", "/conferences/participants/{pid}/remove"),
    ("GET", "/api/v1/conference"), ("PUT", "/api/v1/conference/pin"), ("GET", "/api/v1/conference/participants"),
    ("POST", "/api/v1/conference/participants/{pid}/mute"), ("DELETE", "/api/v1/conference/participants/{pid}"),
]


async def test_anonymous_requests_are_refused(site: WebHarness, ami: FakeAmi) -> None:
    anna = site.who("acme", "anna.virtanen")
    pid = ami.join(anna, "PJSIP/carrier-00000002", "+358451234567")
    async with site.client() as c:
        for method, path in ROUTES:
            url = path.format(pid=pid)
            body: dict[str, Any] = {"json": {"pin": GOOD_PIN, "muted": True}} if "/api/" in url else \
                {"data": {"pin": GOOD_PIN, "muted": "1"}}
            response = await c.request(method, url, **(body if method in ("POST", "PUT") else {}))
            expected = 401 if url.startswith("/api/") else 303
            assert response.status_code == expected, (method, url, response.status_code)
    assert ami.actions == [] and not site.state.conferences.room("acme", "anna.virtanen").open


@pytest.mark.parametrize("intruder", [("borealis", "erik.nyberg"), ("acme", "mikko.korhonen")])
async def test_other_users_reach_nothing_of_annas_room(site: WebHarness, ami: FakeAmi,
                                                       intruder: tuple[str, str]) -> None:
    anna = site.who("acme", "anna.virtanen")
    site.state.conferences.set_pin("acme", "anna.virtanen", GOOD_PIN, actor="t", source="test")
    pid = ami.join(anna, "PJSIP/carrier-00000002", "+358451234567", "Guest")
    other = site.who(*intruder)
    async with site.client() as c:
        csrf = await site.login(c, other)
        header = {"x-csrf-token": csrf}
        # Their page and API show their own (closed) room, never Anna's PIN or participants.
        for path in ("/conferences", "/conferences/live", "/api/v1/conference", "/api/v1/conference/participants"):
            text = (await c.get(path)).text
            assert GOOD_PIN not in text and pid not in text and "Guest" not in text, path
        assert (await site.post_form(c, f"/conferences/participants/{pid}/mute", csrf, muted="1")).status_code == 404
        assert (await site.post_form(c, f"/conferences/participants/{pid}/remove", csrf)).status_code == 404
        assert (await c.post(f"/api/v1/conference/participants/{pid}/mute", json={"muted": True},
                             headers=header)).status_code == 404
        assert (await c.delete(f"/api/v1/conference/participants/{pid}", headers=header)).status_code == 404
        # A PIN they set is their own room's.
        assert (await site.post_form(c, "/conferences/pin", csrf, pin="580372")).status_code == 303
        assert (await c.put("/api/v1/conference/pin", json={"pin": "580376"}, headers=header)).status_code == 200
    assert ami.actions == []
    assert site.state.conferences.room("acme", "anna.virtanen").pin == GOOD_PIN
    assert site.state.conferences.room(*intruder).pin == "580376"
    assert not ami.muted(anna, "PJSIP/carrier-00000002")


# ---------------------------------------------------------------- operators: vipbx conference

def cli(home: Path, *args: str) -> Result:
    files = [str(Path(__file__).resolve().parents[2] / "examples" / name)
             for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]
    return CliRunner().invoke(main, ["conference", *args, *files],
                              env={"VIPBX_HOME": str(home), "VIPBX_CONFIG": None}, catch_exceptions=False)


def test_operators_show_a_room_and_set_its_pin(tmp_path: Path) -> None:
    before = shown(cli(tmp_path, "show", "anna.virtanen@acme"))
    assert before == {"call": "+358201243300", "room": "358401110001", "PIN": "not set (the room is closed)",
                      "locked": "no", "bridge": "acme-358401110001"}
    refused = cli(tmp_path, "pin", "+358401110001", "123456")
    assert refused.exit_code == 1 and "run such as 123456" in refused.output
    assert shown(cli(tmp_path, "pin", "+358401110001", GOOD_PIN))["PIN"] == "set"
    assert GOOD_PIN not in cli(tmp_path, "show", "anna.virtanen@acme").output
    with CallStateService(default_db_path(tmp_path), example_config()) as state:
        assert state.conferences.room("acme", "anna.virtanen").pin == GOOD_PIN
        entry = state.audit("acme", "anna.virtanen", limit=1)[0]
        assert (entry.field, entry.source, entry.new) == ("conference.pin", "cli", "set")


KEYS = st.text(alphabet="0123456789*", max_size=14)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(st.one_of(KEYS, st.sampled_from(["358401110001", GOOD_PIN, "358401110002"])), max_size=8))
def test_random_answers_enter_only_with_the_room_and_its_pin(site: WebHarness, answers: list[str]) -> None:
    site.state.conferences.set_pin("acme", "anna.virtanen", GOOD_PIN, actor="t", source="test")  # also unlocks
    call = FakeCall(list(answers))
    asyncio.run(ivr_of(site)(call))  # type: ignore[arg-type]
    tries = [tuple(answers[i:i + 2]) for i in range(0, min(len(answers), 6), 2)]
    opened = ("358401110001", GOOD_PIN) in tries
    assert (call.continued is not None) == opened == (call.vars == {BRIDGE_VARIABLE: "acme-358401110001"})
    assert call.hung_up != opened
    assert site.state.conferences.room("acme", "anna.virtanen").pin == GOOD_PIN
    assert not site.state.conferences.room("acme", "mikko.korhonen").open
