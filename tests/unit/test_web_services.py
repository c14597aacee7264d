"""The Services page's voicemail settings and forwards with call waiting: the state really
changes through the call-state service, refusals carry the codes' reasons in the user's language,
the JSON API does the same; isolation, CSRF and anonymous refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webharness import WebHarness, make_harness

from callstate import VoicemailSettings


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


def last_audit(site: WebHarness, tenant: str, user: str) -> tuple[str, str | None, str | None, str, str]:
    e = site.state.audit(tenant, user, limit=1)[0]
    return e.field, e.old, e.new, e.source, e.actor


# --------------------------------------------------------------------------- voicemail settings

async def test_voicemail_settings_are_shown_and_saved(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        page = await c.get("/services")
        assert page.status_code == 200
        assert 'id="notify_sms" name="notify_sms" value="on" checked' in page.text
        assert 'aria-current="page">Vastaaja<' in page.text  # the sub-navigation
        response = await site.post_form(c, "/services", csrf, notify_email="on", play_activity="on",
                                        press1_number="09 123 4567", always_ask_pin="on")
        assert response.status_code == 303
        assert "Asetukset tallennettu." in (await c.get(response.headers["location"])).text
    assert site.state.voicemail_settings("acme", "anna.virtanen") == VoicemailSettings(
        play_activity=True, press1_number="+35891234567", notify_sms=False, notify_email=True, always_ask_pin=True)
    assert last_audit(site, "acme", "anna.virtanen")[3:] == ("web", "web:anna.virtanen@acme")
    assert site.state.voicemail_settings("acme", "mikko.korhonen") == VoicemailSettings()
    assert site.state.voicemail_settings("borealis", "james.taylor") == VoicemailSettings()


@pytest.mark.parametrize("who, fields, message", [
    (("acme", "anna.virtanen"), {"press1_number": "+358201243100"}, "Puhepostin numeroon ei voi siirtää."),
    (("acme", "anna.virtanen"), {"press1_number": "0600123456"}, "maksullinen palvelunumero"),
    (("acme", "anna.virtanen"), {"press1_number": "040 1110001"}, "Omaan numeroon ei voi siirtää."),
    (("acme", "anna.virtanen"), {"press1_number": "hello"}, "Numero ei kelpaa."),
    (("acme", "anna.virtanen"), {"press1_number": "+358201243200"}, "Tilan vaihdon numeroon ei voi siirtää."),
])
async def test_refused_settings_say_why_and_change_nothing(site: WebHarness, who: tuple[str, str],
                                                           fields: dict[str, str], message: str) -> None:
    user = site.who(*who)
    async with site.client() as c:
        csrf = await site.login(c, user)
        response = await site.post_form(c, "/services", csrf, notify_sms="on", play_activity="on", **fields)
    assert response.status_code == 422
    assert message in response.text
    assert site.state.voicemail_settings(*who) == VoicemailSettings()


async def test_a_user_without_voicemail_sees_no_settings(site: WebHarness) -> None:
    workshop = site.who("acme", "workshop")
    async with site.client() as c:
        csrf = await site.login(c, workshop)
        assert 'id="no-voicemail"' in (await c.get("/services")).text
        response = await site.post_form(c, "/services", csrf, play_activity="on")
        assert response.status_code == 422 and "Sinulla ei ole puhepostia." in response.text
        forwards = await c.get("/services/forwards")
        assert 'value="voicemail"' not in forwards.text
        refused = await site.post_form(c, "/services/forwards", csrf, kind="busy", target="voicemail")
        assert refused.status_code == 422 and "Sinulla ei ole puhepostia, johon siirtää." in refused.text
    assert site.state.routing("acme", "workshop").busy == "none"



async def test_voicemail_settings_api(site: WebHarness) -> None:
    james = site.who("borealis", "james.taylor")
    async with site.client() as c:
        csrf = await site.login(c, james)
        got = await c.get("/api/v1/voicemail/settings")
        assert got.json() == {"notify_sms": True, "notify_email": False, "play_activity": False,
                              "press1_number": None, "always_ask_pin": False}
        changed = await c.patch("/api/v1/voicemail/settings", headers={"x-csrf-token": csrf},
                                json={"play_activity": True, "press1_number": "0501220002"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["press1_number"] == "+358501220002" and changed.json()["play_activity"]
        refused = await c.patch("/api/v1/voicemail/settings", headers={"x-csrf-token": csrf},
                                json={"notify_sms": False, "press1_number": "+358700123456"})
        assert refused.status_code == 422
        assert refused.json()["reason"] == "number_barred"
        assert refused.json()["message"].startswith("Calls cannot go to that number")
        assert (await c.patch("/api/v1/voicemail/settings", json={"notify_sms": False})).status_code == 403
    settings = site.state.voicemail_settings("borealis", "james.taylor")
    assert (settings.play_activity, settings.press1_number, settings.notify_sms) == (True, "+358501220002", True)


# --------------------------------------------------------------------------- forwards

async def test_forwards_are_shown_and_set_like_the_codes(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        page = (await c.get("/services/forwards")).text
        assert 'id="fwd-immediate-none" name="target" value="none" checked' in page
        assert 'id="fwd-busy-voicemail" name="target" value="voicemail" checked' in page
        response = await site.post_form(c, "/services/forwards", csrf, kind="immediate", target="number",
                                        number="102")  # Mikko's extension
        assert response.status_code == 303
        assert "Siirto tallennettu." in (await c.get(response.headers["location"])).text
        assert last_audit(site, "acme", "anna.virtanen") == ("forward.immediate", "none", "+358401110002", "web",
                                                             "web:anna.virtanen@acme")
        response = await site.post_form(c, "/services/forwards", csrf, kind="no_answer", target="number",
                                        number="0451234567", delay="35")
        assert response.status_code == 303
        response = await site.post_form(c, "/services/forwards", csrf, kind="unreachable", target="none")
        assert response.status_code == 303
        page = (await c.get("/services/forwards")).text
        assert 'value="+358401110002"' in page and 'value="35"' in page
    routing = site.state.routing("acme", "anna.virtanen")
    assert (routing.immediate, routing.no_answer, routing.no_answer_seconds, routing.unreachable, routing.busy) == (
        "+358401110002", "+358451234567", 35, "none", "voicemail")
    assert site.state.routing("acme", "mikko.korhonen").immediate == "none"


@pytest.mark.parametrize("fields, message, reason", [
    ({"number": "0201243100"}, "Puhepostin numeroon ei voi siirtää.", "voicemail_number"),
    ({"number": "+358201243200"}, "Tilan vaihdon numeroon ei voi siirtää.", "activity_number"),
    ({"number": "0401110001"}, "Omaan numeroon ei voi siirtää.", "own_number"),
    ({"number": "0600123456"}, "maksullinen palvelunumero", "number_barred"),
    ({"number": "12"}, "Numero ei kelpaa.", "invalid_number"),
    ({"number": ""}, "Numero ei kelpaa.", "invalid_number"),
])
async def test_refused_forwards_give_the_codes_reasons(site: WebHarness, fields: dict[str, str], message: str,
                                                       reason: str) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        response = await site.post_form(c, "/services/forwards", csrf, kind="immediate", target="number", **fields)
        assert response.status_code == 422
        assert message in response.text
        api = await c.put("/api/v1/forwards/immediate", headers={"x-csrf-token": csrf},
                          json={"target": fields["number"] or "x"})
        assert api.status_code == 422 and api.json()["reason"] == reason
    assert site.state.routing("acme", "anna.virtanen").immediate == "none"
    assert site.state.audit("acme", "anna.virtanen", limit=1)[0].field.startswith("web.")  # the login only


async def test_a_forward_loop_is_refused(site: WebHarness) -> None:
    site.state.set_forward("acme", "mikko.korhonen", "immediate", "+358401110001", actor="t", source="test")
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        response = await site.post_form(c, "/services/forwards", csrf, kind="immediate", target="number",
                                        number="102")
    assert response.status_code == 422 and "Numero siirtää puhelut takaisin sinulle." in response.text
    assert site.state.routing("acme", "anna.virtanen").immediate == "none"


@pytest.mark.parametrize("delay", ["4", "121", "soon", ""])
async def test_a_bad_delay_is_refused(site: WebHarness, delay: str) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        response = await site.post_form(c, "/services/forwards", csrf, kind="no_answer", target="voicemail",
                                        delay=delay)
    assert response.status_code == 422 and "Viive on 5–120 sekuntia." in response.text
    assert site.state.routing("acme", "anna.virtanen").no_answer_seconds == 20


async def test_an_unknown_forward_kind_is_not_found(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        assert (await site.post_form(c, "/services/forwards", csrf, kind="sometimes", target="none")).status_code == 404
        assert (await c.put("/api/v1/forwards/sometimes", headers={"x-csrf-token": csrf},
                            json={"target": "none"})).status_code == 422


async def test_call_waiting_page_and_api(site: WebHarness) -> None:
    sara = site.who("acme", "sara.lindqvist")
    async with site.client() as c:
        csrf = await site.login(c, sara)
        assert 'id="call_waiting" name="call_waiting" value="on" checked' in (await c.get("/services/forwards")).text
        response = await site.post_form(c, "/services/callwaiting", csrf)  # the box unchecked
        assert response.status_code == 303
        assert site.state.routing("acme", "sara.lindqvist").call_waiting is False
        assert (await c.get("/api/v1/callwaiting")).json() == {"enabled": False}
        put = await c.put("/api/v1/callwaiting", headers={"x-csrf-token": csrf}, json={"enabled": True})
        assert put.json() == {"enabled": True}
        assert last_audit(site, "acme", "sara.lindqvist")[:4] == ("call_waiting", "off", "on", "web")
        assert (await c.put("/api/v1/callwaiting", json={"enabled": False})).status_code == 403
    assert site.state.routing("acme", "sara.lindqvist").call_waiting is True
    assert site.state.routing("acme", "anna.virtanen").call_waiting is True


async def test_forwards_api(site: WebHarness) -> None:
    james = site.who("borealis", "james.taylor")
    async with site.client() as c:
        csrf = await site.login(c, james)
        assert (await c.get("/api/v1/forwards")).json() == {
            "immediate": "none", "busy": "voicemail", "no_answer": "voicemail", "unreachable": "voicemail",
            "no_answer_seconds": 20, "call_waiting": True}
        put = await c.put("/api/v1/forwards/no_answer", headers={"x-csrf-token": csrf},
                          json={"target": "0501220002", "no_answer_seconds": 10})
        assert put.status_code == 200, put.text
        assert put.json()["no_answer"] == "+358501220002" and put.json()["no_answer_seconds"] == 10
        bad = await c.put("/api/v1/forwards/no_answer", headers={"x-csrf-token": csrf},
                          json={"target": "voicemail", "no_answer_seconds": 500})
        assert bad.status_code == 422 and bad.json()["reason"] == "delay"
    assert site.state.routing("borealis", "james.taylor").no_answer == "+358501220002"


# --------------------------------------------------------------------------- isolation

ROUTES = [("GET", "/services"), ("POST", "/services"), ("GET", "/services/forwards"),
          ("POST", "/services/forwards"), ("POST", "/services/callwaiting"),
          ("GET", "/api/v1/voicemail/settings"), ("PATCH", "/api/v1/voicemail/settings"),
          ("GET", "/api/v1/forwards"), ("PUT", "/api/v1/forwards/immediate"),
          ("GET", "/api/v1/callwaiting"), ("PUT", "/api/v1/callwaiting"),
          ("GET", "/"), ("POST", "/presence"), ("POST", "/sms"), ("GET", "/api/v1/presence"),
          ("PUT", "/api/v1/presence"), ("POST", "/api/v1/sms")]


@pytest.mark.parametrize("method, path", ROUTES)
async def test_anonymous_requests_are_refused(site: WebHarness, method: str, path: str) -> None:
    async with site.client() as c:
        response = await c.request(method, path, data={"kind": "immediate", "target": "none"}
                                   if not path.startswith("/api/") else None)
    assert response.status_code == (401 if path.startswith("/api/") else 303)
    if not path.startswith("/api/"):
        assert response.headers["location"].startswith("/login")


async def test_a_user_changes_only_their_own_state(site: WebHarness) -> None:
    """Nothing in a request names whose state: other users, of the tenant and of another, see and
    keep their own whatever the viewer sends (extra fields naming them are ignored)."""
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        for extra in ({"tenant": "borealis", "user": "james.taylor"}, {"user_id": "mikko.korhonen"}):
            await site.post_form(c, "/services/forwards", csrf, kind="immediate", target="number",
                                 number="0451234567", **extra)
            await site.post_form(c, "/services", csrf, play_activity="on", **extra)
            await site.post_form(c, "/services/callwaiting", csrf, **extra)
            await c.put("/api/v1/forwards/busy?user=mikko.korhonen&tenant=borealis", headers={"x-csrf-token": csrf},
                        json={"target": "none", "user": "mikko.korhonen", "tenant": "borealis"})
    assert site.state.routing("acme", "anna.virtanen").immediate == "+358451234567"
    assert site.state.routing("acme", "anna.virtanen").busy == "none"
    for other in (("acme", "mikko.korhonen"), ("borealis", "james.taylor")):
        routing = site.state.routing(*other)
        assert (routing.immediate, routing.busy, routing.call_waiting) == ("none", "voicemail", True)
        assert site.state.voicemail_settings(*other) == VoicemailSettings()
        assert site.state.audit(*other, limit=1) == []
    # And what each sees is their own.
    james = site.who("borealis", "james.taylor")
    async with site.client() as c:
        await site.login(c, james)
        assert (await c.get("/api/v1/forwards")).json()["immediate"] == "none"
        assert "+358451234567" not in (await c.get("/services/forwards")).text


async def test_the_api_is_described(site: WebHarness) -> None:
    async with site.client() as c:
        await site.login(c, site.who("acme", "anna.virtanen"))
        paths = (await c.get("/api/openapi.json")).json()["paths"]
    assert set(paths) >= {"/api/v1/presence", "/api/v1/sms", "/api/v1/voicemail/settings", "/api/v1/forwards",
                          "/api/v1/forwards/{kind}", "/api/v1/callwaiting"}
    assert set(paths["/api/v1/forwards/{kind}"]) == {"put"}
    assert set(paths["/api/v1/voicemail/settings"]) == {"get", "patch"}
