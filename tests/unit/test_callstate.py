"""The call-state service on a real SQLite file: settings, refusals, audit, PIN lockout, concurrency.

Services are made by the `make_service` fixture and raw rows read through `raw_db`, so that
tests/e2e/test_callstate_postgres.py can run every test not marked `sqlite_only` on PostgreSQL by
overriding those two fixtures.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import threading
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from callstate_support import (  # noqa: F401  (fixtures are used by name)
    T0,
    FakeClock,
    MakeService,
    RawDb,
    clock,
    db_path,
    make_service,
    raw_db,
    svc,
    table_rows,
)

from base.model import (
    NO_VOICEMAIL_GROUP,
    Config,
    Platform,
    Tenant,
    TenantNumber,
    User,
)
from callstate import (
    AuditEntry,
    CallStateService,
    PinStatus,
    SettingsError,
    StorageError,
    UnknownUserError,
    VoicemailSettings,
    default_db_path,
    open_service,
    parse_value,
)
from callstate.schema import MIGRATIONS

ANNA_PIN = "480264"
# A test that checks SQLite itself (the file, WAL, processes, fork): not re-run on PostgreSQL.
sqlite_only = pytest.mark.sqlite_only


def make_config(mikko_email: str | None = None, with_nora: bool = True) -> Config:
    users = [
        User(id="anna", name="Anna", number="+358401110001", extension="101", email="anna@acme.example",
             pin=ANNA_PIN, language="fi"),
        User(id="mikko", name="Mikko", number="+358401110002", extension="102", email=mikko_email,
             pin="135790", language="fi"),
    ]
    if with_nora:
        users.append(User(id="nora", name="Nora", number="+358401110003", extension="103", email=None,
                          pin="246802", language="en", groups=(NO_VOICEMAIL_GROUP,)))
    return Config(
        platform=Platform(),
        tenants=(
            Tenant(id="acme", name="Acme", domain="acme.example", users=tuple(users),
                   numbers=(TenantNumber("+358912340000", "anna"),)),
            # Same user id in another tenant: state must not leak between tenants.
            Tenant(id="borealis", name="Borealis", domain="borealis.example",
                   users=(User(id="anna", name="Anna B", number="+358501110001", extension="201",
                               email=None, pin="975310", language="sv"),)),
        ),
    )


CONFIG = make_config()


def events(entries: list[AuditEntry]) -> list[tuple[str, str, str | None, str | None]]:
    """Oldest first, as (event, field, old, new)."""
    return [(e.event, e.field, e.old, e.new) for e in reversed(entries)]


# ---------------------------------------------------------------------- set-up and defaults


@sqlite_only
def test_new_file_is_wal_versioned_and_private(svc: CallStateService, db_path: Path) -> None:
    assert svc.schema_version == MIGRATIONS[-1].version
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(m.version,) for m in MIGRATIONS]
    assert db_path.stat().st_mode & 0o077 == 0


def test_reopening_does_not_migrate_again(make_service: MakeService, raw_db: RawDb) -> None:
    make_service().close()
    with make_service() as again:
        assert again.schema_version == MIGRATIONS[-1].version
    assert len(raw_db.rows("schema_version")) == len(MIGRATIONS)


def test_a_newer_schema_is_refused(make_service: MakeService, raw_db: RawDb) -> None:
    make_service().close()
    raw_db.execute("INSERT INTO schema_version VALUES (99, 'from the future', 'x')")
    with pytest.raises(StorageError, match="newer"):
        make_service()


def test_defaults_without_a_row(svc: CallStateService, raw_db: RawDb) -> None:
    assert svc.voicemail_settings("acme", "anna") == VoicemailSettings(
        play_activity=False, press1_number=None, notify_sms=True, notify_email=False, always_ask_pin=False)
    assert svc.pin_status("acme", "anna") == PinStatus(0, None)
    assert raw_db.rows("voicemail_settings") == []
    assert svc.audit() == []


@sqlite_only
def test_open_service_defaults_to_sqlite_in_home(tmp_path: Path) -> None:
    def no_secrets(name: str) -> str:
        raise AssertionError(f"SQLite needs no secret, asked for {name!r}")

    with open_service(CONFIG, tmp_path, no_secrets, lockout_attempts=2) as svc:
        svc.check_pin("acme", "anna", "0000", source="ivr")
        assert svc.check_pin("acme", "anna", "0000", source="ivr").locked
    assert len(table_rows(tmp_path / "state.sqlite3", "pin_lockout")) == 1


@sqlite_only
def test_default_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIPBX_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "state.sqlite3"
    assert default_db_path(tmp_path / "x") == tmp_path / "x" / "state.sqlite3"


def test_naive_clock_is_refused(make_service: MakeService) -> None:
    with make_service(clock=lambda: datetime(2024, 1, 1)) as svc, \
            pytest.raises(ValueError, match="aware"):
        svc.update_voicemail_settings("acme", "anna", actor="op", source="cli", play_activity=True)


# ---------------------------------------------------------------------- updates and audit


def test_update_is_stored_and_audited_per_field(svc: CallStateService, clock: FakeClock) -> None:
    got = svc.update_voicemail_settings("acme", "anna", actor="ops-jane", source="cli",
                                        notify_email=True, press1_number="+358955512345",
                                        notify_sms=True)  # unchanged: no audit row
    assert got == VoicemailSettings(press1_number="+358955512345", notify_email=True)
    assert svc.voicemail_settings("acme", "anna") == got
    rows = svc.audit()
    assert events(rows) == [("set", "voicemail.press1_number", None, "+358955512345"),
                            ("set", "voicemail.notify_email", "false", "true")]
    assert {(e.tenant_id, e.user_id, e.actor, e.source, e.at) for e in rows} == {
        ("acme", "anna", "ops-jane", "cli", T0)}

    clock.advance(minutes=1)
    svc.update_voicemail_settings("acme", "anna", actor="+358401110001", source="ivr",
                                  press1_number=None, always_ask_pin=True)
    newest = svc.audit(limit=2)
    assert events(newest) == [("set", "voicemail.press1_number", "+358955512345", None),
                              ("set", "voicemail.always_ask_pin", "false", "true")]
    assert newest[0].at == T0 + timedelta(minutes=1) and newest[0].source == "ivr"
    # The other tenant's "anna" is another person.
    assert svc.voicemail_settings("borealis", "anna") == VoicemailSettings()


def test_no_change_writes_nothing(svc: CallStateService, raw_db: RawDb) -> None:
    assert svc.update_voicemail_settings("acme", "anna", actor="op", source="cli") == VoicemailSettings()
    assert svc.update_voicemail_settings("acme", "anna", actor="op", source="cli",
                                         notify_sms=True, play_activity=False) == VoicemailSettings()
    assert raw_db.rows("voicemail_settings") == []
    assert svc.audit() == []
    svc.update_voicemail_settings("acme", "anna", actor="op", source="cli", play_activity=True)
    svc.update_voicemail_settings("acme", "anna", actor="op", source="web", play_activity=True)
    assert len(svc.audit()) == 1


@pytest.mark.parametrize(("user", "changes", "message"), [
    ("anna", {"colour": "blue"}, "unknown voicemail setting 'colour'"),
    ("anna", {"notify_sms": "yes"}, "notify_sms must be true or false"),
    ("anna", {"play_activity": 1}, "play_activity must be true or false"),
    ("anna", {"press1_number": "0955512345"}, "E.164"),
    ("anna", {"press1_number": "+0955512345"}, "E.164"),
    ("anna", {"press1_number": " +358955512345"}, "E.164"),
    ("anna", {"press1_number": 358955512345}, "E.164"),
    ("anna", {"press1_number": "+358201243100"}, "voicemail access number"),
    ("anna", {"press1_number": "+358201243200"}, "activity-change number"),
    ("anna", {"press1_number": "+358401110001"}, "own number"),
    ("anna", {"press1_number": "+358912340000"}, "own number"),  # a tenant number ringing anna
    ("mikko", {"notify_email": True}, "e-mail address"),
    ("nora", {"play_activity": True}, "No voicemail"),
    # One bad value spoils the whole change: nothing of it is applied.
    ("anna", {"play_activity": True, "press1_number": "+358201243100"}, "voicemail access number"),
])
def test_refusals_change_nothing(svc: CallStateService, raw_db: RawDb, user: str,
                                 changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        svc.update_voicemail_settings("acme", user, actor="op", source="cli", **changes)
    assert svc.voicemail_settings("acme", user) == VoicemailSettings()
    assert raw_db.rows("voicemail_settings") == [] and svc.audit() == []


@pytest.mark.parametrize(("tenant", "user"), [("acme", "nobody"), ("nope", "anna")])
def test_unknown_users_are_refused_everywhere(svc: CallStateService, tenant: str, user: str) -> None:
    with pytest.raises(UnknownUserError):
        svc.voicemail_settings(tenant, user)
    with pytest.raises(UnknownUserError):
        svc.update_voicemail_settings(tenant, user, actor="op", source="cli", play_activity=True)
    with pytest.raises(UnknownUserError):
        svc.check_pin(tenant, user, "1234", source="ivr")
    with pytest.raises(UnknownUserError):
        svc.pin_status(tenant, user)


def test_other_numbers_are_fine_for_press1(svc: CallStateService) -> None:
    # A colleague's number is a fine customer-service target.
    got = svc.update_voicemail_settings("acme", "anna", actor="op", source="web",
                                        press1_number="+358401110002")
    assert got.press1_number == "+358401110002"


@pytest.mark.parametrize(("actor", "source"), [("", "cli"), ("op", ""), ("op", "CLI"), ("op\n", "cli"),
                                               ("x" * 201, "cli"), ("op", "a b")])
def test_actor_and_source_are_checked(svc: CallStateService, actor: str, source: str) -> None:
    with pytest.raises(SettingsError):
        svc.update_voicemail_settings("acme", "anna", actor=actor, source=source, play_activity=True)


def test_reload_swaps_the_configuration(svc: CallStateService) -> None:
    with pytest.raises(SettingsError):
        svc.update_voicemail_settings("acme", "mikko", actor="op", source="cli", notify_email=True)
    svc.reload(make_config(mikko_email="mikko@acme.example", with_nora=False))
    assert svc.update_voicemail_settings("acme", "mikko", actor="op", source="cli",
                                         notify_email=True).notify_email
    with pytest.raises(UnknownUserError):
        svc.voicemail_settings("acme", "nora")


def test_the_narrow_services_share_one_database_and_one_configuration(svc: CallStateService) -> None:
    svc.routing_state.set_call_waiting("acme", "anna", False, actor="op", source="cli")
    svc.voicemail_state.update_voicemail_settings("acme", "anna", actor="op", source="cli",
                                                  play_activity=True)
    svc.presence_state.set_presence("acme", "anna", "meeting", actor="op", source="cli")
    assert (svc.routing("acme", "anna").call_waiting, svc.voicemail_settings("acme", "anna").play_activity,
            svc.presence("acme", "anna").activity) == (False, True, "meeting")
    assert [e.field for e in reversed(svc.audit("acme", "anna"))] == [
        "call_waiting", "voicemail.play_activity", "presence.activity"]
    svc.reload(make_config(with_nora=False))
    for lookup in (svc.voicemail_state.pin_status, svc.routing_state.routing, svc.presence_state.presence):
        with pytest.raises(UnknownUserError):
            lookup("acme", "nora")


@sqlite_only  # no database: nothing to run again on another backend
def test_parse_value() -> None:
    assert parse_value("notify_sms", " Yes ") is True
    assert parse_value("always_ask_pin", "off") is False
    assert parse_value("press1_number", "none") is None
    assert parse_value("press1_number", "+358955512345") == "+358955512345"
    with pytest.raises(SettingsError, match="yes or no"):
        parse_value("notify_sms", "maybe")
    with pytest.raises(SettingsError, match="unknown"):
        parse_value("volume", "11")


def test_audit_filters_and_limit(svc: CallStateService) -> None:
    svc.update_voicemail_settings("acme", "anna", actor="op", source="cli", play_activity=True)
    svc.update_voicemail_settings("acme", "mikko", actor="op", source="cli", notify_sms=False)
    svc.update_voicemail_settings("borealis", "anna", actor="op", source="cli", always_ask_pin=True)
    assert [(e.tenant_id, e.user_id) for e in svc.audit()] == [
        ("borealis", "anna"), ("acme", "mikko"), ("acme", "anna")]
    assert [e.field for e in svc.audit("acme")] == ["voicemail.notify_sms", "voicemail.play_activity"]
    assert [e.tenant_id for e in svc.audit(user_id="anna")] == ["borealis", "acme"]
    assert [e.user_id for e in svc.audit("acme", "anna")] == ["anna"]
    assert len(svc.audit(limit=1)) == 1
    with pytest.raises(SettingsError):
        svc.audit(limit=0)


# ---------------------------------------------------------------------- PIN and lockout


def test_five_failures_lock_and_locked_refuses_even_the_right_pin(
        svc: CallStateService, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="callstate")
    for attempt in range(1, 5):
        check = svc.check_pin("acme", "anna", "731953", source="ivr", actor="+358451234567")
        assert not check.ok and check.status == PinStatus(attempt, None) and not check.locked
        clock.advance(seconds=10)
    fifth = svc.check_pin("acme", "anna", "864209", source="ivr", actor="+358451234567")
    until = clock.now + timedelta(minutes=15)
    assert not fifth.ok and fifth.locked and fifth.status == PinStatus(5, until, level=1)
    assert svc.pin_status("acme", "anna") == PinStatus(5, until, level=1)

    clock.advance(minutes=14, seconds=59)
    refused = svc.check_pin("acme", "anna", ANNA_PIN, source="ivr")
    assert not refused.ok and refused.status == PinStatus(5, until, level=1)
    # Other users (and the same id in another tenant) are not locked.
    assert svc.check_pin("acme", "mikko", "135790", source="ivr").ok
    assert svc.check_pin("borealis", "anna", "975310", source="ivr").ok

    trail = events(svc.audit("acme", "anna"))
    assert trail == [("pin_failed", "pin", str(n), str(n + 1)) for n in range(4)] + [
        ("pin_failed", "pin", "4", "5"),
        ("pin_locked", "pin", "1", until.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
        ("pin_refused", "pin", None, until.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    ]
    assert {e.actor for e in svc.audit("acme", "anna")} == {"+358451234567", "caller"}
    # Every attempt is in the log, the PIN never is (neither the right one nor the tried ones).
    text = caplog.text
    assert text.count("PIN login failed") == 5 and "PIN locked until" in text and "refused" in text
    for secret in (ANNA_PIN, "731953", "864209"):
        assert secret not in text
        assert all(secret not in str(e) for e in svc.audit())


def test_lock_expires_after_the_lock_time(svc: CallStateService, clock: FakeClock) -> None:
    for _ in range(5):
        svc.check_pin("acme", "anna", "0000", source="ivr")
    clock.advance(minutes=15)
    assert svc.pin_status("acme", "anna") == PinStatus(0, None, level=1)
    # A fresh counter: one more failure does not lock again at once.
    assert svc.check_pin("acme", "anna", "0000", source="ivr").status == PinStatus(1, None, level=1)
    assert svc.check_pin("acme", "anna", ANNA_PIN, source="ivr").ok


def test_success_resets_the_counter(svc: CallStateService) -> None:
    for _ in range(4):
        svc.check_pin("acme", "anna", "9999", source="ivr")
    ok = svc.check_pin("acme", "anna", ANNA_PIN, source="ivr")
    assert ok.ok and ok.status == PinStatus(0, None)
    for _ in range(4):
        assert not svc.check_pin("acme", "anna", "9999", source="ivr").locked
    assert events(svc.audit("acme", "anna"))[4] == ("pin_ok", "pin", "4", "0")


@pytest.mark.parametrize("tried", ["", "48026", "4802640", "４８０２６４", "480264\x00", " 480264"])
def test_near_misses_fail_without_errors(svc: CallStateService, tried: str) -> None:
    assert not svc.check_pin("acme", "anna", tried, source="ivr").ok


def test_lockout_policy_is_configurable(make_service: MakeService, clock: FakeClock) -> None:
    with make_service(lockout_attempts=2, lockout_minutes=1, clock=clock) as svc:
        svc.check_pin("acme", "anna", "0000", source="ivr")
        assert svc.check_pin("acme", "anna", "0000", source="ivr").status.locked_until == T0 + timedelta(minutes=1)
    with pytest.raises(ValueError):
        make_service(lockout_attempts=0)


def test_operator_unlock(svc: CallStateService) -> None:
    for _ in range(5):
        svc.check_pin("acme", "anna", "0000", source="ivr")
    assert svc.reset_pin_lockout("acme", "anna", actor="ops-jane", source="cli") == PinStatus()
    assert svc.check_pin("acme", "anna", ANNA_PIN, source="ivr").ok
    unlock = [e for e in svc.audit() if e.event == "pin_unlocked"]
    assert [(e.actor, e.old, e.new) for e in unlock] == [("ops-jane", "5", "0")]
    svc.reset_pin_lockout("acme", "anna", actor="ops-jane", source="cli")  # nothing to clear: no row
    assert len([e for e in svc.audit() if e.event == "pin_unlocked"]) == 1


def _series(svc: CallStateService, user: str = "anna") -> PinStatus:
    """One series of five wrong PINs; the status after it."""
    status = PinStatus()
    for _ in range(5):
        status = svc.check_pin("acme", user, "000000", source="ivr", actor="+358401234567").status
    return status


def test_each_series_locks_longer_and_the_fourth_until_unlocked(svc: CallStateService,
                                                                clock: FakeClock) -> None:
    for level, minutes in enumerate((15, 60, 24 * 60), 1):
        status = _series(svc)
        assert status == PinStatus(5, clock.now + timedelta(minutes=minutes), level=level)
        clock.advance(minutes=minutes - 1)
        assert svc.pin_status("acme", "anna").locked  # a minute before the end: still locked
        assert not svc.check_pin("acme", "anna", ANNA_PIN, source="ivr").ok
        clock.advance(minutes=1)
        # The lock ran out: a new series, at the level reached (waiting does not lower it).
        assert svc.pin_status("acme", "anna") == PinStatus(0, None, level=level)
    held = _series(svc)
    assert held == PinStatus(5, None, level=4, held=True) and held.locked
    clock.advance(days=365)
    assert svc.pin_status("acme", "anna").locked  # no end: only an operator opens it
    assert not svc.check_pin("acme", "anna", ANNA_PIN, source="ivr").ok
    locks = [e.new for e in reversed(svc.audit("acme", "anna", limit=100)) if e.event == "pin_locked"]
    assert locks[-1] == "until unlocked" and len(locks) == 4
    assert svc.pin_locks() == [("acme", "anna", held)]
    svc.reset_pin_lockout("acme", "anna", actor="ops-jane", source="cli")
    assert svc.pin_status("acme", "anna") == PinStatus() and svc.pin_locks() == []
    # Unlocked: the level starts again from the first, short lock.
    assert _series(svc).locked_until == clock.now + timedelta(minutes=15)


def test_only_a_correct_pin_lowers_the_level(svc: CallStateService, clock: FakeClock) -> None:
    _series(svc)
    clock.advance(minutes=15)
    for _ in range(4):
        svc.check_pin("acme", "anna", "000000", source="ivr")
    assert svc.check_pin("acme", "anna", ANNA_PIN, source="ivr").status == PinStatus()
    assert _series(svc).locked_until == clock.now + timedelta(minutes=15)  # level 1 again, not 2


def test_failures_counted_elsewhere_escalate_the_same_way(svc: CallStateService, clock: FakeClock) -> None:
    status = svc.count_pin_failures("acme", "anna", 7, actor="fallback", source="fallback")
    assert status == PinStatus(5, clock.now + timedelta(minutes=15), level=1)
    trail = [e.event for e in reversed(svc.audit("acme", "anna"))]
    assert trail == ["pin_failed"] * 5 + ["pin_locked"] + ["pin_refused"] * 2
    assert {e.source for e in svc.audit("acme", "anna")} == {"fallback"}
    with pytest.raises(SettingsError):
        svc.count_pin_failures("acme", "anna", 0, actor="fallback", source="fallback")


@sqlite_only
def test_an_older_database_gains_the_level_without_losing_its_locks(db_path: Path, clock: FakeClock) -> None:
    from callstate.db import Database
    old = Database(db_path, migrations=MIGRATIONS[:3])
    until = "2024-08-01T09:15:00.000000Z"
    old.write(lambda tx: tx.run("INSERT INTO pin_lockout (tenant_id, user_id, failures, locked_until, "
                                "updated_at) VALUES ('acme', 'anna', 5, ?, ?)", (until, until)))
    old.close()
    with CallStateService(db_path, CONFIG, clock=clock) as svc:
        assert svc.schema_version == MIGRATIONS[-1].version
        assert svc.pin_status("acme", "anna") == PinStatus(5, T0 + timedelta(minutes=15), level=0)


def test_no_voicemail_users_can_still_log_in(svc: CallStateService) -> None:
    # The activity number asks the same PIN (presence issue), voicemail or not.
    assert svc.check_pin("acme", "nora", "246802", source="ivr").ok


# ---------------------------------------------------------------------- several writers


def test_two_instances_on_one_file_see_each_other(make_service: MakeService, clock: FakeClock) -> None:
    with make_service(clock=clock) as app, make_service(clock=clock) as cli:
        cli.update_voicemail_settings("acme", "anna", actor="op", source="cli", play_activity=True)
        assert app.voicemail_settings("acme", "anna").play_activity
        app.update_voicemail_settings("acme", "anna", actor="+358401110001", source="ivr",
                                      always_ask_pin=True)
        assert cli.voicemail_settings("acme", "anna") == VoicemailSettings(play_activity=True,
                                                                           always_ask_pin=True)
        for _ in range(3):
            app.check_pin("acme", "anna", "0000", source="ivr")
        for _ in range(2):
            cli.check_pin("acme", "anna", "0000", source="cli")
        assert app.pin_status("acme", "anna").locked and cli.pin_status("acme", "anna").locked
        assert [e.source for e in app.audit()] == [e.source for e in cli.audit()]
        assert len(cli.audit()) == 2 + 5 + 1


def test_concurrent_threads_lose_nothing(make_service: MakeService) -> None:
    threads, each = 8, 25
    with make_service(lockout_attempts=10_000) as svc:
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def hammer(index: int) -> None:
            try:
                barrier.wait()
                # Different fields of the same row at once: every one must survive.
                field = ["play_activity", "notify_email", "always_ask_pin", "notify_sms"][index % 4]
                svc.update_voicemail_settings("acme", "anna", actor=f"t{index}", source="test",
                                              **{field: field != "notify_sms"})
                for _ in range(each):
                    svc.check_pin("acme", "anna", "0000", source="test", actor=f"t{index}")
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert svc.pin_status("acme", "anna") == PinStatus(threads * each, None)
        assert svc.voicemail_settings("acme", "anna") == VoicemailSettings(
            play_activity=True, notify_email=True, always_ask_pin=True, notify_sms=False)
        trail = svc.audit(limit=1000)
        assert len([e for e in trail if e.event == "pin_failed"]) == threads * each
        assert len([e for e in trail if e.event == "set"]) == 4
        # Each failure saw the count the one before it left: a lost update would repeat a number.
        assert sorted(int(e.new or 0) for e in trail if e.event == "pin_failed") == list(
            range(1, threads * each + 1))


def _process_worker(db_path: str, index: int, attempts: int) -> None:
    """Runs in a fresh interpreter, as a second program (the CLI beside the app) would."""
    with CallStateService(Path(db_path), CONFIG, lockout_attempts=10_000) as svc:
        for _ in range(attempts):
            svc.check_pin("acme", "mikko", "0000", source="test", actor=f"p{index}")


@sqlite_only
def test_concurrent_processes_lose_nothing(tmp_path: Path) -> None:
    # A file no process has created yet: the first opens (WAL switch, migration) race too.
    db_path = tmp_path / "fresh" / "state.sqlite3"
    procs, each = 4, 20
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_process_worker, args=(str(db_path), i, each)) for i in range(procs)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * procs
    with CallStateService(db_path, CONFIG) as svc:
        assert svc.pin_status("acme", "mikko") == PinStatus(procs * each, None)
        trail = svc.audit("acme", "mikko", limit=1000)
        assert sorted(int(e.new or 0) for e in trail) == list(range(1, procs * each + 1))
        assert {e.actor for e in trail} == {f"p{i}" for i in range(procs)}
    assert len(table_rows(db_path, "schema_version")) == len(MIGRATIONS)


def _forked_child(svc: CallStateService) -> None:
    svc.update_voicemail_settings("acme", "anna", actor="child", source="test", notify_sms=False)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connections(svc: CallStateService) -> None:
    svc.voicemail_settings("acme", "anna")  # the parent's pool now holds a connection
    child = multiprocessing.get_context("fork").Process(target=_forked_child, args=(svc,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    # The parent's pooled connection still works: the child neither used nor closed it.
    assert svc.voicemail_settings("acme", "anna").notify_sms is False
    assert [e.actor for e in svc.audit()] == ["child"]
