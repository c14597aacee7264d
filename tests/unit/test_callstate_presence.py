"""Presence in the call-state service, on a real SQLite file: the default, setting an activity with
or without an end time and note, end times passing (read-time and the timer's write-back), refusals,
activities removed from the YAML, `call_state` and two services on one database.

Services come from the `make_service` fixture and raw rows from `raw_db`, so that a PostgreSQL run
(tests/e2e/test_callstate_presence_postgres.py) can override those two and run these again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from callstate_support import (  # noqa: F401  (fixtures are used by name)
    T0,
    FakeClock,
    MakeService,
    RawDb,
    changes,
    clock,
    db_path,
    make_service,
    raw_db,
    svc,
)
from people import user

from base.model import (
    DEFAULT_ACTIVITIES,
    Activity,
    Config,
    Platform,
    Tenant,
)
from callstate import (
    CallStateService,
    Presence,
    Routing,
    SettingsError,
    UnknownUserError,
)
from callstate.presence import NOTE_MAX, UNTIL_MAX

OUTSIDE = "+358501234567"
HELSINKI = ZoneInfo("Europe/Helsinki")



# A tenant's own list: Available, and "training" that sends calls to a substitute.
CUSTOM = (Activity("available", "1"), Activity("training", "2", "away", OUTSIDE))


def make_config(acme_activities: tuple[Activity, ...] = DEFAULT_ACTIVITIES) -> Config:
    return Config(
        platform=Platform(no_answer_seconds=20),
        tenants=(
            Tenant(id="acme", name="Acme", domain="acme.example", activities=acme_activities,
                   users=(user("anna", "+358401110001", "101"), user("mikko", "+358401110002", "102"),
                          user("nora", "+358401110003", "103", no_voicemail=True))),
            Tenant(id="nordic", name="Nordic", domain="nordic.example", activities=CUSTOM,
                   users=(user("olli", "+358502220001", "301"),)),
        ),
    )


CONFIG = make_config()


def text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def set_presence(svc: CallStateService, activity: str, uid: str = "anna", tenant: str = "acme",
                 **options: Any) -> Presence:
    return svc.set_presence(tenant, uid, activity, actor="op", source="cli", **options)


# ---------------------------------------------------------------------- defaults


def test_default_is_available_without_a_note(svc: CallStateService, raw_db: RawDb) -> None:
    got = svc.presence("acme", "anna")
    assert got == Presence("available", None, "") and got.available
    assert svc.presence("nordic", "olli") == Presence()
    assert raw_db.rows("presence") == [] and svc.audit() == []


@pytest.mark.parametrize(("tenant", "uid"), [("acme", "nobody"), ("nope", "anna")])
def test_unknown_users_are_refused(svc: CallStateService, raw_db: RawDb, tenant: str, uid: str) -> None:
    with pytest.raises(UnknownUserError):
        svc.presence(tenant, uid)
    with pytest.raises(UnknownUserError):
        svc.call_state(tenant, uid)
    with pytest.raises(UnknownUserError):
        set_presence(svc, "busy", uid, tenant)
    assert raw_db.rows("presence") == []


# ---------------------------------------------------------------------- set


def test_set_without_end_time(make_service: MakeService, clock: FakeClock) -> None:
    svc = make_service(clock=clock)
    got = set_presence(svc, "meeting")
    assert got == Presence("meeting", None, "") and not got.available
    assert svc.presence("acme", "anna") == got
    assert make_service(clock=clock).presence("acme", "anna") == got  # stored, not just returned
    assert svc.presence("acme", "mikko") == Presence()  # only anna's
    assert changes(svc) == [("presence.activity", "available", "meeting")]


def test_set_with_end_time_and_note(make_service: MakeService, clock: FakeClock, raw_db: RawDb) -> None:
    svc = make_service(clock=clock)
    until = datetime(2024, 8, 12, 0, 0, tzinfo=HELSINKI)
    got = set_presence(svc, "vacation", until=until, note="  Back on the 12th  ")
    assert got == Presence("vacation", until.astimezone(UTC), "Back on the 12th")
    assert got.until is not None and got.until.tzinfo == UTC and got.until == until
    assert make_service(clock=clock).presence("acme", "anna") == got
    assert changes(svc) == [("presence.activity", "available", "vacation"),
                            ("presence.until", None, "2024-08-11T21:00:00.000000Z"),
                            ("presence.note", None, "Back on the 12th")]
    [row] = raw_db.rows("presence")
    assert row[:5] == ("acme", "anna", "vacation", "2024-08-11T21:00:00.000000Z", "Back on the 12th")


def test_note_none_keeps_the_note_and_empty_clears_it(svc: CallStateService) -> None:
    set_presence(svc, "busy", note="call my mobile")
    assert set_presence(svc, "lunch").note == "call my mobile"
    assert svc.presence("acme", "anna") == Presence("lunch", None, "call my mobile")
    assert set_presence(svc, "available").note == "call my mobile"  # Available keeps it too
    assert set_presence(svc, "available", note="") == Presence()
    assert changes(svc) == [("presence.activity", "available", "busy"),
                            ("presence.note", None, "call my mobile"),
                            ("presence.activity", "busy", "lunch"),
                            ("presence.activity", "lunch", "available"),
                            ("presence.note", "call my mobile", None)]


def test_only_the_note_changes(svc: CallStateService) -> None:
    assert set_presence(svc, "available", note="in Oulu this week") == Presence("available", None,
                                                                                "in Oulu this week")
    assert changes(svc) == [("presence.note", None, "in Oulu this week")]


def test_a_new_activity_without_end_time_drops_the_old_end_time(svc: CallStateService) -> None:
    until = T0 + timedelta(hours=3)
    set_presence(svc, "meeting", until=until)
    got = set_presence(svc, "meeting")
    assert got == Presence("meeting", None, "")
    assert changes(svc)[-1] == ("presence.until", text(until), None)


def test_setting_the_same_presence_writes_no_audit_row(svc: CallStateService) -> None:
    until = T0 + timedelta(days=2)
    set_presence(svc, "sick", until=until, note="flu")
    before = len(svc.audit())
    set_presence(svc, "sick", until=until.astimezone(HELSINKI), note="flu ")  # the same, written otherwise
    set_presence(svc, "sick", until=until)
    assert len(svc.audit()) == before == 3
    set_presence(svc, "available", note="", uid="mikko")  # the default: nothing to record
    assert svc.audit("acme", "mikko") == []


def test_audit_rows_name_actor_source_and_time(svc: CallStateService, clock: FakeClock) -> None:
    svc.set_presence("acme", "anna", "lunch", actor="+358401110001", source="ivr", until=T0 + timedelta(hours=1))
    clock.advance(minutes=5)
    svc.set_presence("acme", "anna", "busy", actor="ops-jane", source="cli", note="x")
    rows = list(reversed(svc.audit()))
    assert [(e.tenant_id, e.user_id, e.actor, e.source, e.event, e.field, e.old, e.new, e.at) for e in rows] == [
        ("acme", "anna", "+358401110001", "ivr", "set", "presence.activity", "available", "lunch", T0),
        ("acme", "anna", "+358401110001", "ivr", "set", "presence.until", None, "2024-08-01T10:00:00.000000Z", T0),
        ("acme", "anna", "ops-jane", "cli", "set", "presence.activity", "lunch", "busy", T0 + timedelta(minutes=5)),
        ("acme", "anna", "ops-jane", "cli", "set", "presence.until", "2024-08-01T10:00:00.000000Z", None,
         T0 + timedelta(minutes=5)),
        ("acme", "anna", "ops-jane", "cli", "set", "presence.note", None, "x", T0 + timedelta(minutes=5)),
    ]


def test_a_tenants_own_activities(svc: CallStateService) -> None:
    assert set_presence(svc, "training", "olli", "nordic").activity == "training"
    with pytest.raises(SettingsError, match="unknown activity 'vacation'"):
        set_presence(svc, "vacation", "olli", "nordic")  # acme's, not nordic's
    with pytest.raises(SettingsError, match="training"):
        set_presence(svc, "training")


# ---------------------------------------------------------------------- end times


def test_end_time_passing_reads_available_and_keeps_the_note(make_service: MakeService, clock: FakeClock,
                                                              raw_db: RawDb) -> None:
    svc = make_service(clock=clock)
    until = T0 + timedelta(hours=2)
    set_presence(svc, "meeting", until=until, note="room 3")
    clock.advance(hours=2, seconds=-1)
    assert svc.presence("acme", "anna") == Presence("meeting", until, "room 3")
    clock.advance(seconds=1)  # the end time itself: over
    assert svc.presence("acme", "anna") == Presence("available", None, "room 3")
    assert make_service(clock=clock).presence("acme", "anna").available
    # Reading changes nothing on disk: no timer is needed for the right answer.
    assert raw_db.rows("presence")[0][2:4] == ("meeting", text(until))
    assert len(svc.audit()) == 3


def test_end_presences_writes_back_and_audits_as_the_timer(make_service: MakeService, clock: FakeClock,
                                                             raw_db: RawDb) -> None:
    svc = make_service(clock=clock)
    set_presence(svc, "meeting", until=T0 + timedelta(hours=1), note="room 3")
    set_presence(svc, "vacation", "mikko", until=T0 + timedelta(days=3))
    set_presence(svc, "busy", "nora")  # no end time: never ended
    assert svc.end_presences() == []  # nothing due yet
    clock.advance(hours=1)
    before = len(svc.audit())
    assert svc.end_presences() == [("acme", "anna")]
    assert svc.presence("acme", "anna") == Presence("available", None, "room 3")
    rows = {r[1]: r[2:5] for r in raw_db.rows("presence")}
    assert rows["anna"] == ("available", None, "room 3")
    assert rows["mikko"][0] == "vacation" and rows["nora"] == ("busy", None, "")
    ended = list(reversed(svc.audit()))[before:]
    assert [(e.user_id, e.actor, e.source, e.event, e.field, e.old, e.new, e.at) for e in ended] == [
        ("anna", "system", "timer", "set", "presence.activity", "meeting", "available", T0 + timedelta(hours=1)),
        ("anna", "system", "timer", "set", "presence.until", "2024-08-01T10:00:00.000000Z", None,
         T0 + timedelta(hours=1)),
    ]
    assert svc.end_presences() == []  # once only
    assert len(svc.audit()) == before + 2
    clock.advance(days=3)
    assert svc.end_presences() == [("acme", "mikko")]
    assert svc.presence("acme", "nora") == Presence("busy", None, "")


def test_end_presences_in_end_time_order(svc: CallStateService, clock: FakeClock) -> None:
    set_presence(svc, "lunch", "mikko", until=T0 + timedelta(minutes=30))
    set_presence(svc, "lunch", "anna", until=T0 + timedelta(minutes=10))
    set_presence(svc, "training", "olli", "nordic", until=T0 + timedelta(minutes=20))
    clock.advance(hours=1)
    assert svc.end_presences() == [("acme", "anna"), ("nordic", "olli"), ("acme", "mikko")]


def test_next_presence_end(svc: CallStateService, clock: FakeClock) -> None:
    assert svc.next_presence_end() is None
    set_presence(svc, "busy")  # no end time
    assert svc.next_presence_end() is None
    set_presence(svc, "vacation", "mikko", until=T0 + timedelta(days=5))
    set_presence(svc, "lunch", "nora", until=T0 + timedelta(minutes=45))
    assert svc.next_presence_end() == T0 + timedelta(minutes=45)
    clock.advance(hours=1)
    # Passed but not yet ended still counts: the timer must run now.
    assert svc.next_presence_end() == T0 + timedelta(minutes=45)
    svc.end_presences()
    assert svc.next_presence_end() == T0 + timedelta(days=5)
    set_presence(svc, "vacation", "mikko")  # the end time dropped
    assert svc.next_presence_end() is None


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("activity", "options", "match"), [
    ("holiday", {}, "unknown activity 'holiday'"),
    ("Vacation", {}, "unknown activity"),
    ("", {}, "unknown activity"),
    (None, {}, "unknown activity"),
    ("vacation", {"until": T0}, "already passed"),
    ("vacation", {"until": T0 - timedelta(days=1)}, "already passed"),
    ("vacation", {"until": T0 + UNTIL_MAX + timedelta(minutes=1)}, "400 days"),
    ("available", {"until": T0 + timedelta(hours=1)}, "Available has no end time"),
    ("vacation", {"until": datetime(2024, 8, 10, 12, 0)}, "time zone"),
    ("vacation", {"until": "2024-08-10"}, "date and time"),
    ("busy", {"note": "x" * (NOTE_MAX + 1)}, f"at most {NOTE_MAX}"),
    ("busy", {"note": "first line\nsecond line"}, "one line"),
    ("busy", {"note": "tab\there"}, "one line"),
    ("busy", {"note": "bidi \u202e override"}, "one line"),
    ("busy", {"note": 42}, "text"),
])
def test_refusals_change_nothing(svc: CallStateService, raw_db: RawDb, activity: Any, options: dict[str, Any],
                                 match: str) -> None:
    set_presence(svc, "lunch", "mikko", note="kept")
    rows, audit = raw_db.rows("presence"), svc.audit()
    with pytest.raises(SettingsError, match=match):
        set_presence(svc, activity, **options)
    with pytest.raises(SettingsError, match=match):
        set_presence(svc, activity, "mikko", **options)
    assert raw_db.rows("presence") == rows and svc.audit() == audit
    assert svc.presence("acme", "anna") == Presence()


def test_limits_themselves_are_allowed(svc: CallStateService) -> None:
    assert set_presence(svc, "vacation", until=T0 + UNTIL_MAX).until == T0 + UNTIL_MAX
    assert set_presence(svc, "vacation", until=T0 + timedelta(microseconds=1)).until is not None
    assert set_presence(svc, "busy", note="ä" * NOTE_MAX).note == "ä" * NOTE_MAX
    fixed = timezone(timedelta(hours=-5))
    assert set_presence(svc, "lunch", until=datetime(2024, 8, 1, 6, 0, tzinfo=fixed)).until == datetime(
        2024, 8, 1, 11, 0, tzinfo=UTC)


def test_actor_and_source_are_checked(svc: CallStateService, raw_db: RawDb) -> None:
    with pytest.raises(SettingsError):
        svc.set_presence("acme", "anna", "busy", actor="", source="cli")
    with pytest.raises(SettingsError):
        svc.set_presence("acme", "anna", "busy", actor="op", source="Bad Source")
    assert raw_db.rows("presence") == [] and svc.audit() == []


# ---------------------------------------------------------------------- configuration changes


def test_an_activity_removed_from_the_yaml_reads_as_available(make_service: MakeService,
                                                               raw_db: RawDb) -> None:
    svc = make_service()
    set_presence(svc, "lunch", note="back at one")
    without_lunch = make_config(tuple(a for a in DEFAULT_ACTIVITIES if a.key != "lunch"))
    for reader in (make_service(without_lunch), svc):
        reader.reload(without_lunch)
        assert reader.presence("acme", "anna") == Presence("available", None, "back at one")
        assert reader.call_state("acme", "anna")[1].available
    assert raw_db.rows("presence")[0][2] == "lunch"  # kept: back in the list, it is back in effect
    svc.reload(CONFIG)
    assert svc.presence("acme", "anna").activity == "lunch"


def test_call_state_returns_routing_and_presence(svc: CallStateService) -> None:
    assert svc.call_state("acme", "anna") == (svc.routing("acme", "anna"), Presence())
    svc.set_forward("acme", "anna", "busy", OUTSIDE, actor="op", source="cli")
    svc.set_call_waiting("acme", "anna", False, actor="op", source="cli")
    set_presence(svc, "meeting", until=T0 + timedelta(hours=1), note="room 3")
    routing, presence = svc.call_state("acme", "anna")
    assert isinstance(routing, Routing) and routing == svc.routing("acme", "anna")
    assert (routing.busy, routing.call_waiting) == (OUTSIDE, False)
    assert presence == Presence("meeting", T0 + timedelta(hours=1), "room 3")
    # A "No voicemail" user's defaults come with it.
    assert svc.call_state("acme", "nora")[0].busy == "none"


def test_call_state_applies_the_end_time(svc: CallStateService, clock: FakeClock) -> None:
    set_presence(svc, "meeting", until=T0 + timedelta(minutes=30))
    clock.advance(minutes=30)
    assert svc.call_state("acme", "anna")[1] == Presence()


def test_two_services_on_one_file_see_each_others_changes(make_service: MakeService, clock: FakeClock) -> None:
    ivr, cli = make_service(clock=clock), make_service(clock=clock)
    set_presence(ivr, "vacation", until=T0 + timedelta(days=7), note="Lapland")
    assert cli.presence("acme", "anna") == Presence("vacation", T0 + timedelta(days=7), "Lapland")
    assert cli.call_state("acme", "anna")[1].activity == "vacation"
    set_presence(cli, "sick")  # note kept across services
    assert ivr.presence("acme", "anna") == Presence("sick", None, "Lapland")
    set_presence(ivr, "lunch", "mikko", until=T0 + timedelta(hours=1))
    assert cli.next_presence_end() == T0 + timedelta(hours=1)
    clock.advance(hours=1)
    assert cli.end_presences() == [("acme", "mikko")]
    assert ivr.end_presences() == []  # the other already did it
    assert len(ivr.audit()) == len(cli.audit()) == 9


def test_schema_has_the_presence_migration(svc: CallStateService, raw_db: RawDb) -> None:
    assert svc.schema_version >= 3
    assert (3, "presence: activity, end time, note") in [r[:2] for r in raw_db.rows("schema_version")]
