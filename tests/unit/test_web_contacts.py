"""The Contacts page and API over real call state: the directory shows only the viewer's own
tenant, personal contacts are each user's own, click to call originates only for the viewer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from webharness import WebHarness, example_config, make_harness

from callstate.contacts_state import MAX_CONTACTS, ContactError
from web.contacts_service import PAGE_SIZE, RateLimit, contacts_service


class FakeAri:
    """Records what would be asked of Asterisk; answers the phone states it is given."""

    def __init__(self, endpoints: list[dict[str, Any]] | None = None) -> None:
        self.endpoints = endpoints or []
        self.requests: list[tuple[str, str, dict[str, Any], Any]] = []
        self.gets = 0

    async def get(self, path: str, **params: Any) -> Any:
        assert path == "/endpoints/PJSIP"
        self.gets += 1
        return self.endpoints

    async def request(self, method: str, path: str, *, params: Any = None, json: Any = None) -> Any:
        self.requests.append((method, path, dict(params or {}), json))
        return {"id": "c1"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


def contacts_of(site: WebHarness, tenant: str, user: str) -> list[Any]:
    return site.state.contacts.contacts(tenant, user)


def add(site: WebHarness, tenant: str, user: str, name: str = "Pekka Puu", number: str = "050 555 0101",
        note: str = "") -> Any:
    return site.state.contacts.add_contact(tenant, user, name, number, note, actor="test", source="test")


# ------------------------------------------------------------------ the state

def test_contacts_are_validated_normalised_and_audited(site: WebHarness) -> None:
    c = add(site, "acme", "anna.virtanen", "  Pekka   Puu ", "050-555 0101", "supplier")
    assert (c.name, c.number, c.note) == ("Pekka Puu", "+358505550101", "supplier")
    colleague = add(site, "acme", "anna.virtanen", "Mikko", "102")  # an extension of the tenant
    assert colleague.number == "+358401110002"
    for name, number, note, field in [("", "0505550101", "", "name"), ("x" * 81, "0505550101", "", "name"),
                                      ("A", "hello", "", "number"), ("A", "12", "", "number"),
                                      ("A", "0505550101", "n" * 201, "note"), ("A\x07", "0505550101", "", "name")]:
        with pytest.raises(ContactError) as refused:
            add(site, "acme", "anna.virtanen", name, number, note)
        assert refused.value.field == field
    assert len(contacts_of(site, "acme", "anna.virtanen")) == 2
    audit = site.state.audit("acme", "anna.virtanen")
    assert audit[0].field == f"contact.{colleague.id}" and audit[0].new == "Mikko <+358401110002>"
    assert audit[0].actor == "test"


def test_a_contact_list_is_limited(site: WebHarness) -> None:
    for i in range(MAX_CONTACTS):
        add(site, "acme", "sara.lindqvist", f"C{i}", "0505550101")
    with pytest.raises(ContactError) as refused:
        add(site, "acme", "sara.lindqvist")
    assert refused.value.field == "count"


# ------------------------------------------------------------------ the page

async def test_directory_shows_only_the_own_tenant_with_activity(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    site.state.set_presence("acme", "mikko.korhonen", "meeting", actor="test", source="test", note="Room 2")
    async with site.client() as c:
        await site.login(c, anna)
        page = await c.get("/contacts")
        assert page.status_code == 200
        assert "Mikko Korhonen" in page.text and "Myyntipäällikkö" in page.text and "+358401110002" in page.text
        row = re.search(r'<tr id="user-mikko.korhonen">.*?</tr>', page.text, re.DOTALL)
        assert row and "Palaverissa" in row.group(0) and "Room 2" in row.group(0)  # Anna reads Finnish
        assert "Ei tiedossa" in row.group(0)  # no Asterisk: the phone state is unknown
        borealis = site.config.tenant("borealis")
        assert borealis is not None
        for user in borealis.users:
            assert user.name not in page.text and user.number not in page.text
        found = await c.get("/contacts", params={"q": "korh"})
        assert "Mikko Korhonen" in found.text and "Sara Lindqvist" not in found.text
        by_number = await c.get("/contacts", params={"q": "+358 40 111 0003"})
        assert "Sara Lindqvist" in by_number.text and "Mikko Korhonen" not in by_number.text
        # Another tenant's user cannot be found by name or number either.
        other = await c.get("/contacts", params={"q": "James"})
        assert "James" not in other.text.replace('value="James"', "")
        api = (await c.get("/api/v1/contacts/directory")).json()
        assert {e["id"] for e in api["entries"]} == {u.id for u in anna.tenant.users}
        mikko = next(e for e in api["entries"] if e["id"] == "mikko.korhonen")
        assert (mikko["activity"], mikko["note"], mikko["phone"]) == ("meeting", "Room 2", "unknown")


async def test_a_big_directory_is_paged(tmp_path: Path) -> None:
    config = example_config()
    acme = config.tenant("acme")
    assert acme is not None
    template = acme.users[-1]
    many = tuple(replace(template, id=f"u{i:04d}", name=f"Person {i:04d}", number=f"+3584020{i:05d}",
                         extension=f"5{i:03d}", devices=()) for i in range(120))
    tenants = tuple(replace(t, users=t.users + many) if t.id == "acme" else t for t in config.tenants)
    site = make_harness(tmp_path, replace(config, tenants=tenants))
    try:
        async with site.client() as c:
            await site.login(c, site.who("acme", "anna.virtanen"))
            first = await c.get("/contacts")
            assert first.text.count('<tr id="user-') == PAGE_SIZE
            last = await c.get("/contacts", params={"page": "3"})
            assert last.text.count('<tr id="user-') == 124 - 2 * PAGE_SIZE
            assert "Person 0119" in last.text and "Person 0000" not in last.text
            beyond = await c.get("/contacts", params={"page": "99"})
            assert beyond.status_code == 200 and "Person 0119" in beyond.text
            api = (await c.get("/api/v1/contacts/directory", params={"page": 2, "q": "person"})).json()
            assert (api["page"], api["pages"], api["total"], len(api["entries"])) == (2, 3, 120, PAGE_SIZE)
    finally:
        site.state.close()


async def test_phone_states_come_from_asterisk_and_are_cached(site: WebHarness) -> None:
    ari = FakeAri([{"resource": "acme-mikko-desk", "state": "online", "channel_ids": ["x"]},
                   {"resource": "acme-mikko-soft", "state": "online", "channel_ids": []},
                   {"resource": "acme-sara-soft", "state": "online", "channel_ids": []},
                   {"resource": "acme-workshop", "state": "offline", "channel_ids": []}])
    site.deps.ari = ari
    async with site.client() as c:
        await site.login(c, site.who("acme", "anna.virtanen"))
        api = (await c.get("/api/v1/contacts/directory")).json()
        phones = {e["id"]: e["phone"] for e in api["entries"]}
        assert phones["mikko.korhonen"] == "on-phone" and phones["sara.lindqvist"] == "free"
        assert phones["workshop"] == "offline"
        for _ in range(5):
            assert (await c.get("/contacts")).status_code == 200
        assert ari.gets == 1  # one question to Asterisk for all those loads


async def test_personal_contacts_add_edit_delete_through_the_page(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        added = await site.post_form(c, "/contacts/personal", csrf, name="Pekka Puu", number="050 555 0101",
                                     note="supplier")
        assert added.status_code == 303 and added.headers["location"] == "/contacts?done=contacts_added"
        [contact] = contacts_of(site, "acme", "anna.virtanen")
        assert contact.number == "+358505550101"
        page = await c.get("/contacts?done=contacts_added")
        assert "Yhteystieto lisätty." in page.text and "Pekka Puu" in page.text
        refused = await site.post_form(c, "/contacts/personal", csrf, name="X", number="not a number")
        assert refused.status_code == 422 and "Numero ei kelpaa" in refused.text
        assert 'value="not a number"' in refused.text  # what was typed stays in the form
        no_csrf = await c.post("/contacts/personal", data={"name": "Y", "number": "0505550102"})
        assert no_csrf.status_code == 403
        form = await c.get(f"/contacts/personal/{contact.id}")
        assert form.status_code == 200 and 'value="supplier"' in form.text
        edited = await site.post_form(c, f"/contacts/personal/{contact.id}", csrf, name="Pekka Puu",
                                      number="+46 70 123 4567", note="")
        assert edited.status_code == 303
        assert contacts_of(site, "acme", "anna.virtanen")[0].number == "+46701234567"
        deleted = await site.post_form(c, f"/contacts/personal/{contact.id}/delete", csrf)
        assert deleted.status_code == 303 and contacts_of(site, "acme", "anna.virtanen") == []
        assert [e.source for e in site.state.audit("acme", "anna.virtanen")[:3]] == ["web"] * 3


async def test_personal_contacts_through_the_api(site: WebHarness) -> None:
    async with site.client() as c:
        csrf = await site.login(c, site.who("acme", "anna.virtanen"))
        headers = {"x-csrf-token": csrf}
        made = await c.post("/api/v1/contacts/personal", json={"name": "Pekka", "number": "0505550101"},
                            headers=headers)
        assert made.status_code == 201 and made.json()["number"] == "+358505550101"
        cid = made.json()["id"]
        bad = await c.post("/api/v1/contacts/personal", json={"name": "P", "number": "x"}, headers=headers)
        assert bad.status_code == 422
        changed = await c.put(f"/api/v1/contacts/personal/{cid}", json={"name": "Pekka P", "number": "0505550102",
                                                                        "note": "n"}, headers=headers)
        assert changed.json() == {"id": cid, "name": "Pekka P", "number": "+358505550102", "note": "n"}
        assert [x["id"] for x in (await c.get("/api/v1/contacts/personal")).json()] == [cid]
        assert (await c.delete(f"/api/v1/contacts/personal/{cid}", headers=headers)).status_code == 204
        assert (await c.get("/api/v1/contacts/personal")).json() == []
        assert "/api/v1/contacts/call" in (await c.get("/api/openapi.json")).json()["paths"]


# ------------------------------------------------------------------ click to call

async def test_click_to_call_rings_the_viewer_then_dials_as_the_device(site: WebHarness) -> None:
    ari = FakeAri()
    site.deps.ari = ari
    anna = site.who("acme", "anna.virtanen")
    contact = add(site, "acme", "anna.virtanen", "Pekka", "0505550101")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        called = await site.post_form(c, "/contacts/call", csrf, contact=contact.id)
        assert called.status_code == 303 and "called=%2B358505550101" in called.headers["location"]
        colleague = await site.post_form(c, "/contacts/call", csrf, colleague="mikko.korhonen")
        assert colleague.status_code == 303
    [(method, path, params, body), second] = ari.requests
    assert (method, path) == ("POST", "/channels")
    assert params["endpoint"] == "Local/101@vipbx-ring-acme"
    assert (params["context"], params["extension"]) == ("vipbx-t-acme", "+358505550101")
    assert body["variables"]["VIPBX_TENANT"] == "acme" and body["variables"]["VIPBX_USER"] == "anna.virtanen"
    assert second[2]["extension"] == "+358401110002"


async def test_click_to_call_refusals_are_clear_and_ring_nothing(site: WebHarness) -> None:
    ari = FakeAri()
    site.deps.ari = ari
    anna = site.who("acme", "anna.virtanen")
    premium = add(site, "acme", "anna.virtanen", "Premium", "0600 12345")
    own = add(site, "acme", "anna.virtanen", "Me", "+358401110001")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        barred = await site.post_form(c, "/contacts/call", csrf, contact=premium.id)
        assert barred.status_code == 422 and "Tähän numeroon ei voi soittaa" in barred.text
        mine = await site.post_form(c, "/contacts/call", csrf, contact=own.id)
        assert mine.status_code == 422 and "oma numerosi" in mine.text
        api = await c.post("/api/v1/contacts/call", json={"contact": premium.id}, headers={"x-csrf-token": csrf})
        assert api.status_code == 422 and api.json()["detail"] == "number-barred"
        assert ari.requests == []
        site.deps.ari = None
        down = await site.post_form(c, "/contacts/call", csrf, colleague="mikko.korhonen")
        assert down.status_code == 503


async def test_click_to_call_is_rate_limited_per_user(site: WebHarness) -> None:
    ari = FakeAri()
    site.deps.ari = ari
    contacts_service(site.deps).calls = RateLimit(2)
    async with site.client() as c:
        csrf = await site.login(c, site.who("acme", "anna.virtanen"))
        statuses = [(await site.post_form(c, "/contacts/call", csrf, colleague="mikko.korhonen")).status_code
                    for _ in range(3)]
        assert statuses == [303, 303, 429]
    async with site.client() as c:  # another user has their own allowance
        csrf = await site.login(c, site.who("acme", "sara.lindqvist"))
        assert (await site.post_form(c, "/contacts/call", csrf, colleague="mikko.korhonen")).status_code == 303
    assert len(ari.requests) == 3


# ------------------------------------------------------------------ isolation, every route

async def _attempts(c: httpx.AsyncClient, csrf: str, cid: str) -> list[httpx.Response]:
    headers = {"x-csrf-token": csrf}
    body = {"name": "Hijacked", "number": "0505550199", "note": "", "csrf_token": csrf}
    return [
        await c.get(f"/contacts/personal/{cid}"),
        await c.post(f"/contacts/personal/{cid}", data=body),
        await c.post(f"/contacts/personal/{cid}/delete", data={"csrf_token": csrf}),
        await c.post("/contacts/call", data={"csrf_token": csrf, "contact": cid}),
        await c.put(f"/api/v1/contacts/personal/{cid}", json=body, headers=headers),
        await c.delete(f"/api/v1/contacts/personal/{cid}", headers=headers),
        await c.post("/api/v1/contacts/call", json={"contact": cid}, headers=headers),
    ]


@pytest.mark.parametrize("intruder", [("borealis", "james.taylor"), ("acme", "mikko.korhonen")])
async def test_another_users_contact_is_not_found_and_unchanged(site: WebHarness, intruder: tuple[str, str]) -> None:
    ari = FakeAri()
    site.deps.ari = ari
    anna_contact = add(site, "acme", "anna.virtanen", "Secret", "0505550101", "private")
    async with site.client() as c:
        csrf = await site.login(c, site.who(*intruder))
        for response in await _attempts(c, csrf, anna_contact.id):
            assert response.status_code == 404, response.request.url
        listing = await c.get("/contacts")
        assert "Secret" not in listing.text and "private" not in listing.text
        assert (await c.get("/api/v1/contacts/personal")).json() == []
    assert contacts_of(site, "acme", "anna.virtanen") == [anna_contact]
    assert ari.requests == []


async def test_another_tenants_user_cannot_be_called_or_listed(site: WebHarness) -> None:
    ari = FakeAri()
    site.deps.ari = ari
    async with site.client() as c:
        csrf = await site.login(c, site.who("borealis", "james.taylor"))
        for colleague in ("anna.virtanen", "mikko.korhonen", "../acme", ""):
            response = await site.post_form(c, "/contacts/call", csrf, colleague=colleague)
            assert response.status_code == 404
            api = await c.post("/api/v1/contacts/call", json={"colleague": colleague}, headers={"x-csrf-token": csrf})
            assert api.status_code == 404
        page = await c.get("/contacts")
        assert "Anna Virtanen" not in page.text and "+358401110001" not in page.text
    assert ari.requests == []


async def test_anonymous_requests_are_refused(site: WebHarness) -> None:
    cid = add(site, "acme", "anna.virtanen").id
    async with site.client() as c:
        for path in ("/contacts", f"/contacts/personal/{cid}"):
            assert (await c.get(path)).status_code == 303
        for path in ("/contacts/personal", f"/contacts/personal/{cid}", f"/contacts/personal/{cid}/delete",
                     "/contacts/call"):
            response = await c.post(path, data={"name": "x", "number": "0505550101", "contact": cid})
            assert response.status_code == 303 and response.headers["location"].startswith("/login")
        for method, path in (("GET", "/api/v1/contacts/directory"), ("GET", "/api/v1/contacts/personal"),
                             ("POST", "/api/v1/contacts/personal"), ("PUT", f"/api/v1/contacts/personal/{cid}"),
                             ("DELETE", f"/api/v1/contacts/personal/{cid}"), ("POST", "/api/v1/contacts/call")):
            assert (await c.request(method, path, json={})).status_code == 401
    assert len(contacts_of(site, "acme", "anna.virtanen")) == 1
