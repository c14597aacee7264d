"""Forwards and call waiting in the call-state service, on a real SQLite file: defaults, targets
and their refusals, the loop check, the no-answer delay, call waiting and the audit trail.

Services come from the `make_service` fixture and raw rows from `raw_db` (the same shape as in
test_callstate.py), so that a PostgreSQL run can override those two fixtures and run these again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

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
    NO_VOICEMAIL_GROUP,
    Config,
    Platform,
    Tenant,
    TenantNumber,
)
from base.outbound import OutboundPolicy
from callstate import (
    CallStateService,
    Routing,
    SettingsError,
    TargetRefused,
    UnknownUserError,
    parse_kind,
)
from callstate.routing import KINDS

VOICEMAIL_NUMBER = "+358201243100"
ACTIVITY_NUMBER = "+358201243200"
OUTSIDE = "+358501234567"  # a Finnish mobile number of nobody on the platform



def make_config(*, nora_voicemail: bool = False, anna_voicemail: bool = True) -> Config:
    return Config(
        platform=Platform(voicemail_number=VOICEMAIL_NUMBER, activity_number=ACTIVITY_NUMBER,
                          no_answer_seconds=20),
        tenants=(
            # Default policy: national numbers (+358) without the premium-rate ranges.
            Tenant(id="acme", name="Acme", domain="acme.example",
                   numbers=(TenantNumber("+358912340000", "anna"), TenantNumber("+358912340001", "mikko")),
                   users=(user("anna", "+358401110001", "101", no_voicemail=not anna_voicemail),
                          user("mikko", "+358401110002", "102"),
                          user("nora", "+358401110003", "103", lang="en", no_voicemail=not nora_voicemail))),
            # Same user id, another tenant and person.
            Tenant(id="borealis", name="Borealis", domain="borealis.example",
                   users=(user("anna", "+358501110001", "201", lang="sv"),)),
            # An explicit allow-list: Sweden only (not even Finland), minus a Swedish range.
            Tenant(id="nordic", name="Nordic", domain="nordic.example",
                   outbound=OutboundPolicy(allow=("+46",), deny=("+4690",)),
                   users=(user("olli", "+358502220001", "301"), user("petra", "+358502220002", "302"))),
            # Another country: national numbers are Swedish.
            Tenant(id="svea", name="Svea", domain="svea.example", country_code="46",
                   users=(user("sven", "+46701110001", "401", lang="sv"),)),
        ),
    )


CONFIG = make_config()


def set_immediate(svc: CallStateService, tenant: str, uid: str, target: str) -> Routing:
    return svc.set_forward(tenant, uid, "immediate", target, actor="op", source="cli")


# ---------------------------------------------------------------------- defaults


def test_voicemail_user_defaults(svc: CallStateService, raw_db: RawDb) -> None:
    assert svc.routing("acme", "anna") == Routing(immediate="none", busy="voicemail", no_answer="voicemail",
                                                  unreachable="voicemail", no_answer_seconds=20,
                                                  call_waiting=True)
    assert raw_db.rows("call_routing") == [] and svc.audit() == []


def test_no_voicemail_user_defaults(svc: CallStateService) -> None:
    assert svc.routing("acme", "nora") == Routing(immediate="none", busy="none", no_answer="none",
                                                  unreachable="none", no_answer_seconds=20, call_waiting=True)


def test_default_delay_follows_the_platform(make_service: MakeService) -> None:
    config = replace(CONFIG, platform=replace(CONFIG.platform, no_answer_seconds=35))
    assert make_service(config).routing("acme", "anna").no_answer_seconds == 35


@pytest.mark.parametrize(("tenant", "uid"), [("acme", "nobody"), ("nope", "anna")])
def test_unknown_users_are_refused(svc: CallStateService, tenant: str, uid: str) -> None:
    with pytest.raises(UnknownUserError):
        svc.routing(tenant, uid)
    with pytest.raises(UnknownUserError):
        set_immediate(svc, tenant, uid, OUTSIDE)
    with pytest.raises(UnknownUserError):
        svc.set_call_waiting(tenant, uid, False, actor="op", source="cli")


# ---------------------------------------------------------------------- set and clear


@pytest.mark.parametrize("kind", KINDS)
def test_set_and_clear_each_kind(make_service: MakeService, clock: FakeClock, kind: str) -> None:
    svc = make_service(clock=clock)
    default = svc.routing("acme", "anna").forward(kind)
    got = svc.set_forward("acme", "anna", kind, OUTSIDE, actor="ops-jane", source="cli")
    assert got.forward(kind) == OUTSIDE
    assert svc.routing("acme", "anna") == got
    assert make_service().routing("acme", "anna") == got  # stored, not just returned
    others = [k for k in KINDS if k != kind]
    assert [got.forward(k) for k in others] == [Routing(busy="voicemail", no_answer="voicemail",
                                                        unreachable="voicemail").forward(k) for k in others]

    cleared = svc.set_forward("acme", "anna", kind, "none", actor="ops-jane", source="cli")
    assert cleared.forward(kind) == "none"
    assert make_service().routing("acme", "anna").forward(kind) == "none"
    assert changes(svc) == [(f"forward.{kind}", default, OUTSIDE), (f"forward.{kind}", OUTSIDE, "none")]


@pytest.mark.parametrize("word", ["none", "off", "", " NONE "])
def test_words_that_clear(svc: CallStateService, word: str) -> None:
    svc.set_forward("acme", "anna", "busy", OUTSIDE, actor="op", source="cli")
    assert svc.set_forward("acme", "anna", "busy", word, actor="op", source="cli").busy == "none"


def test_voicemail_target(svc: CallStateService) -> None:
    svc.set_forward("acme", "anna", "busy", "none", actor="op", source="cli")
    assert svc.set_forward("acme", "anna", "busy", "VM", actor="op", source="cli").busy == "voicemail"
    got = svc.set_forward("acme", "anna", "immediate", "voicemail", actor="op", source="cli")
    assert got.immediate == "voicemail"
    assert changes(svc)[-1] == ("forward.immediate", "none", "voicemail")


def test_no_voicemail_user_cannot_forward_to_voicemail(svc: CallStateService, raw_db: RawDb) -> None:
    for kind in KINDS:
        with pytest.raises(SettingsError, match=NO_VOICEMAIL_GROUP):
            svc.set_forward("acme", "nora", kind, "voicemail", actor="op", source="cli")
    assert raw_db.rows("call_routing") == [] and svc.audit() == []
    # Numbers are fine for a "No voicemail" user.
    assert svc.set_forward("acme", "nora", "no_answer", OUTSIDE, actor="op", source="cli").no_answer == OUTSIDE


@pytest.mark.parametrize(("tenant", "uid", "dialled", "stored"), [
    ("acme", "anna", "0501234567", "+358501234567"),  # national, by the tenant's country
    ("acme", "anna", "050 123 4567", "+358501234567"),
    ("acme", "anna", "050-1234567", "+358501234567"),
    ("acme", "anna", "00358501234567", "+358501234567"),  # 00-international
    ("acme", "anna", "+358501234567", "+358501234567"),
    ("svea", "sven", "0701234567", "+46701234567"),  # national in Sweden
    ("acme", "anna", "102", "+358401110002"),  # a colleague's extension
    ("acme", "nora", "101", "+358401110001"),
    ("borealis", "anna", "0401110001", "+358401110001"),  # a user of another tenant: a number like any
])
def test_targets_are_stored_as_e164(svc: CallStateService, tenant: str, uid: str, dialled: str,
                                    stored: str) -> None:
    assert set_immediate(svc, tenant, uid, dialled).immediate == stored
    assert svc.routing(tenant, uid).immediate == stored
    assert changes(svc, tenant, uid) == [("forward.immediate", "none", stored)]


def test_other_tenants_extensions_are_not_colleagues(svc: CallStateService) -> None:
    # 201 is borealis's anna; for acme it is no extension, and bare digits are not guessed at.
    with pytest.raises(TargetRefused) as refused:
        set_immediate(svc, "acme", "anna", "201")
    assert refused.value.reason == "invalid-number"


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("tenant", "uid", "dialled", "reason"), [
    ("acme", "anna", VOICEMAIL_NUMBER, "voicemail-number"),
    ("acme", "anna", "0201243100", "voicemail-number"),
    ("acme", "anna", ACTIVITY_NUMBER, "activity-number"),
    ("acme", "anna", "00358201243200", "activity-number"),
    ("acme", "anna", "+358401110001", "own-number"),
    ("acme", "anna", "0401110001", "own-number"),
    ("acme", "anna", "101", "own-number"),  # her own extension
    ("acme", "anna", "+358912340000", "own-number"),  # a tenant number that rings anna
    ("acme", "anna", "abc", "invalid-number"),
    ("acme", "anna", "999", "invalid-number"),  # bare digits that are no extension
    ("acme", "anna", "+12", "invalid-number"),
    ("acme", "anna", "0+358501234567", "invalid-number"),
    ("acme", "anna", "+3585012345678901234", "invalid-number"),
    ("acme", "anna", "+358600123456", "number-barred"),  # premium rate
    ("acme", "anna", "0700123456", "number-barred"),
    ("acme", "anna", "+358100123456", "number-barred"),
    ("acme", "anna", "+46701234567", "number-barred"),  # abroad: not on the default allow-list
    ("acme", "anna", "0046701234567", "number-barred"),
    ("nordic", "olli", OUTSIDE, "number-barred"),  # Finland is not on nordic's allow-list
    ("nordic", "olli", "+46901234567", "number-barred"),  # deny wins over allow
    ("nordic", "olli", VOICEMAIL_NUMBER, "voicemail-number"),  # the service numbers, whatever the list
    ("svea", "sven", "+358501234567", "number-barred"),
])
@pytest.mark.parametrize("kind", ["immediate", "busy"])
def test_refused_targets_change_nothing(make_service: MakeService, clock: FakeClock, raw_db: RawDb,
                                        tenant: str, uid: str, dialled: str, reason: str,
                                        kind: str) -> None:
    svc = make_service(clock=clock)
    # Something set before, so that "unchanged" is not merely "the defaults".
    before = svc.set_forward(tenant, uid, "no_answer", "voicemail" if tenant != "nordic" else "+46701234567",
                             actor="op", source="cli", no_answer_seconds=30)
    rows, audit = raw_db.rows("call_routing"), svc.audit()
    with pytest.raises(TargetRefused) as refused:
        svc.set_forward(tenant, uid, kind, dialled, actor="op", source="cli")
    assert refused.value.reason == reason
    assert isinstance(refused.value, SettingsError) and str(refused.value)
    assert svc.routing(tenant, uid) == before
    assert make_service().routing(tenant, uid) == before
    assert raw_db.rows("call_routing") == rows
    assert svc.audit() == audit


@pytest.mark.parametrize(("tenant", "uid", "dialled", "stored"), [
    ("nordic", "olli", "+46701234567", "+46701234567"),  # allowed by the tenant's allow-list
    ("nordic", "olli", "0046701234567", "+46701234567"),
    ("nordic", "olli", "302", "+358502220002"),  # a colleague: outside the allow-list, still fine
    ("nordic", "olli", "+358502220002", "+358502220002"),
    ("nordic", "olli", "0502220002", "+358502220002"),
    ("acme", "anna", "+358912340001", "+358912340001"),  # a tenant number that rings a colleague
])
def test_allowed_targets(svc: CallStateService, tenant: str, uid: str, dialled: str, stored: str) -> None:
    assert svc.set_forward(tenant, uid, "busy", dialled, actor="op", source="cli").busy == stored


def test_colleague_in_a_denied_range_is_still_allowed(make_service: MakeService) -> None:
    # A colleague's number is always reachable, even one the deny-list covers.
    acme = CONFIG.tenants[0]
    strict = replace(acme, outbound=OutboundPolicy(allow=("+358",), deny=("+35840",)))
    svc = make_service(replace(CONFIG, tenants=(strict, *CONFIG.tenants[1:])))
    assert set_immediate(svc, "acme", "anna", "102").immediate == "+358401110002"
    with pytest.raises(TargetRefused) as refused:
        set_immediate(svc, "acme", "anna", "+358401234567")  # same range, not a colleague
    assert refused.value.reason == "number-barred"


@pytest.mark.parametrize(("kind", "target", "match"), [
    ("sideways", OUTSIDE, "unknown forward"),
    ("immediate", 358501234567, "text"),
    ("immediate", None, "text"),
])
def test_bad_kinds_and_values(svc: CallStateService, raw_db: RawDb, kind: str, target: Any, match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        svc.set_forward("acme", "anna", kind, target, actor="op", source="cli")
    assert raw_db.rows("call_routing") == [] and svc.audit() == []


def test_parse_kind() -> None:
    assert [parse_kind(w) for w in ("Immediate", "all", "CFU", "no-answer", " busy ", "unreachable")] == [
        "immediate", "immediate", "immediate", "no_answer", "busy", "unreachable"]
    with pytest.raises(SettingsError, match="unknown forward"):
        parse_kind("sometimes")


# ---------------------------------------------------------------------- loops


def test_a_forward_back_to_the_forwarder_is_refused(svc: CallStateService, raw_db: RawDb) -> None:
    set_immediate(svc, "acme", "anna", "102")  # anna → mikko
    rows, audit = raw_db.rows("call_routing"), svc.audit()
    for dialled in ("101", "+358401110001", "+358912340000"):  # anna, by extension, number, tenant number
        with pytest.raises(TargetRefused) as refused:
            set_immediate(svc, "acme", "mikko", dialled)
        assert refused.value.reason == "loop"
    assert svc.routing("acme", "mikko").immediate == "none"
    assert raw_db.rows("call_routing") == rows and svc.audit() == audit


def test_a_longer_loop_is_refused(svc: CallStateService) -> None:
    set_immediate(svc, "acme", "anna", "102")  # anna → mikko
    set_immediate(svc, "acme", "mikko", "103")  # mikko → nora
    with pytest.raises(TargetRefused) as refused:
        set_immediate(svc, "acme", "nora", "101")  # nora → anna would close the circle
    assert refused.value.reason == "loop"
    assert svc.routing("acme", "nora").immediate == "none"


def test_chains_without_a_loop_are_fine(svc: CallStateService) -> None:
    set_immediate(svc, "acme", "anna", "102")
    set_immediate(svc, "acme", "mikko", OUTSIDE)
    # nora → anna → mikko → outside
    assert set_immediate(svc, "acme", "nora", "101").immediate == "+358401110001"
    # Only immediate forwards loop at once; a busy forward back is the router's business.
    assert svc.set_forward("acme", "mikko", "busy", "101", actor="op", source="cli").busy == "+358401110001"
    # Forwarding to voicemail or nowhere never loops.
    assert set_immediate(svc, "acme", "mikko", "voicemail").immediate == "voicemail"


def test_a_loop_through_another_tenant_is_refused(svc: CallStateService) -> None:
    set_immediate(svc, "acme", "anna", "+358501110001")  # acme anna → borealis anna
    with pytest.raises(TargetRefused) as refused:
        set_immediate(svc, "borealis", "anna", "+358401110001")
    assert refused.value.reason == "loop"


# ---------------------------------------------------------------------- the no-answer delay


@pytest.mark.parametrize("seconds", [5, 30, 120])
def test_delay_in_bounds(make_service: MakeService, seconds: int) -> None:
    svc = make_service()
    got = svc.set_forward("acme", "anna", "no_answer", OUTSIDE, actor="op", source="cli",
                          no_answer_seconds=seconds)
    assert (got.no_answer, got.no_answer_seconds) == (OUTSIDE, seconds)
    assert make_service().routing("acme", "anna").no_answer_seconds == seconds


@pytest.mark.parametrize("seconds", [4, 121, 0, -20, True, "30", 30.0])
def test_delay_out_of_bounds_changes_nothing(svc: CallStateService, raw_db: RawDb, seconds: Any) -> None:
    with pytest.raises(SettingsError, match="5 to 120"):
        svc.set_forward("acme", "anna", "no_answer", OUTSIDE, actor="op", source="cli",
                        no_answer_seconds=seconds)
    assert svc.routing("acme", "anna").no_answer == "voicemail"
    assert raw_db.rows("call_routing") == [] and svc.audit() == []


@pytest.mark.parametrize("kind", ["immediate", "busy", "unreachable"])
def test_delay_belongs_to_no_answer_only(svc: CallStateService, raw_db: RawDb, kind: str) -> None:
    with pytest.raises(SettingsError, match="no_answer"):
        svc.set_forward("acme", "anna", kind, OUTSIDE, actor="op", source="cli", no_answer_seconds=30)
    assert raw_db.rows("call_routing") == [] and svc.audit() == []


def test_delay_is_kept_when_the_target_changes(svc: CallStateService) -> None:
    svc.set_forward("acme", "anna", "no_answer", OUTSIDE, actor="op", source="cli", no_answer_seconds=40)
    got = svc.set_forward("acme", "anna", "no_answer", "voicemail", actor="op", source="cli")
    assert (got.no_answer, got.no_answer_seconds) == ("voicemail", 40)
    assert changes(svc) == [("forward.no_answer", "voicemail", OUTSIDE),
                            ("forward.no_answer_seconds", "20", "40"),
                            ("forward.no_answer", OUTSIDE, "voicemail")]


# ---------------------------------------------------------------------- call waiting


def test_call_waiting_on_and_off(make_service: MakeService, clock: FakeClock, raw_db: RawDb) -> None:
    svc = make_service(clock=clock)
    assert svc.routing("acme", "anna").call_waiting is True
    assert svc.set_call_waiting("acme", "anna", True, actor="op", source="cli").call_waiting is True
    assert svc.audit() == []  # on was already on
    off = svc.set_call_waiting("acme", "anna", False, actor="+358401110001", source="code")
    assert off.call_waiting is False
    assert make_service().routing("acme", "anna").call_waiting is False
    assert svc.set_call_waiting("acme", "anna", False, actor="op", source="cli").call_waiting is False
    clock.advance(minutes=1)
    assert svc.set_call_waiting("acme", "anna", True, actor="op", source="cli").call_waiting is True
    assert changes(svc) == [("call_waiting", "on", "off"), ("call_waiting", "off", "on")]
    assert svc.routing("acme", "mikko").call_waiting is True  # one user's switch only
    # Forwards are untouched by call waiting.
    assert svc.routing("acme", "anna").busy == "voicemail"
    assert len(raw_db.rows("call_routing")) == 1


@pytest.mark.parametrize("value", [1, 0, "on", None])
def test_call_waiting_takes_a_real_bool(svc: CallStateService, raw_db: RawDb, value: Any) -> None:
    with pytest.raises(SettingsError):
        svc.set_call_waiting("acme", "anna", value, actor="op", source="cli")
    assert raw_db.rows("call_routing") == [] and svc.audit() == []


# ---------------------------------------------------------------------- audit trail


def test_audit_rows_name_actor_source_and_values(svc: CallStateService, clock: FakeClock) -> None:
    svc.set_forward("acme", "anna", "immediate", "0501234567", actor="+358401110001", source="code")
    clock.advance(minutes=1)
    svc.set_forward("acme", "anna", "no_answer", "102", actor="ops-jane", source="cli", no_answer_seconds=15)
    clock.advance(minutes=1)
    svc.set_call_waiting("acme", "anna", False, actor="web:anna", source="web")
    rows = list(reversed(svc.audit()))
    assert [(e.tenant_id, e.user_id, e.actor, e.source, e.event, e.field, e.old, e.new, e.at) for e in rows] == [
        ("acme", "anna", "+358401110001", "code", "set", "forward.immediate", "none", OUTSIDE, T0),
        ("acme", "anna", "ops-jane", "cli", "set", "forward.no_answer", "voicemail", "+358401110002",
         T0 + timedelta(minutes=1)),
        ("acme", "anna", "ops-jane", "cli", "set", "forward.no_answer_seconds", "20", "15",
         T0 + timedelta(minutes=1)),
        ("acme", "anna", "web:anna", "web", "set", "call_waiting", "on", "off", T0 + timedelta(minutes=2)),
    ]


def test_setting_the_same_value_writes_no_audit_row(svc: CallStateService) -> None:
    set_immediate(svc, "acme", "anna", OUTSIDE)
    set_immediate(svc, "acme", "anna", "0501234567")  # the same number, written otherwise
    set_immediate(svc, "acme", "anna", "+358 50 123 4567")
    assert len(svc.audit()) == 1


def test_explicit_default_is_stored_without_an_audit_row(svc: CallStateService, raw_db: RawDb) -> None:
    # "voicemail" is the default for anna's busy calls: nothing changes, so nothing is audited,
    # but the explicit choice is kept.
    assert svc.set_forward("acme", "anna", "busy", "voicemail", actor="op", source="cli").busy == "voicemail"
    assert svc.audit() == []
    assert [r[:4] for r in raw_db.rows("call_routing")] == [("acme", "anna", None, "voicemail")]


def test_actor_and_source_are_checked(svc: CallStateService, raw_db: RawDb) -> None:
    with pytest.raises(SettingsError):
        svc.set_forward("acme", "anna", "busy", OUTSIDE, actor="", source="cli")
    with pytest.raises(SettingsError):
        svc.set_call_waiting("acme", "anna", False, actor="op", source="Bad Source")
    assert raw_db.rows("call_routing") == [] and svc.audit() == []


def test_reset_puts_everything_back_to_the_defaults(make_service: MakeService, clock: FakeClock,
                                                     raw_db: RawDb) -> None:
    svc = make_service(clock=clock)
    defaults = svc.routing("acme", "anna")
    assert svc.reset_routing("acme", "anna", actor="op", source="cli") == defaults
    assert raw_db.rows("call_routing") == [] and svc.audit() == []  # nothing to reset

    set_immediate(svc, "acme", "anna", OUTSIDE)
    svc.set_forward("acme", "anna", "busy", "none", actor="op", source="cli")
    svc.set_forward("acme", "anna", "no_answer", "voicemail", actor="op", source="cli", no_answer_seconds=60)
    svc.set_call_waiting("acme", "anna", False, actor="op", source="cli")
    set_immediate(svc, "acme", "mikko", OUTSIDE)
    clock.advance(minutes=1)
    before = len(svc.audit())
    assert svc.reset_routing("acme", "anna", actor="ops-jane", source="cli") == defaults
    assert make_service().routing("acme", "anna") == defaults
    assert make_service().routing("acme", "mikko").immediate == OUTSIDE  # only anna's
    reset = [e for e in reversed(svc.audit()) if e.at == T0 + timedelta(minutes=1)]
    assert len(svc.audit()) == before + len(reset)
    assert {(e.field, e.old, e.new, e.actor) for e in reset} == {
        ("forward.immediate", OUTSIDE, "none", "ops-jane"), ("forward.busy", "none", "voicemail", "ops-jane"),
        ("forward.no_answer_seconds", "60", "20", "ops-jane"), ("call_waiting", "off", "on", "ops-jane")}
    # Reset means "the defaults", which follow the YAML: no explicit value is left behind.
    svc.reload(make_config(anna_voicemail=False))
    assert svc.routing("acme", "anna").busy == "none"


# ---------------------------------------------------------------------- configuration changes


def test_stored_voicemail_reads_none_after_moving_to_no_voicemail(make_service: MakeService,
                                                                   raw_db: RawDb) -> None:
    svc = make_service()
    svc.set_forward("acme", "anna", "busy", "voicemail", actor="op", source="cli")
    svc.set_forward("acme", "anna", "immediate", "voicemail", actor="op", source="cli")
    svc.set_forward("acme", "anna", "no_answer", OUTSIDE, actor="op", source="cli")
    assert svc.routing("acme", "anna").immediate == "voicemail"
    moved = make_config(anna_voicemail=False)
    # The same database read with the new YAML, by a new process and by a reloaded one.
    for reader in (make_service(moved), svc):
        reader.reload(moved)
        got = reader.routing("acme", "anna")
        assert (got.immediate, got.busy, got.no_answer, got.unreachable) == ("none", "none", OUTSIDE, "none")
    # The stored value is kept: back in a voicemail group, the choice comes back.
    assert ("voicemail", "voicemail") == raw_db.rows("call_routing")[0][2:4]
    svc.reload(CONFIG)
    assert svc.routing("acme", "anna").immediate == "voicemail"


def test_defaults_follow_the_yaml(make_service: MakeService) -> None:
    svc = make_service()
    assert svc.routing("acme", "nora").busy == "none"
    svc.reload(make_config(nora_voicemail=True))
    assert svc.routing("acme", "nora").busy == "voicemail"


def test_two_services_on_one_file_see_each_others_changes(make_service: MakeService) -> None:
    code, cli = make_service(), make_service()
    set_immediate(code, "acme", "anna", "102")
    assert cli.routing("acme", "anna").immediate == "+358401110002"
    cli.set_call_waiting("acme", "anna", False, actor="op", source="cli")
    cli.set_forward("acme", "anna", "no_answer", "0501234567", actor="op", source="cli", no_answer_seconds=10)
    got = code.routing("acme", "anna")
    assert (got.immediate, got.no_answer, got.no_answer_seconds, got.call_waiting) == (
        "+358401110002", OUTSIDE, 10, False)
    # The loop check of one sees what the other stored.
    with pytest.raises(TargetRefused):
        set_immediate(cli, "acme", "mikko", "101")
    set_immediate(code, "acme", "anna", "none")
    assert set_immediate(cli, "acme", "mikko", "101").immediate == "+358401110001"
    assert len(code.audit()) == len(cli.audit()) == 6


def test_schema_has_the_routing_migration(svc: CallStateService, raw_db: RawDb) -> None:
    assert svc.schema_version >= 2
    assert (2, "forwards and call waiting") in [r[:2] for r in raw_db.rows("schema_version")]
