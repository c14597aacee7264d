"""A fake ARI for unit tests: a real websocket server on 127.0.0.1 for events, and an
`httpx.MockTransport` for REST, so tests exercise `AriClient` end to end without Asterisk.
And `Snapshot`: everything a call may change, to compare before and after (unit and end-to-end).

    fake = FakeAri()
    await fake.start()
    client = AriClient(fake.base_url, "vipbx", fake.password, "vipbx", transport=fake.transport)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from base.model import Config
from callstate import CallStateService
from vmstore import VoicemailStore

RestHandler = Callable[[httpx.Request, re.Match[str]], Awaitable[httpx.Response] | httpx.Response]


class FakeAri:
    def __init__(self, user: str = "vipbx", password: str = "fake-secret", app: str = "vipbx") -> None:
        self.user, self.password, self.app = user, password, app
        self.port = 0
        self.channels: dict[str, dict[str, Any]] = {}  # what GET /channels answers
        self.requests: list[httpx.Request] = []
        self.ws_requests: list[Request] = []
        self.sockets: set[ServerConnection] = set()
        self.connections = 0  # websocket connections accepted so far
        self._routes: list[tuple[str, re.Pattern[str], RestHandler]] = []
        self._server: Server | None = None
        self._changed = asyncio.Condition()
        self.transport = httpx.MockTransport(self._rest)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ari"

    # --- websocket side ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen (again) on 127.0.0.1; after `stop()` the same port is reused, like a restart."""
        self._server = await serve(
            self._ws_handler, "127.0.0.1", self.port, process_request=self._check_auth
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Asterisk goes away: close every socket and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def drop(self) -> None:
        """Close the event sockets but keep listening (e.g. a network blip)."""
        for ws in list(self.sockets):
            await ws.close()

    def _check_auth(self, conn: ServerConnection, request: Request) -> Response | None:
        self.ws_requests.append(request)
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return conn.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    async def _ws_handler(self, ws: ServerConnection) -> None:
        self.sockets.add(ws)
        self.connections += 1
        await self._notify()
        try:
            await ws.wait_closed()
        finally:
            self.sockets.discard(ws)
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` connections have been accepted in total and one is open."""
        async def ready() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.connections >= count and bool(self.sockets))

        await asyncio.wait_for(ready(), timeout)

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("application", self.app)
        for ws in list(self.sockets):
            await ws.send(json.dumps(event))

    # --- REST side --------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: RestHandler) -> None:
        """Answer `method` on paths (below /ari) fully matching `pattern`; newest route wins."""
        self._routes.insert(0, (method, re.compile(pattern), handler))

    def calls(self, method: str, pattern: str) -> list[httpx.Request]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.fullmatch(self._path(r))]

    @staticmethod
    def _path(request: httpx.Request) -> str:
        return request.url.path.removeprefix("/ari")

    async def _rest(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = self._path(request)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if method == request.method and match:
                result = handler(request, match)
                return await result if not isinstance(result, httpx.Response) else result
        if request.method == "GET" and path == "/channels":
            return httpx.Response(200, json=list(self.channels.values()))
        if request.method in ("POST", "DELETE"):
            return httpx.Response(204)
        return httpx.Response(404, json={"message": "Not found"})


def channel(channel_id: str, *, app_data: str = "", number: str = "") -> dict[str, Any]:
    """A channel object as ARI shows it; `app_data` set means it sits in Stasis(app_data)."""
    return {
        "id": channel_id,
        "name": f"PJSIP/{channel_id}",
        "state": "Up",
        "caller": {"name": "", "number": number},
        "connected": {"name": "", "number": ""},
        "dialplan": {
            "context": "default",
            "exten": "s",
            "priority": 1,
            "app_name": "Stasis" if app_data else "",
            "app_data": app_data,
        },
        "channelvars": {},
    }


@dataclass(frozen=True)
class Snapshot:
    """Every mailbox (messages by folder, the greeting's bytes) and every user's call state
    (routing, presence, voicemail settings, PIN status), as they are now."""

    boxes: dict[tuple[str, str], dict[str, str]]  # (tenant, mailbox) → msg_id → folder
    greetings: dict[tuple[str, str], str | None]  # (tenant, mailbox) → digest of the greeting
    users: dict[tuple[str, str], tuple[Any, ...]]  # (tenant, user) → (routing, presence, settings, pin)

    @classmethod
    def take(cls, config: Config, store: VoicemailStore, state: CallStateService) -> Snapshot:
        boxes, greetings, users = {}, {}, {}
        for tenant in config.tenants:
            for user in tenant.users:
                key = (tenant.id, user.mailbox)
                boxes[key] = {m.envelope.msg_id: folder for folder in ("INBOX", "Old")
                              for m in store.list(tenant.id, user.mailbox, folder)}
                greeting = store.greeting(tenant.id, user.mailbox)
                greetings[key] = hashlib.sha256(greeting.read_bytes()).hexdigest() if greeting else None
                users[(tenant.id, user.id)] = (
                    state.routing(tenant.id, user.id), state.presence(tenant.id, user.id),
                    state.voicemail_settings(tenant.id, user.id), state.pin_status(tenant.id, user.id))
        return cls(boxes, greetings, users)

    def changed_users(self, other: Snapshot) -> set[tuple[str, str]]:
        """(tenant, user or mailbox) of everything that differs, in any part."""
        out: set[tuple[str, str]] = set()
        for part, theirs in ((self.boxes, other.boxes), (self.greetings, other.greetings),
                             (self.users, other.users)):
            out |= {key for key in part if part[key] != theirs[key]}
        return out
