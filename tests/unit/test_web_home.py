"""The Home page: presence shown and changed through the phone's service, the SMS form (length,
outbound policy, hourly limit, audit), the instructions with the viewer's own softphone accounts;
the same through the JSON API; isolation, CSRF and anonymous refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from webharness import WebHarness, make_harness

from callstate.sms_state import SMS_FAILED, SMS_SENT
from notify import DeliveryError, Messenger
from web import home_service
from web.home_service import sms_fits

HELSINKI = ZoneInfo("Europe/Helsinki")


class Gateway:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str]] = []
        self.senders: list[str | None] = []
        self.fail = fail

    async def send(self, to: str, text: str, *, sender: str | None = None) -> None:
        if self.fail:
            raise DeliveryError("the gateway is down")
        self.sent.append((to, text))
        self.senders.append(sender)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


def sms_gateway(site: WebHarness, fail: bool = False) -> Gateway:
    gateway = Gateway(fail)
    site.deps.messenger = Messenger(gateway, None)
    return gateway


# --------------------------------------------------------------------------- presence

async def test_home_shows_role_and_presence_in_the_users_language(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    until = datetime.now(UTC) + timedelta(days=2)
    site.state.set_presence("acme", "anna.virtanen", "vacation", until=until, note="Kreetalla",
                            actor="test", source="test")
    async with site.client() as c:
        await site.login(c, anna)
        html = (await c.get("/")).text
    assert "Toimitusjohtaja" in html
    assert 'data-key="vacation">Lomalla<' in html
    assert until.astimezone(HELSINKI).strftime("%Y-%m-%d %H:%M") in html
    assert "Kreetalla" in html
    # The select offers the tenant's activities in Finnish, the current one chosen.
    assert '<option value="vacation" selected>Lomalla</option>' in html
    assert '<option value="meeting" >Kokouksessa</option>' in html


async def test_changing_the_activity_goes_through_the_presence_service(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    told: list[object] = []

    async def tell(users: list[object]) -> None:
        told.extend(users)

    site.deps.presence.tell_asterisk = tell  # what would reach the phones over AMI
    day = (datetime.now(HELSINKI) + timedelta(days=3)).date()
    async with site.client() as c:
        csrf = await site.login(c, anna)
        response = await site.post_form(c, "/presence", csrf, activity="meeting", until_date=day.isoformat(),
                                        until_time="15:30", note="Asiakkaalla")
        assert response.status_code == 303
        assert response.headers["location"] == "/?done=home_presence_saved"
        assert "Tila tallennettu." in (await c.get(response.headers["location"])).text
    presence = site.state.presence("acme", "anna.virtanen")
    assert presence.activity == "meeting"
    assert presence.until == datetime(day.year, day.month, day.day, 15, 30, tzinfo=HELSINKI)
    assert presence.note == "Asiakkaalla"
    assert told == [(anna.tenant, anna.user)]
    trail = {(e.field, e.new, e.source, e.actor) for e in site.state.audit("acme", "anna.virtanen", limit=5)}
    assert ("presence.activity", "meeting", "web", "web:anna.virtanen@acme") in trail
    # Nobody else changed.
    assert site.state.presence("acme", "mikko.korhonen").activity == "available"
    assert site.state.presence("borealis", "james.taylor").activity == "available"


async def test_a_date_alone_ends_at_the_end_of_that_day_and_no_date_means_no_end() -> None:
    assert home_service.parse_until("2030-05-06", "", HELSINKI) == datetime(2030, 5, 7, 0, 0, tzinfo=HELSINKI)
    assert home_service.parse_until("2030-05-06", "08:15", HELSINKI) == datetime(2030, 5, 6, 8, 15,
                                                                                 tzinfo=HELSINKI)
    assert home_service.parse_until("", "", HELSINKI) is None


async def test_available_drops_an_end_time_left_in_the_form(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    site.state.set_presence("acme", "anna.virtanen", "lunch", until=datetime.now(UTC) + timedelta(hours=1),
                            actor="test", source="test")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        html = (await c.get("/")).text
        day = (datetime.now(UTC) + timedelta(hours=1)).astimezone(HELSINKI).strftime("%Y-%m-%d")
        assert f'name="until_date" value="{day}"' in html  # the form starts from the current end time
        response = await site.post_form(c, "/presence", csrf, activity="available", until_date=day,
                                        until_time="23:59", note="")
    assert response.status_code == 303
    presence = site.state.presence("acme", "anna.virtanen")
    assert (presence.activity, presence.until) == ("available", None)


@pytest.mark.parametrize("fields, message", [
    ({"activity": "party"}, "Tuntematon tila."),
    ({"activity": "meeting", "until_date": "2020-01-01", "until_time": "10:00"}, "Päättymisajan on oltava"),
    ({"activity": "meeting", "until_date": "2099-01-01"}, "Päättymisajan on oltava"),
    ({"activity": "meeting", "until_time": "10:00"}, "Päättymispäivä tai -aika ei kelpaa"),
    ({"activity": "meeting", "until_date": "6.5.2030"}, "Päättymispäivä tai -aika ei kelpaa"),
    ({"activity": "meeting", "note": "x" * 101}, "Oma viesti on yksi rivi"),
])
async def test_refused_presence_changes_say_why_and_change_nothing(site: WebHarness, fields: dict[str, str],
                                                                   message: str) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as c:
        csrf = await site.login(c, anna)
        response = await site.post_form(c, "/presence", csrf, **fields)
    assert response.status_code == 422
    assert message in response.text
    assert site.state.presence("acme", "anna.virtanen").activity == "available"


async def test_presence_api(site: WebHarness) -> None:
    james = site.who("borealis", "james.taylor")
    async with site.client() as c:
        csrf = await site.login(c, james)
        got = (await c.get("/api/v1/presence")).json()
        assert got["activity"] == "available" and got["activity_name"] == "Available"
        assert [a["key"] for a in got["activities"]][:3] == ["available", "busy", "meeting"]
        until = (datetime.now(UTC) + timedelta(hours=5)).replace(microsecond=0)
        put = await c.put("/api/v1/presence", headers={"x-csrf-token": csrf},
                          json={"activity": "lunch", "until": until.isoformat(), "note": "back soon"})
        assert put.status_code == 200, put.text
        assert put.json()["activity"] == "lunch" and put.json()["note"] == "back soon"
        refused = await c.put("/api/v1/presence", headers={"x-csrf-token": csrf}, json={"activity": "party"})
        assert refused.status_code == 422
        assert refused.json()["message"] == "Unknown activity."
        assert refused.json()["reason"] == "activity"
        # Without the CSRF header a cookie call changes nothing.
        assert (await c.put("/api/v1/presence", json={"activity": "busy"})).status_code == 403
    presence = site.state.presence("borealis", "james.taylor")
    assert (presence.activity, presence.until, presence.note) == ("lunch", until, "back soon")
    async with site.client() as anonymous:
        assert (await anonymous.get("/api/v1/presence")).status_code == 401
        assert (await anonymous.put("/api/v1/presence", json={"activity": "busy"})).status_code == 401
        assert (await anonymous.post("/presence", data={"activity": "busy"})).status_code == 303
    assert site.state.presence("borealis", "james.taylor").activity == "lunch"


async def test_a_form_without_the_csrf_token_changes_nothing(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    gateway = sms_gateway(site)
    async with site.client() as c:
        await site.login(c, anna)
        assert (await c.post("/presence", data={"activity": "busy"})).status_code == 403
        assert (await c.post("/presence", data={"activity": "busy", "csrf_token": "x"})).status_code == 403
        assert (await c.post("/sms", data={"to": "0401110002", "text": "hi"})).status_code == 403
    assert site.state.presence("acme", "anna.virtanen").activity == "available"
    assert gateway.sent == []


# --------------------------------------------------------------------------- SMS

def test_one_sms_is_160_gsm_septets_or_70_other_characters() -> None:
    assert sms_fits("a" * 160) and not sms_fits("a" * 161)
    assert sms_fits("ä" * 160)  # in the GSM alphabet
    assert sms_fits("€" * 80) and not sms_fits("€" * 81)  # extension table: two septets each
    assert sms_fits("š" * 70) and not sms_fits("š" * 71)  # UCS-2
    assert not sms_fits("😀" * 36)  # two UTF-16 units each


async def test_sms_is_sent_audited_and_limited(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    gateway = sms_gateway(site)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        assert 'id="sms-form"' in (await c.get("/")).text
        response = await site.post_form(c, "/sms", csrf, to="040 1110002", text="Soitan kohta")
        assert response.status_code == 303 and response.headers["location"] == "/?done=home_sms_sent"
        assert gateway.sent == [("+358401110002", "Soitan kohta")]
        assert gateway.senders == ["+358401110001"]  # from Anna's own number
        entry = site.state.audit("acme", "anna.virtanen", limit=1)[0]
        assert (entry.event, entry.field, entry.new, entry.source) == (SMS_SENT, "sms", "+358401110002", "web")
        for n in range(home_service.SMS_LIMIT - 1):
            api = await c.post("/api/v1/sms", headers={"x-csrf-token": csrf}, json={"to": "+358451234567",
                                                                                      "text": f"n{n}"})
            assert api.status_code == 200 and api.json() == {"to": "+358451234567"}
        over = await site.post_form(c, "/sms", csrf, to="0451234567", text="one too many")
        assert over.status_code == 429
        assert f"Olet lähettänyt jo {home_service.SMS_LIMIT} viestiä" in over.text
        assert (await c.post("/api/v1/sms", headers={"x-csrf-token": csrf},
                             json={"to": "0451234567", "text": "x"})).status_code == 429
    assert len(gateway.sent) == home_service.SMS_LIMIT
    # The limit is Anna's: Mikko may still send.
    mikko = site.who("acme", "mikko.korhonen")
    async with site.client() as c:
        csrf = await site.login(c, mikko)
        assert (await site.post_form(c, "/sms", csrf, to="0451234567", text="hei")).status_code == 303
    assert len(gateway.sent) == home_service.SMS_LIMIT + 1


@pytest.mark.parametrize("to, text, message", [
    ("0600123456", "win", "Tähän numeroon ei voi lähettää"),  # premium, as calls are refused
    ("+358700123456", "win", "Tähän numeroon ei voi lähettää"),
    ("hello", "hi", "Numero ei kelpaa."),
    ("0401110002", "x" * 161, "Viesti on pidempi kuin yksi tekstiviesti."),
    ("0401110002", "   ", "Viesti on tyhjä."),
])
async def test_refused_sms_says_why_and_sends_nothing(site: WebHarness, to: str, text: str, message: str) -> None:
    anna = site.who("acme", "anna.virtanen")
    gateway = sms_gateway(site)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        response = await site.post_form(c, "/sms", csrf, to=to, text=text)
    assert response.status_code == 422
    assert message in response.text
    assert gateway.sent == []
    assert all(e.event != SMS_SENT for e in site.state.audit("acme", "anna.virtanen", limit=20))


async def test_without_a_gateway_sms_is_not_available(site: WebHarness) -> None:
    james = site.who("borealis", "james.taylor")
    async with site.client() as c:
        csrf = await site.login(c, james)
        html = (await c.get("/")).text
        assert "SMS is not available." in html and 'id="sms-form"' not in html
        assert (await site.post_form(c, "/sms", csrf, to="0401110002", text="hi")).status_code == 503
        api = await c.post("/api/v1/sms", headers={"x-csrf-token": csrf}, json={"to": "0401110002", "text": "hi"})
        assert api.status_code == 503 and api.json()["message"] == "SMS is not available."
        assert api.json()["reason"] == "unavailable"


async def test_a_gateway_failure_is_shown_and_audited(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    sms_gateway(site, fail=True)
    async with site.client() as c:
        csrf = await site.login(c, anna)
        response = await site.post_form(c, "/sms", csrf, to="0401110002", text="hi")
    assert response.status_code == 502 and "Viestiä ei saatu lähetettyä" in response.text
    assert site.state.audit("acme", "anna.virtanen", limit=1)[0].event == SMS_FAILED


# --------------------------------------------------------------------------- instructions

async def test_instructions_show_numbers_codes_and_only_the_viewers_devices(site: WebHarness) -> None:
    secrets = {"device:acme-mikko-soft": "mikko-secret-1", "device:acme-mikko-desk": "mikko-secret-2",
               "device:borealis-james-soft": "james-secret", "ami": "ami-secret"}
    (site.deps.home / "secrets.json").write_text(json.dumps(secrets))
    mikko = site.who("acme", "mikko.korhonen")
    async with site.client() as c:
        await site.login(c, mikko)
        html = (await c.get("/")).text
    assert "+358201243100" in html and "+358201243200" in html
    assert "*43#" in html and "987" in html
    assert html.count("<details>") == 2
    assert "acme-mikko-soft" in html and "mikko-secret-1" in html and "mikko-secret-2" in html
    assert "james-secret" not in html and "ami-secret" not in html and "acme-anna-soft" not in html
    assert f'class="sip-host">{site.config.platform.sip.bind}<' in html
    erik = site.who("borealis", "erik.nyberg")  # no devices at all
    async with site.client() as c:
        await site.login(c, erik)
        html = (await c.get("/")).text
    assert 'id="no-softphones"' in html and "<details>" not in html
