"""The home page's login limits and one-time codes in the call-state service (any backend: the
PostgreSQL module of tests/e2e runs these again): attempts counted before their check, the
user's escalating lock and the address's, codes issued within the sending limits, tried a
bounded number of times, and exchanged once for a ticket that is used up once."""

from __future__ import annotations

import pytest
from callstate_support import (  # noqa: F401  (fixtures are used by name)
    FakeClock,
    MakeService,
    RawDb,
    clock,
    db_path,
    make_service,
    raw_db,
    svc,
)
from people import user

from base.model import Config, Platform, Tenant
from callstate import CallStateService
from callstate.web_logins import (
    CODE_REFUSED,
    CODE_USED,
    LOGIN_LOCKED,
    LOGIN_UNLOCKED,
    WebLoginState,
)

CONFIG = Config(
    platform=Platform(),
    tenants=(
        Tenant(id="acme", name="Acme", domain="acme.example",
               users=(user("anna", "+358401110001", "101"), user("mikko", "+358401110002", "102"))),
    ),
)
HOME = "192.0.2.1"


def fail(logins: WebLoginState, n: int, address: str = HOME, uid: str | None = "anna") -> list[bool]:
    """`n` attempts for anna (or nobody) that turn out wrong: whether each was let through."""
    allowed = []
    for _ in range(n):
        admission = logins.claim_login("acme" if uid else None, uid, address, actor="t")
        allowed.append(admission.allowed)
        if admission.allowed:
            logins.login_failed("acme" if uid else None, uid, address, "wrong password", actor="t")
    return allowed


def test_the_user_lock_escalates_and_a_success_ends_the_series(svc: CallStateService, clock: FakeClock) -> None:
    logins = svc.web_logins
    p = logins.policy
    assert fail(logins, p.user_attempts + 1) == [True] * p.user_attempts + [False]
    lock = logins.user_lock("acme", "anna")
    assert lock.locked and lock.level == 1
    assert LOGIN_LOCKED in [e.event for e in svc.audit("acme", "anna")]
    clock.advance(minutes=p.user_steps[0] + 1)
    assert not logins.user_lock("acme", "anna").locked
    assert fail(logins, p.user_attempts + 1)[-1] is False
    assert logins.user_lock("acme", "anna").level == 2  # the next step
    clock.advance(minutes=p.user_steps[1] + 1)
    assert logins.claim_login("acme", "anna", HOME, actor="t").allowed
    logins.login_ok("acme", "anna", HOME)
    assert logins.user_lock("acme", "anna").level == 0 and not logins.user_lock("acme", "anna").locked
    assert not logins.user_lock("acme", "mikko").locked  # another user's series is their own


def test_an_address_is_locked_whoever_it_names_and_ipv6_counts_by_64(svc: CallStateService) -> None:
    logins = svc.web_logins
    p = logins.policy
    # Within the users' own limits (a user name each few tries, the rest naming nobody).
    names = [None, None, None, "anna", "mikko"] * p.address_attempts
    allowed = [fail(logins, 1, "2001:db8:7:7::1" if n % 2 else "2001:db8:7:7:abcd::9", uid)[0]
               for n, uid in enumerate(names[: p.address_attempts + 1])]
    assert allowed[: p.address_attempts] == [True] * p.address_attempts and allowed[-1] is False
    assert logins.address_lock("2001:db8:7:7::42").locked
    assert not logins.address_lock("2001:db8:7:8::1").locked
    assert [scope for scope, _, _ in logins.locks()].count("address") == 1
    assert logins.unlock_address("2001:db8:7:7::1", actor="ops", source="cli")
    assert not logins.address_lock("2001:db8:7:7::1").locked


def test_codes_are_limited_per_user_and_checked_before_a_hash_is_made(svc: CallStateService,
                                                                      clock: FakeClock) -> None:
    logins = svc.web_logins
    p = logins.policy
    for n in range(p.sends_per_user):
        assert logins.may_send_code("acme", "anna", HOME)
        assert logins.issue_code("acme", "anna", f"hash{n}", HOME, actor="t") is None
    assert not logins.may_send_code("acme", "anna", HOME)
    assert logins.issue_code("acme", "anna", "hash-x", HOME, actor="t") == "too many codes for the user"
    assert CODE_REFUSED in [e.event for e in svc.audit("acme", "anna")]
    assert logins.may_send_code("acme", "mikko", HOME)
    assert logins.issue_code("acme", "anna", "by-ops", HOME, actor="ops", source="cli", limited=False) is None
    clock.advance(minutes=p.send_window_minutes + 1)
    assert logins.may_send_code("acme", "anna", HOME)


def test_a_code_is_tried_a_few_times_then_exchanged_once_for_a_ticket(svc: CallStateService,
                                                                     clock: FakeClock) -> None:
    logins = svc.web_logins
    p = logins.policy
    assert logins.claim_code("acme", "anna", HOME, actor="t") is None  # no code yet
    logins.issue_code("acme", "anna", "the-hash", HOME, actor="t")
    assert logins.pending_code("acme", "anna") is not None
    for _ in range(p.code_attempts):
        assert logins.claim_code("acme", "anna", HOME, actor="t") == "the-hash"
    assert logins.claim_code("acme", "anna", HOME, actor="t") is None  # used up: void
    assert logins.pending_code("acme", "anna") is None

    logins.issue_code("acme", "anna", "second", HOME, actor="t")
    assert logins.claim_code("acme", "anna", HOME, actor="t") == "second"
    assert not logins.code_ok("acme", "anna", "first", "ticket-hash", HOME, actor="t")  # replaced meanwhile
    assert logins.code_ok("acme", "anna", "second", "ticket-hash", HOME, actor="t")
    assert CODE_USED in [e.event for e in svc.audit("acme", "anna")]
    assert logins.ticket_owner("ticket-hash") == ("acme", "anna")
    fail(logins, p.user_attempts + 1)  # locked meanwhile: the ticket proves the phone and lifts it
    assert logins.take_ticket("ticket-hash", actor="t") == ("acme", "anna")
    assert LOGIN_UNLOCKED in [e.event for e in svc.audit("acme", "anna")]
    assert not logins.user_lock("acme", "anna").locked
    assert logins.take_ticket("ticket-hash", actor="t") is None  # once
    assert logins.ticket_owner("ticket-hash") is None


def test_an_expired_code_or_ticket_is_nothing(svc: CallStateService, clock: FakeClock) -> None:
    logins = svc.web_logins
    logins.issue_code("acme", "anna", "h", HOME, actor="t")
    clock.advance(minutes=logins.policy.code_minutes + 1)
    assert logins.claim_code("acme", "anna", HOME, actor="t") is None
    logins.issue_code("acme", "anna", "h2", HOME, actor="t", limited=False)
    assert logins.claim_code("acme", "anna", HOME, actor="t") == "h2"
    assert logins.code_ok("acme", "anna", "h2", "t2", HOME, actor="t")
    clock.advance(minutes=logins.policy.ticket_minutes + 1)
    assert logins.ticket_owner("t2") is None and logins.take_ticket("t2", actor="t") is None


def test_a_code_is_stored_as_the_hash_given_and_only_for_a_known_user(svc: CallStateService, raw_db: RawDb) -> None:
    svc.web_logins.issue_code("acme", "anna", "$argon2id$of-the-code", HOME, actor="t")
    rows = raw_db.rows("web_login_codes")
    assert len(rows) == 1 and "$argon2id$of-the-code" in rows[0]
    with pytest.raises(Exception):  # noqa: B017 (any refusal: the user must exist)
        svc.web_logins.issue_code("acme", "ghost", "h", HOME, actor="t")
