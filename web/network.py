"""Who may connect, and who the client is: an ASGI middleware in front of every route.

The direct peer must be on loopback, or in `platform.web.permit` when `allow_remote` is set.
A peer on loopback is the documented TLS reverse proxy: its `X-Forwarded-For` (last entry)
names the client for audit and rate limits, and `X-Forwarded-Proto: https` tells that the
browser used TLS. Off loopback the header is ignored, so a client cannot choose its address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from base.model import Listener

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_KEY = "vipbx.client"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


class PeerFilter:
    def __init__(self, app: ASGIApp, listener: Callable[[], Listener]) -> None:
        self.app = app
        self.listener = listener  # read per request: a configuration reload may change it

    def admits(self, peer: str) -> bool:
        address = _address(peer)
        if address is None:
            return False
        if address.is_loopback:
            return True
        listener = self.listener()
        return listener.allow_remote and any(
            address in ipaddress.ip_network(net, strict=False) for net in listener.permit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer = (scope.get("client") or ("", 0))[0]
        if not self.admits(peer):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": b"not allowed from this address\n"})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        client = peer
        peer_address = _address(peer)
        if peer_address is not None and peer_address.is_loopback:
            headers = dict(scope.get("headers") or [])
            forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",")[-1]
            if _address(forwarded) is not None:
                client = forwarded.strip()
            if headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower() == "https":
                scope["scheme"] = "https"
        scope.setdefault("state", {})[CLIENT_KEY] = client
        await self.app(scope, receive, send)


def client_address(scope: Scope) -> str:
    return str((scope.get("state") or {}).get(CLIENT_KEY) or (scope.get("client") or ("", 0))[0])
