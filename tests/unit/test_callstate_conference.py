"""Conference room PINs in the call-state service: closed until set, the rules, the room's own
lockout, the audit trail without the PIN. Services come from `make_service` / `svc`, so the
PostgreSQL module of tests/e2e runs these again on a real server."""
# ruff: noqa: F811  (pytest passes the imported fixtures by parameter name)

from __future__ import annotations

from pathlib import Path

import pytest
from callstate_support import (  # noqa: F401  (fixtures are used by name)
    FakeClock,
    RawDb,
    clock,
    db_path,
    make_service,
    raw_db,
    svc,
)

from asterisk_conf.validate import load_config
from base.model import Config
from callstate import CallStateService, SettingsError
from callstate.pin import PIN_FAILED, PIN_LOCKED, PIN_OK, PIN_REFUSED

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIG: Config = load_config([str(EXAMPLES / n) for n in ("platform.yaml", "acme.yaml", "borealis.yaml")])
GOOD_PIN = "735194"
ANNA = ("acme", "anna.virtanen")


def test_a_room_is_closed_until_its_owner_sets_a_pin(svc: CallStateService) -> None:
    rooms = svc.conferences
    assert not rooms.room(*ANNA).open
    assert not rooms.check_pin(*ANNA, "", actor="+358451234567", source="ivr").ok
    rooms.set_pin(*ANNA, GOOD_PIN, actor="web:anna", source="web")
    assert rooms.room(*ANNA).pin == GOOD_PIN
    assert rooms.check_pin(*ANNA, GOOD_PIN, actor="+358451234567", source="ivr").ok
    # Someone else's room is untouched.
    assert not rooms.room("acme", "mikko.korhonen").open
    audit = svc.audit(*ANNA)
    assert [(e.event, e.field, e.old, e.new) for e in reversed(audit)] == [
        (PIN_REFUSED, "conference.pin", None, "no PIN"),
        ("set", "conference.pin", None, "set"),
        (PIN_OK, "conference.pin", "0", "0"),
    ]
    assert all(GOOD_PIN not in f"{e.old}{e.new}{e.actor}" for e in audit)


@pytest.mark.parametrize("pin", ["12345", "12345678901", "111111", "123456", "987654", "890123", "73519a",
                                 " 735194", "401110001", "358401110001"])
def test_pin_rules(svc: CallStateService, pin: str) -> None:
    with pytest.raises(SettingsError):
        svc.conferences.set_pin(*ANNA, pin, actor="web:anna", source="web")
    assert not svc.conferences.room(*ANNA).open
    assert svc.audit(*ANNA) == []


def test_wrong_pins_lock_the_room_until_time_or_a_new_pin(svc: CallStateService, clock: FakeClock,
                                                          raw_db: RawDb) -> None:
    rooms = svc.conferences
    rooms.set_pin(*ANNA, GOOD_PIN, actor="web:anna", source="web")
    for _ in range(5):
        assert not rooms.check_pin(*ANNA, "000001", actor="x", source="ivr").ok
    status = rooms.room(*ANNA).status
    assert status.locked and status.locked_until is not None
    assert (status.locked_until - clock.now).total_seconds() == 15 * 60
    # Locked: even the right PIN is refused without being compared.
    assert not rooms.check_pin(*ANNA, GOOD_PIN, actor="x", source="ivr").ok
    assert [e.event for e in svc.audit(*ANNA, limit=3)] == [PIN_REFUSED, PIN_LOCKED, PIN_FAILED]
    # The voicemail PIN's counter is another one.
    assert not svc.pin_status(*ANNA).locked
    clock.advance(minutes=15)
    assert rooms.check_pin(*ANNA, GOOD_PIN, actor="x", source="ivr").ok
    # The next series locks for longer; a new PIN opens the room at once.
    for _ in range(10):
        rooms.check_pin(*ANNA, "000001", actor="x", source="ivr")
    assert rooms.room(*ANNA).status.locked
    rooms.set_pin(*ANNA, "580372", actor="web:anna", source="web")
    room = rooms.room(*ANNA)
    assert not room.status.locked and room.status.failures == 0 and room.status.level == 0
    assert rooms.check_pin(*ANNA, "580372", actor="x", source="ivr").ok
    assert [row[:3] for row in raw_db.rows("conference_rooms")] == [("acme", "anna.virtanen", "580372")]


def test_unknown_users_have_no_room(svc: CallStateService) -> None:
    for tenant, user in (("acme", "nobody"), ("nowhere", "anna.virtanen")):
        with pytest.raises(SettingsError):
            svc.conferences.room(tenant, user)
        with pytest.raises(SettingsError):
            svc.conferences.set_pin(tenant, user, GOOD_PIN, actor="x", source="web")
