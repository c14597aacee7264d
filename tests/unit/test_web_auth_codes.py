"""First login and forgotten password with a one-time code, the account page's password change,
and the login's rate limits and lockouts, over real call state with a recording messenger."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from webharness import LOGIN_CSRF, PASSWORD, WebHarness, csrf_of, make_harness

from callstate.web_logins import (
    CODE_FAILED,
    CODE_REFUSED,
    CODE_SENT,
    CODE_USED,
    LOGIN_FAILED,
    LOGIN_LOCKED,
    LOGIN_REFUSED,
    NOBODY,
    Limit,
    address_subject,
)
from notify import DeliveryError
from web.auth import logins
from web.auth.code_routes import TICKET_COOKIE
from web.auth.sessions import SESSION_COOKIE
from web.auth.usernames import login_name

NEW_PASSWORD = "Uusi salasana 2027"
CODE = re.compile(r"\b([0-9]{8})\b")


@dataclass
class RecordingMessenger:
    """What the platform's Messenger would have sent: (to, text) per SMS, (to, subject, body) per mail."""

    sms_gateway: bool = True
    email_relay: bool = True
    fail: bool = False
    texts: list[tuple[str, str]] = field(default_factory=list)
    mails: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def can_sms(self) -> bool:
        return self.sms_gateway

    @property
    def can_email(self) -> bool:
        return self.email_relay

    async def sms(self, to: str, text: str) -> None:
        if self.fail:
            raise DeliveryError("gateway down")
        self.texts.append((to, text))

    async def email(self, to: str, subject: str, body: str, attachments: tuple[object, ...] = ()) -> None:
        self.mails.append((to, subject, body))

    def last_code(self) -> str:
        text = self.texts[-1][1] if self.texts else self.mails[-1][2]
        found = CODE.search(text)
        assert found, text
        return found.group(1)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def site(tmp_path: Path, clock: Clock) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    harness.state.store._clock = clock  # the limits' and codes' times, under the test's control
    harness.deps.messenger = RecordingMessenger()  # type: ignore[assignment]
    yield harness
    harness.state.close()


def messenger(site: WebHarness) -> RecordingMessenger:
    assert isinstance(site.deps.messenger, RecordingMessenger)
    return site.deps.messenger


async def login_token(client: httpx.AsyncClient, path: str = "/login") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = LOGIN_CSRF.search(page.text)
    assert found
    return found.group(1)


async def ask_code(site: WebHarness, client: httpx.AsyncClient, username: str) -> httpx.Response:
    token = await login_token(client, "/login/code")
    response = await client.post("/login/code", data={"username": username, "login_csrf": token})
    await logins.settle(site.deps)
    return response


async def enter_code(client: httpx.AsyncClient, username: str, code: str) -> httpx.Response:
    token = await login_token(client, "/login/code/enter?username=x")
    return await client.post("/login/code/enter", data={"username": username, "code": code, "login_csrf": token})


async def choose(client: httpx.AsyncClient, password: str, repeat: str | None = None) -> httpx.Response:
    token = await login_token(client, "/login/password")
    return await client.post("/login/password", data={"password": password, "repeat": repeat or password,
                                                      "login_csrf": token})


async def password_login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    token = await login_token(client)
    return await client.post("/login", data={"username": username, "password": password, "login_csrf": token})


def events(site: WebHarness, tenant: str = "acme", user: str = "anna.virtanen") -> list[str]:
    return [e.event for e in site.state.audit(tenant, user)]


async def test_first_login_with_a_code_then_the_password(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    name = login_name(anna)
    assert site.state.web_accounts.password_hash("acme", "anna.virtanen") is None
    async with site.client() as client:
        sent = await ask_code(site, client, name)
        assert sent.status_code == 303 and sent.headers["location"].startswith("/login/code/enter?done=login_code_sent")
        (to, text), = messenger(site).texts
        assert to == "+358401110001" and "Kotisivun kirjautumiskoodisi on" in text  # Anna's language: Finnish
        code = messenger(site).last_code()
        # The code is stored hashed only.
        stored = site.state.store.read(lambda tx: tx.one("SELECT code_hash FROM web_login_codes"))
        assert stored and code not in stored[0] and stored[0].startswith("$argon2id$")
        entered = await enter_code(client, name, code[:4] + " " + code[4:])  # spaces people type are fine
        assert entered.status_code == 303 and entered.headers["location"] == "/login/password"
        assert TICKET_COOKIE in client.cookies
        form = await client.get("/login/password")
        assert name in form.text and 'autocomplete="new-password"' in form.text
        # The rules are checked before anything is used up.
        for bad, key in (("short", "password_too_short"), ("Anna Virtanen 2026", "password_has_name"),
                         ("aaaaaaaaaaaaaa", "password_too_simple")):
            refused = await choose(client, bad)
            assert refused.status_code == 422 and "errors" in refused.text, key
        assert (await choose(client, NEW_PASSWORD, "something else!")).status_code == 422
        done = await choose(client, NEW_PASSWORD)
        assert done.status_code == 303 and done.headers["location"] == "/?done=login_password_chosen"
        home = await client.get(done.headers["location"])
        assert home.status_code == 200 and "Anna Virtanen" in home.text
        # The ticket is used up: the page sends back to a new code.
        assert (await client.get("/login/password")).headers["location"].startswith("/login/code?over=1")
        # The code cannot be used again.
        assert (await enter_code(client, name, code)).status_code == 401
    async with site.client() as other:
        assert (await password_login(other, name, NEW_PASSWORD)).status_code == 303
    assert {CODE_SENT, CODE_USED, "password_set", "login"} <= set(events(site))


async def test_a_code_request_reads_the_same_for_anyone(site: WebHarness) -> None:
    answers = []
    async with site.client() as client:
        for name in ("fi0401110001@acme.example", "fi0409999999@acme.example", "nobody@nowhere.example"):
            response = await ask_code(site, client, name)
            answers.append((response.status_code, response.headers["location"].replace(name.replace("@", "%40"), "")))
    assert len(set(answers)) == 1
    assert [to for to, _ in messenger(site).texts] == ["+358401110001"]


async def test_e_mail_when_no_sms_gateway(site: WebHarness) -> None:
    messenger(site).sms_gateway = False
    sara = site.who("acme", "sara.lindqvist")
    async with site.client() as client:
        await ask_code(site, client, login_name(sara))
    (to, subject, body), = messenger(site).mails
    assert to == "sara.lindqvist@acme.example" and subject == "Inloggningskod till hemsidan"  # Swedish
    assert "Din inloggningskod" in body
    sent = next(e for e in site.state.audit("acme", "sara.lindqvist") if e.event == CODE_SENT)
    assert sent.new == "email"


async def test_an_undelivered_code_is_withdrawn_and_audited(site: WebHarness) -> None:
    messenger(site).fail = True
    async with site.client() as client:
        await ask_code(site, client, "fi0401110001@acme.example")
    assert site.state.web_logins.pending_code("acme", "anna.virtanen") is None
    unsent = next(e for e in site.state.audit("acme", "anna.virtanen") if e.event == "code_unsent")
    assert "gateway down" in (unsent.old or "")


async def test_a_code_is_short_lived_single_use_and_replaced(site: WebHarness, clock: Clock) -> None:
    name = "fi0401110001@acme.example"
    async with site.client() as client:
        await ask_code(site, client, name)
        first = messenger(site).last_code()
        await ask_code(site, client, name)
        second = messenger(site).last_code()
        assert first != second
        assert (await enter_code(client, name, first)).status_code == 401  # replaced
        clock.advance(minutes=11)
        assert (await enter_code(client, name, second)).status_code == 401  # expired
        await ask_code(site, client, name)
        third = messenger(site).last_code()
        wrong = "00000000" if third != "00000000" else "11111111"
        for _ in range(5):
            assert (await enter_code(client, name, wrong)).status_code == 401
        assert (await enter_code(client, name, third)).status_code == 401  # attempts used up
    kinds = [e.old for e in site.state.audit("acme", "anna.virtanen") if e.event == CODE_FAILED]
    assert {"wrong code", "code expired", "too many attempts"} <= set(kinds)


async def test_sending_is_rate_limited_per_user_and_per_address(site: WebHarness, clock: Clock) -> None:
    name = "fi0401110001@acme.example"
    async with site.client() as client:
        for _ in range(5):
            await ask_code(site, client, name)
        assert len(messenger(site).texts) == 3  # per user per hour
        assert CODE_REFUSED in events(site)
        clock.advance(minutes=61)
        await ask_code(site, client, name)
        assert len(messenger(site).texts) == 4
    # Many names from one address: at most 10 requests an hour are served.
    async with site.client("127.0.0.5") as client:
        for tenant_user in ("mikko.korhonen", "sara.lindqvist") * 3 + ("nobody",) * 6:
            await ask_code(site, client, f"{tenant_user}@acme.example")
    assert len(messenger(site).texts) == 4 + 6 - 0  # 6 known-user requests within the first 10
    refused = [e for e in site.state.audit("", "") if e.event == CODE_REFUSED]
    assert refused and refused[0].new == "127.0.0.5"


async def test_wrong_passwords_lock_the_user_and_a_lock_reads_like_a_wrong_password(
        site: WebHarness, clock: Clock) -> None:
    anna = site.who("acme", "anna.virtanen")
    name = login_name(anna)
    site.set_password(anna)
    async with site.client() as client:
        for _ in range(5):
            wrong = await password_login(client, name, "not the password")
            assert wrong.status_code == 401
        locked = await password_login(client, name, PASSWORD)  # the right one, but locked
        assert locked.status_code == 401 and SESSION_COOKIE not in client.cookies
        assert locked.text.replace(LOGIN_CSRF.search(locked.text).group(1), "") == \
            wrong.text.replace(LOGIN_CSRF.search(wrong.text).group(1), "")  # type: ignore[union-attr]
        audit = site.state.audit("acme", "anna.virtanen")
        assert [e.event for e in audit[:2]] == [LOGIN_REFUSED, LOGIN_LOCKED]
        assert "user locked until" in (audit[0].old or "")
        assert sum(e.event == LOGIN_FAILED and e.old == "wrong password" for e in audit) == 5
        # The API is locked too.
        api = await client.post("/api/v1/session", json={"username": name, "password": PASSWORD})
        assert api.status_code == 401
        clock.advance(minutes=16)
        assert (await password_login(client, name, PASSWORD)).status_code == 303
        # A success ends the series and the escalation.
        assert site.state.web_logins.user_lock("acme", "anna.virtanen").level == 0


async def test_the_user_lock_escalates_and_then_holds_until_a_code(site: WebHarness, clock: Clock) -> None:
    anna = site.who("acme", "anna.virtanen")
    name = login_name(anna)
    site.set_password(anna)
    logins_state = site.state.web_logins
    async with site.client() as client:
        for minutes in (15, 60, 24 * 60):
            for _ in range(6):
                await password_login(client, name, "not the password")
            lock = logins_state.user_lock("acme", "anna.virtanen")
            assert lock.locked_until == clock.now + timedelta(minutes=minutes)
            clock.advance(minutes=minutes + 1)
        for _ in range(6):
            await password_login(client, name, "not the password")
        assert logins_state.user_lock("acme", "anna.virtanen").held
        clock.advance(days=30)
        assert (await password_login(client, name, PASSWORD)).status_code == 401  # still held
        # The code proves the phone: choosing a password with it lifts the lock.
        await ask_code(site, client, name)
        assert (await enter_code(client, name, messenger(site).last_code())).status_code == 303
        assert (await choose(client, NEW_PASSWORD)).status_code == 303
    assert not logins_state.user_lock("acme", "anna.virtanen").locked
    async with site.client() as other:
        assert (await password_login(other, name, NEW_PASSWORD)).status_code == 303


async def test_an_address_is_locked_after_many_failures_whoever_it_tries(site: WebHarness, clock: Clock) -> None:
    mikko = site.who("acme", "mikko.korhonen")
    site.set_password(mikko)
    async with site.client("127.0.0.9") as attacker:
        for i in range(20):
            await password_login(attacker, f"fi04099990{i:02d}@acme.example", "guess guess")
        # Mikko's right password from that address now fails, and the audit says why.
        assert (await password_login(attacker, login_name(mikko), PASSWORD)).status_code == 401
    refused = next(e for e in site.state.audit("acme", "mikko.korhonen") if e.event == LOGIN_REFUSED)
    assert "address locked" in (refused.old or "") and refused.new == "127.0.0.9"
    # The lock is audited on the attempt that set it; the guesses at nobody on the address.
    assert any(e.event == LOGIN_LOCKED and e.old == "127.0.0.9" for e in site.state.audit("acme", "mikko.korhonen"))
    assert sum(e.event == LOGIN_FAILED and e.old == "unknown user" for e in site.state.audit(*NOBODY)) == 20
    async with site.client("127.0.0.10") as elsewhere:
        assert (await password_login(elsewhere, login_name(mikko), PASSWORD)).status_code == 303
    clock.advance(minutes=16)
    async with site.client("127.0.0.9") as again:
        assert (await password_login(again, login_name(mikko), PASSWORD)).status_code == 303


async def test_change_password_on_the_account_page(site: WebHarness) -> None:
    anna = site.who("acme", "anna.virtanen")
    name = login_name(anna)
    async with site.client() as other:
        await site.login(other, anna)
    async with site.client() as client:
        csrf = await site.login(client, anna)  # the harness sets the password again: `other` has ended
        async with site.client() as second:
            assert (await password_login(second, name, PASSWORD)).status_code == 303
            page = await client.get("/account")
            assert page.status_code == 200 and name in page.text and 'id="end-others"' in page.text
            assert (await client.post("/account/password", data={"current": PASSWORD, "password": NEW_PASSWORD,
                                                                 "repeat": NEW_PASSWORD})).status_code == 403
            wrong = await site.post_form(client, "/account/password", csrf, current="not it at all",
                                         password=NEW_PASSWORD, repeat=NEW_PASSWORD)
            assert wrong.status_code == 422 and "Nykyinen salasana on väärin." in wrong.text
            same = await site.post_form(client, "/account/password", csrf, current=PASSWORD, password=PASSWORD,
                                        repeat=PASSWORD)
            assert same.status_code == 422
            done = await site.post_form(client, "/account/password", csrf, current=PASSWORD,
                                        password=NEW_PASSWORD, repeat=NEW_PASSWORD)
            assert done.status_code == 303 and done.headers["location"] == "/account?done=account_password_changed"
            assert (await client.get("/account")).status_code == 200  # this session stays
            assert (await second.get("/")).status_code == 303  # the other one ended
        async with site.client() as third:
            assert (await password_login(third, name, PASSWORD)).status_code == 401
            assert (await password_login(third, name, NEW_PASSWORD)).status_code == 303
        end = await site.post_form(client, "/account/sessions/end", csrf_of((await client.get("/account")).text))
        assert end.status_code == 303
    assert site.state.web_accounts.sessions_of("acme", "anna.virtanen") and \
        len(site.state.web_accounts.sessions_of("acme", "anna.virtanen")) == 1


async def test_the_api_twins(site: WebHarness) -> None:
    name = "fi0401110001@acme.example"
    async with site.client() as client:
        for username in (name, "nobody@acme.example"):
            answer = await client.post("/api/v1/login-code", json={"username": username})
            assert answer.status_code == 202 and answer.json() == {"detail": "if the user name is right, a code is on its way"}
        await logins.settle(site.deps)
        code = messenger(site).last_code()
        short = await client.post("/api/v1/login-code/password", json={"username": name, "code": code,
                                                                        "password": "short"})
        assert short.status_code == 422 and short.json() == {"detail": "password_too_short", "ticket": None}
        # Her name in it: told only once the code proved who asks, with a ticket for the next try.
        named = await client.post("/api/v1/login-code/password", json={"username": name, "code": code,
                                                                        "password": "Anna Virtanen 2027"})
        assert named.status_code == 422 and named.json()["detail"] == "password_has_name"
        ticket = named.json()["ticket"]
        assert ticket and CODE_USED in events(site)
        opened = await client.post("/api/v1/login-code/password", json={"username": name, "ticket": ticket,
                                                                         "password": NEW_PASSWORD})
        assert opened.status_code == 200, opened.text
        bearer = {"authorization": f"Bearer {opened.json()['token']}"}
        again = await client.post("/api/v1/login-code/password", json={"username": name, "code": code,
                                                                        "password": NEW_PASSWORD})
        assert again.status_code == 401
        reused = await client.post("/api/v1/login-code/password", json={"username": name, "ticket": ticket,
                                                                         "password": NEW_PASSWORD})
        assert reused.status_code == 401  # a ticket is used up with the password it chose
        sessions = (await client.get("/api/v1/sessions", headers=bearer)).json()
        assert len(sessions) == 1 and sessions[0]["current"]
        wrong = await client.put("/api/v1/password", headers=bearer,
                                 json={"current_password": "wrong one!", "password": "Kolmas salasana 3"})
        assert wrong.status_code == 403
        changed = await client.put("/api/v1/password", headers=bearer,
                                   json={"current_password": NEW_PASSWORD, "password": "Kolmas salasana 3"})
        assert changed.status_code == 204
        assert (await client.post("/api/v1/session", json={"username": name, "password": NEW_PASSWORD})
                ).status_code == 401
        assert (await client.post("/api/v1/session", json={"username": name, "password": "Kolmas salasana 3"})
                ).status_code == 200
        assert (await client.delete("/api/v1/sessions", headers=bearer)).status_code == 204
        assert len((await client.get("/api/v1/sessions", headers=bearer)).json()) == 1
        spec = (await client.get("/api/openapi.json", headers=bearer)).json()
        assert {"/api/v1/login-code", "/api/v1/login-code/password", "/api/v1/password",
                "/api/v1/sessions"} <= set(spec["paths"])


async def test_account_routes_are_the_viewers_own_and_refuse_strangers(site: WebHarness) -> None:
    """Nothing in a request names the user: another tenant's user changes only their own account."""
    anna, pekka = site.who("acme", "anna.virtanen"), site.who("borealis", site.config.tenants[1].users[0].id)
    async with site.client() as client:
        assert (await client.get("/account")).status_code == 303
        assert (await client.post("/account/password", data={})).status_code == 303
        assert (await client.put("/api/v1/password", json={"current_password": "x", "password": "y"})).status_code == 401
        assert (await client.get("/api/v1/sessions")).status_code == 401
        assert (await client.delete("/api/v1/sessions")).status_code == 401
    async with site.client() as anna_client, site.client() as pekka_client:
        await site.login(anna_client, anna)
        csrf = await site.login(pekka_client, pekka)
        anna_hash = site.state.web_accounts.password_hash("acme", "anna.virtanen")
        page = await pekka_client.get("/account")
        assert login_name(pekka) in page.text and login_name(anna) not in page.text
        # Extra fields naming Anna change nothing of hers.
        await site.post_form(pekka_client, "/account/password", csrf, current=PASSWORD, password=NEW_PASSWORD,
                             repeat=NEW_PASSWORD, username=login_name(anna), tenant="acme", user="anna.virtanen")
        await site.post_form(pekka_client, "/account/sessions/end", csrf, user="anna.virtanen")
        assert site.state.web_accounts.password_hash("acme", "anna.virtanen") == anna_hash
        assert (await anna_client.get("/account")).status_code == 200


def test_guesses_are_counted_before_their_check(site: WebHarness, clock: Clock) -> None:
    """Parallel guesses cannot pass the limit: each is claimed before its password is checked."""
    logins_state = site.state.web_logins
    claims = [logins_state.claim_login("acme", "anna.virtanen", "127.0.0.1", actor="test") for _ in range(6)]
    assert [c.allowed for c in claims] == [True] * 5 + [False]
    assert logins_state.user_lock("acme", "anna.virtanen").locked_until == clock.now + timedelta(minutes=15)
    assert logins_state.address_lock("127.0.0.1").failures == 5  # the refused one is not counted
    # A success takes its own claim back from the address, not the others', and ends the user's series.
    clock.advance(minutes=16)
    assert logins_state.claim_login("acme", "anna.virtanen", "127.0.0.2", actor="test").allowed
    assert logins_state.claim_login("acme", "anna.virtanen", "127.0.0.2", actor="test").allowed
    logins_state.login_ok("acme", "anna.virtanen", "127.0.0.2")
    assert logins_state.address_lock("127.0.0.2").failures == 1
    assert logins_state.user_lock("acme", "anna.virtanen") == Limit()


async def test_no_way_to_send_is_audited(site: WebHarness) -> None:
    messenger(site).sms_gateway = False
    async with site.client() as client:
        await ask_code(site, client, "workshop@acme.example")  # no e-mail address in the YAML
    assert not messenger(site).mails
    unsent = next(e for e in site.state.audit("acme", "workshop") if e.event == "code_unsent")
    assert unsent.old == "no SMS gateway, and no e-mail relay or address"


async def test_the_api_tells_nobody_whether_a_user_name_exists(site: WebHarness) -> None:
    """Without the right code, a password naming the user is answered like any wrong code: the
    user-specific rules are not run for a guesser (they would tell a real name from a made-up one)."""
    answers = []
    async with site.client() as client:
        for username in ("fi0401110001@acme.example", "fi0409999999@acme.example"):
            for password in ("Anna Virtanen 2027", "0401110001 salasana", NEW_PASSWORD):
                answer = await client.post("/api/v1/login-code/password",
                                           json={"username": username, "code": "12345678", "password": password})
                answers.append((answer.status_code, answer.json()))
    assert set(map(str, answers)) == {str((401, {"detail": "wrong or expired code"}))}


async def test_requests_over_the_limit_cost_no_hashing(site: WebHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = logins.hash_in_pool

    async def counting(password: str) -> str:
        hashed.append(password)
        return await real(password)

    monkeypatch.setattr(logins, "hash_in_pool", counting)
    async with site.client() as client:
        for _ in range(8):
            await ask_code(site, client, "fi0401110001@acme.example")
    assert len(messenger(site).texts) == 3 and len(hashed) == 3  # the 5 refused were never hashed
    assert [e for e in site.state.audit("acme", "anna.virtanen") if e.event == CODE_REFUSED]


async def test_a_flood_of_code_requests_is_capped_while_they_are_under_way(
        site: WebHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    release = asyncio.Event()
    started: list[str] = []

    async def slow_send(state: object, messenger: object, who: object, address: str) -> tuple[None, str]:
        started.append(address)
        await release.wait()
        return None, "held"

    monkeypatch.setattr(logins, "send_code", slow_send)
    for n in range(logins.MAX_PENDING_CODES + 20):
        logins.request_code(site.deps, f"nobody{n}@acme.example", "192.0.2.7")
    await asyncio.sleep(0)
    assert len(started) == logins.MAX_PENDING_CODES
    release.set()
    await logins.settle(site.deps)
    logins.request_code(site.deps, "nobody@acme.example", "192.0.2.7")  # room again once they finish
    await logins.settle(site.deps)
    assert len(started) == logins.MAX_PENDING_CODES + 1


def test_an_ipv6_network_counts_as_one_address(site: WebHarness) -> None:
    """One subscriber holds a whole /64: each of its addresses would otherwise get its own 20 tries."""
    p, logins_state = site.state.web_logins.policy, site.state.web_logins
    for n in range(p.address_attempts):
        assert logins_state.claim_login(None, None, f"2001:db8:1:2::{n + 1:x}", actor="t").allowed
    assert not logins_state.claim_login(None, None, "2001:db8:1:2:ffff::1", actor="t").allowed
    assert logins_state.claim_login(None, None, "2001:db8:1:3::1", actor="t").allowed  # the next /64
    assert logins_state.address_lock("2001:db8:1:2::abcd").locked
    assert address_subject("::ffff:192.0.2.1") == "192.0.2.1" == address_subject("192.0.2.1")
    assert address_subject("[2001:db8::1]") == "2001:db8::/64"
    assert address_subject("not an address") == "not an address"
