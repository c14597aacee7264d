"""Personal contacts in the call-state service: each user's own list, validated and normalised,
audited, isolated by owner; the directory's many-user presence read. Services come from the
`make_service` fixture, so tests/e2e/test_callstate_contacts_postgres.py runs these again on a real
PostgreSQL."""

from __future__ import annotations

import callstate_support as support
import pytest
from callstate_support import FakeClock, RawDb
from people import user

from base.model import Config, Platform, Tenant
from callstate import CallStateService, UnknownUserError
from callstate.contacts_state import ContactError, UnknownContact

# The shared fixtures, by name (a PostgreSQL run replaces make_service and raw_db).
clock, db_path, make_service, raw_db, svc = (support.clock, support.db_path, support.make_service,
                                             support.raw_db, support.svc)

CONFIG = Config(platform=Platform(), tenants=(
    Tenant(id="acme", name="Acme", domain="acme.example",
           users=(user("anna", "+358401110001", "101"), user("mikko", "+358401110002", "102"))),
    Tenant(id="nordic", name="Nordic", domain="nordic.example", country_code="46",
           users=(user("olli", "+46702220001", "301"),)),
))


def add(svc: CallStateService, tenant: str, uid: str, name: str, number: str, note: str = "") -> str:
    return svc.contacts.add_contact(tenant, uid, name, number, note, actor="web:x", source="web").id


def test_numbers_are_read_in_the_tenants_country(svc: CallStateService) -> None:
    add(svc, "acme", "anna", "Local", "050 555 0101")
    add(svc, "nordic", "olli", "Lokal", "070-123 45 67")
    add(svc, "nordic", "olli", "Abroad", "00358 50 555 0101")
    assert [c.number for c in svc.contacts.contacts("acme", "anna")] == ["+358505550101"]
    assert sorted(c.number for c in svc.contacts.contacts("nordic", "olli")) == ["+358505550101", "+46701234567"]


def test_edit_and_delete_only_the_owners_contact(svc: CallStateService, raw_db: RawDb) -> None:
    cid = add(svc, "acme", "anna", "Pekka", "0505550101", "supplier")
    for tenant, uid in (("acme", "mikko"), ("nordic", "olli")):
        with pytest.raises(UnknownContact):
            svc.contacts.contact(tenant, uid, cid)
        with pytest.raises(UnknownContact):
            svc.contacts.update_contact(tenant, uid, cid, "X", "0505550199", actor="web:x", source="web")
        with pytest.raises(UnknownContact):
            svc.contacts.delete_contact(tenant, uid, cid, actor="web:x", source="web")
    # Another id of the same form: the last hex digit changed (an id of digits only has no upper case).
    other = cid[:-1] + ("a" if cid[-1] != "a" else "b")
    for bad in ("", "0" * 16, "'; DROP TABLE personal_contacts; --", other, cid.upper() if cid.upper() != cid else "X"):
        with pytest.raises(UnknownContact):
            svc.contacts.contact("acme", "anna", bad)
    changed = svc.contacts.update_contact("acme", "anna", cid, "Pekka Puu", "+358505550102", "", actor="web:x",
                                          source="web")
    assert svc.contacts.contact("acme", "anna", cid) == changed
    assert changed.number == "+358505550102" and changed.note == ""
    audit = svc.audit("acme", "anna", limit=2)
    assert (audit[0].old, audit[0].new) == ("Pekka <+358505550101> (supplier)", "Pekka Puu <+358505550102>")
    svc.contacts.delete_contact("acme", "anna", cid, actor="web:x", source="web")
    assert svc.contacts.contacts("acme", "anna") == [] and raw_db.rows("personal_contacts") == []
    assert svc.audit("acme", "anna", limit=1)[0].new is None


def test_a_refused_change_writes_nothing(svc: CallStateService, raw_db: RawDb) -> None:
    cid = add(svc, "acme", "anna", "Pekka", "0505550101")
    before = len(raw_db.rows("audit_log"))
    with pytest.raises(ContactError):
        svc.contacts.update_contact("acme", "anna", cid, "Pekka", "premium?", actor="web:x", source="web")
    with pytest.raises(ContactError):
        add(svc, "acme", "anna", "Line\nbreak\x00", "0505550101")
    with pytest.raises(UnknownUserError):
        add(svc, "acme", "olli", "Pekka", "0505550101")
    assert len(raw_db.rows("audit_log")) == before and len(raw_db.rows("personal_contacts")) == 1


def test_the_directory_reads_many_presences_at_once(svc: CallStateService, clock: FakeClock) -> None:
    svc.set_presence("acme", "mikko", "meeting", note="Room 2", actor="op", source="cli")
    found = svc.contacts.presences("acme", ["anna", "mikko"])
    assert found["anna"].activity == "available"
    assert (found["mikko"].activity, found["mikko"].note) == ("meeting", "Room 2")
    assert svc.contacts.presences("acme", []) == {}
    # Another tenant's users are not read through this tenant.
    svc.set_presence("nordic", "olli", "busy", actor="op", source="cli")
    assert svc.contacts.presences("acme", ["olli"])["olli"].activity == "available"
