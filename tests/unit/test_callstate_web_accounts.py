"""Home-page passwords and sessions in the call-state service (any backend: the PostgreSQL
module of tests/e2e runs these again). The service stores hashes it is given and only SHA-256
of session tokens; sessions end when idle, at their end, on logout and on a password change."""

from __future__ import annotations

from datetime import timedelta

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
from callstate import CallStateService, UnknownUserError
from callstate.web_accounts import token_hash

CONFIG = Config(
    platform=Platform(),
    tenants=(
        Tenant(id="acme", name="Acme", domain="acme.example",
               users=(user("anna", "+358401110001", "101"), user("mikko", "+358401110002", "102"))),
        Tenant(id="nordic", name="Nordic", domain="nordic.example", users=(user("anna", "+358502220001", "101"),)),
    ),
)
IDLE = timedelta(minutes=30)
LIFE = timedelta(hours=12)


def open_(svc: CallStateService, tenant: str = "acme", uid: str = "anna", idle: timedelta = IDLE):  # type: ignore[no-untyped-def]
    return svc.web_accounts.open_session(tenant, uid, address="192.0.2.1", idle=idle, max_age=LIFE,
                                         actor=f"web:{uid}@{tenant}")


def test_password_hashes_are_kept_per_user(svc: CallStateService, raw_db: RawDb) -> None:
    accounts = svc.web_accounts
    assert accounts.password_hash("acme", "anna") is None
    accounts.set_password_hash("acme", "anna", "$argon2id$one", actor="web:anna@acme", source="web")
    accounts.set_password_hash("acme", "anna", "$argon2id$two", actor="web:anna@acme", source="web")
    assert accounts.password_hash("acme", "anna") == "$argon2id$two"
    assert accounts.password_hash("nordic", "anna") is None  # the same id in another tenant
    assert [row[:3] for row in raw_db.rows("web_accounts")] == [("acme", "anna", "$argon2id$two")]
    audit = [(e.event, e.field, e.old, e.new) for e in svc.audit("acme", "anna")]
    assert ("password_set", "web.password", "set", "set") in audit  # never the hash itself
    with pytest.raises(UnknownUserError):
        accounts.set_password_hash("acme", "ghost", "$argon2id$x", actor="x", source="web")


def test_a_session_is_found_by_its_token_only(svc: CallStateService, raw_db: RawDb) -> None:
    opened = open_(svc)
    found = svc.web_accounts.session(opened.token, idle=IDLE)
    assert found is not None and (found.tenant_id, found.user_id) == ("acme", "anna")
    assert found.csrf_token == opened.session.csrf_token
    # Only the token's hash is stored.
    stored = raw_db.rows("web_sessions")
    assert [row[0] for row in stored] == [token_hash(opened.token)]
    assert opened.token not in repr(stored)
    for wrong in ("", opened.token[:-1], "x" * 500, token_hash(opened.token)):
        assert svc.web_accounts.session(wrong, idle=IDLE) is None


def test_idle_sessions_end_and_busy_ones_are_renewed(svc: CallStateService, clock: FakeClock) -> None:
    opened = open_(svc)
    clock.advance(minutes=20)
    assert svc.web_accounts.session(opened.token, idle=IDLE) is not None  # renews the idle time
    clock.advance(minutes=20)
    assert svc.web_accounts.session(opened.token, idle=IDLE) is not None
    clock.advance(minutes=31)
    assert svc.web_accounts.session(opened.token, idle=IDLE) is None


def test_a_session_ends_at_its_end_however_busy(svc: CallStateService, clock: FakeClock) -> None:
    opened = open_(svc)
    for _ in range(12 * 4):
        clock.advance(minutes=15)
        if svc.web_accounts.session(opened.token, idle=IDLE) is None:
            break
    assert clock.now - opened.session.created_at == LIFE


def test_logout_and_password_change_end_sessions(svc: CallStateService) -> None:
    accounts = svc.web_accounts
    first, second, kept, other = open_(svc), open_(svc), open_(svc), open_(svc, uid="mikko")
    assert accounts.end_session(first.token, actor="web:anna@acme")
    assert not accounts.end_session(first.token, actor="web:anna@acme")
    assert accounts.session(first.token, idle=IDLE) is None
    ended = accounts.set_password_hash("acme", "anna", "$argon2id$new", actor="web:anna@acme", source="web",
                                       keep_token=kept.token)
    assert ended == 1  # `second`; `kept` is the session that changed it
    assert accounts.session(second.token, idle=IDLE) is None
    assert accounts.session(kept.token, idle=IDLE) is not None
    assert accounts.session(other.token, idle=IDLE) is not None  # another user's
    assert accounts.end_sessions("acme", "anna", actor="operator", source="cli") == 1
    assert accounts.session(kept.token, idle=IDLE) is None


def test_a_second_node_sees_the_same_sessions(make_service: MakeService, clock: FakeClock) -> None:
    one, two = make_service(clock=clock), make_service(clock=clock)
    opened = open_(one)
    assert two.web_accounts.session(opened.token, idle=IDLE) is not None
    two.web_accounts.end_session(opened.token, actor="web:anna@acme")
    assert one.web_accounts.session(opened.token, idle=IDLE) is None


def test_a_user_removed_from_the_yaml_has_no_session(make_service: MakeService, clock: FakeClock) -> None:
    svc = make_service(clock=clock)
    opened = open_(svc, uid="mikko")
    acme = CONFIG.tenants[0]
    svc.reload(Config(CONFIG.platform, (Tenant(id="acme", name="Acme", domain="acme.example",
                                               users=acme.users[:1]), CONFIG.tenants[1])))
    assert svc.web_accounts.session(opened.token, idle=IDLE) is None
