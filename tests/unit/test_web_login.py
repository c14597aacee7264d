"""The home page's login, sessions and CSRF checks, over real call state (no Asterisk)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from webharness import LOGIN_CSRF, PASSWORD, WebHarness, example_config, make_harness

from web.auth.routes import safe_next
from web.auth.sessions import SESSION_COOKIE
from web.auth.usernames import find_login, login_name
from web.i18n import LANGUAGES, catalogue


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


def test_user_names_of_the_seed_and_by_id() -> None:
    config = example_config()
    anna = config.find_user("acme", "anna.virtanen")
    assert anna is not None
    assert login_name(anna) == "fi0401110001@acme.example"
    for name in ("fi0401110001@acme.example", " FI0401110001@ACME.example ", "anna.virtanen@acme.example",
                 "+358401110001@acme.example", "358401110001@acme.example"):
        assert find_login(config, name) == anna, name
    # Another tenant's domain, a tenant's extra number, nonsense: nobody.
    for name in ("fi0401110001@borealis.example", "fi0923130000@acme.example", "anna.virtanen",
                 "@acme.example", "a@b@acme.example", "x" * 300 + "@acme.example"):
        assert find_login(config, name) is None, name


def test_every_text_is_in_every_language() -> None:
    missing = {key: [lang for lang in LANGUAGES if not texts.get(lang)] for key, texts in catalogue().items()}
    assert not {k: v for k, v in missing.items() if v}


@pytest.mark.parametrize("given, expected", [
    ("/mailbox?x=1", "/mailbox?x=1"), ("//evil.example/", "/"), ("https://evil.example", "/"),
    ("/\\evil", "/"), ("", "/"), (None, "/"), ("mailbox", "/")])
def test_after_login_only_this_site(given: str | None, expected: str) -> None:
    assert safe_next(given) == expected


async def test_login_opens_a_session_and_logout_ends_it(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as client:
        assert (await client.get("/")).status_code == 303
        csrf = await site.login(client, anna)
        cookie = client.cookies[SESSION_COOKIE]
        home = await client.get("/")
        assert "Anna Virtanen" in home.text and "fi0401110001@acme.example" in home.text
        assert home.headers["content-security-policy"].startswith("default-src 'self'")
        assert home.headers["cache-control"] == "no-store"
        # The logout needs the form's token; without it nothing happens.
        assert (await client.post("/logout", data={})).status_code == 403
        assert (await client.get("/")).status_code == 200
        out = await client.post("/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
        client.cookies.set(SESSION_COOKIE, cookie)  # a copy of the old cookie opens nothing
        assert (await client.get("/")).status_code == 303
    events = [(e.event, e.field) for e in site.state.audit("acme", "anna.virtanen")]
    assert ("login", "web.session") in events and ("logout", "web.session") in events


async def test_a_wrong_password_or_unknown_user_reads_the_same(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    site.set_password(anna)
    async with site.client() as client:
        answers = []
        for name, password in (("fi0401110001@acme.example", "wrong password!"),
                               ("fi0409999999@acme.example", PASSWORD),
                               ("mikko.korhonen@acme.example", PASSWORD)):  # no password yet
            form = await client.get("/login")
            token = LOGIN_CSRF.search(form.text).group(1)  # type: ignore[union-attr]
            response = await client.post("/login", data={"username": name, "password": password,
                                                          "login_csrf": token})
            assert response.status_code == 401
            assert SESSION_COOKIE not in response.cookies
            answers.append(response.text.replace(name, ""))
        assert "Käyttäjätunnus tai salasana on väärin." in answers[0]
        assert len(set(answers)) == 1 or all("login-error" in a for a in answers)


async def test_the_login_form_needs_its_own_cookie(site: WebHarness) -> None:
    """A login posted from another site (no double-submit cookie) is refused."""
    anna = site.who("acme", "anna.virtanen")
    site.set_password(anna)
    async with site.client() as client:
        response = await client.post("/login", data={"username": login_name(anna), "password": PASSWORD,
                                                      "login_csrf": "forged"})
        assert response.status_code == 403 and SESSION_COOKIE not in response.cookies


async def test_anonymous_requests_are_refused(site: WebHarness) -> None:
    async with site.client() as client:
        page = await client.get("/?x=1")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/%3Fx%3D1"
        for path in ("/api/v1/me", "/api/openapi.json"):
            assert (await client.get(path)).status_code == 401


async def test_api_session_by_bearer_token(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    site.set_password(anna)
    async with site.client() as client:
        assert (await client.post("/api/v1/session", json={"username": login_name(anna),
                                                            "password": "nope nope nope"})).status_code == 401
        opened = (await client.post("/api/v1/session", json={"username": login_name(anna),
                                                              "password": PASSWORD})).json()
        bearer = {"authorization": f"Bearer {opened['token']}"}
        me = (await client.get("/api/v1/me", headers=bearer)).json()
        assert me["number"] == "+358401110001" and me["tenant"] == "acme"
        spec = (await client.get("/api/openapi.json", headers=bearer)).json()
        assert "/api/v1/session" in spec["paths"] and "/login" not in spec["paths"]
        assert (await client.delete("/api/v1/session", headers=bearer)).status_code == 204
        assert (await client.get("/api/v1/me", headers=bearer)).status_code == 401


async def test_cookie_authenticated_api_changes_need_the_csrf_header(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    async with site.client() as client:
        csrf = await site.login(client, anna)
        assert (await client.delete("/api/v1/session")).status_code == 403
        assert (await client.get("/api/v1/me")).status_code == 200
        assert (await client.delete("/api/v1/session", headers={"x-csrf-token": csrf})).status_code == 204


async def test_a_session_ends_when_idle_and_when_the_password_changes(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    accounts = site.state.web_accounts
    opened = accounts.open_session("acme", "anna.virtanen", address="127.0.0.1", idle=timedelta(minutes=30),
                                   max_age=timedelta(hours=12), actor="test")
    assert accounts.session(opened.token, idle=timedelta(minutes=30)) is not None
    other = accounts.open_session("acme", "anna.virtanen", address="127.0.0.1", idle=timedelta(seconds=0),
                                  max_age=timedelta(hours=12), actor="test")
    assert accounts.session(other.token, idle=timedelta(minutes=30)) is None  # idle time over
    kept = accounts.open_session("acme", "anna.virtanen", address="127.0.0.1", idle=timedelta(minutes=30),
                                 max_age=timedelta(hours=12), actor="test")
    site.set_password(anna)  # ends every session
    assert accounts.session(opened.token, idle=timedelta(minutes=30)) is None
    assert accounts.session(kept.token, idle=timedelta(minutes=30)) is None
    assert accounts.password_hash("acme", "anna.virtanen", ).startswith("$argon2id$")  # type: ignore[union-attr]


async def test_only_loopback_and_permitted_networks_reach_the_page(site: WebHarness) -> None:
    async with site.client("192.0.2.10") as client:
        assert (await client.get("/login")).status_code == 403
    async with site.client("127.0.0.1") as client:
        assert (await client.get("/login")).status_code == 200
        # From the loopback proxy, X-Forwarded-For names the client in the audit trail.
        anna = site.who("acme", "anna.virtanen")
        site.set_password(anna)
        form = await client.get("/login")
        token = LOGIN_CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        await client.post("/login", headers={"x-forwarded-for": "198.51.100.7"},
                          data={"username": login_name(anna), "password": PASSWORD, "login_csrf": token})
    logins = [e for e in site.state.audit("acme", "anna.virtanen") if e.event == "login"]
    assert logins[0].new == "198.51.100.7"
