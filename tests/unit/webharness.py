"""The home page over real services on a temporary home: the example tenants, SQLite call
state, a spool folder, no Asterisk (ARI and AMI absent). `WebHarness.client()` is an httpx
client speaking ASGI to the app as a browser on loopback would; `login()` sets a password the
way the page stores it and logs in through the form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from ari_app.presence.services import PresenceService
from ari_app.voicemail.services import VoicemailService
from asterisk_conf.validate import load_config
from base.model import Config, TenantUser
from callstate import CallStateService
from vmstore import VoicemailStore
from web.app import asgi_app
from web.auth.passwords import hash_password
from web.auth.usernames import login_name
from web.deps import WebDeps

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = [EXAMPLES / "platform.yaml", EXAMPLES / "acme.yaml", EXAMPLES / "borealis.yaml"]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_CSRF = re.compile(r'name="login_csrf" value="([^"]+)"')
PASSWORD = "correct horse battery"


def example_config() -> Config:
    config = load_config([str(p) for p in EXAMPLE_FILES])
    web = replace(config.platform.web, secure_cookies=False)
    return replace(config, platform=replace(config.platform, web=web))


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@dataclass
class WebHarness:
    deps: WebDeps
    config: Config

    @property
    def state(self) -> CallStateService:
        return self.deps.state

    def who(self, tenant_id: str, user_id: str) -> TenantUser:
        found = self.config.find_user(tenant_id, user_id)
        assert found is not None
        return found

    @asynccontextmanager
    async def client(self, address: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=asgi_app(self.deps), client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client

    def set_password(self, who: TenantUser, password: str = PASSWORD) -> None:
        self.state.web_accounts.set_password_hash(who.tenant.id, who.user.id, hash_password(password),
                                                  actor="test", source="test")

    async def login(self, client: httpx.AsyncClient, who: TenantUser, password: str = PASSWORD) -> str:
        """Logs `who` in through the form (setting the password first); the session's CSRF token."""
        self.set_password(who, password)
        form = await client.get("/login")
        response = await client.post("/login", data={
            "username": login_name(who), "password": password, "next": "/",
            "login_csrf": LOGIN_CSRF.search(form.text).group(1)})  # type: ignore[union-attr]
        assert response.status_code == 303, response.text
        home = await client.get("/")
        assert home.status_code == 200, home.text
        return csrf_of(home.text)

    async def post_form(self, client: httpx.AsyncClient, path: str, csrf: str, **fields: Any) -> httpx.Response:
        return await client.post(path, data={"csrf_token": csrf, **fields})


def make_harness(tmp_path: Path, config: Config | None = None) -> WebHarness:
    config = config or example_config()
    state = CallStateService(tmp_path / "state.sqlite3", config)
    store = VoicemailStore(tmp_path / "spool")
    recordings = tmp_path / "recording"
    recordings.mkdir(exist_ok=True)
    deps = WebDeps(state=state, store=store, presence=PresenceService(config, state, None),
                   voicemail=VoicemailService(config, store, state, None, None, recordings),
                   notifier=None, messenger=None, home=tmp_path)
    return WebHarness(deps, config)
