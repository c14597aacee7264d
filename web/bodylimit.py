"""A cap on request bodies: an ASGI middleware in front of every route.

Every form and API body of the home page is small (a note, a contact, a password); nothing is
uploaded. A larger body is refused with 413 before a route reads it, whether it announces its
length or streams without one, so a client cannot make the service buffer megabytes per request.
"""

from __future__ import annotations

from typing import Any

from .network import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """Raised into the route reading a body past the cap, once the 413 is sent."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope.get("headers") or []).get(b"content-length", b"")
        if announced and (not announced.isdigit() or int(announced) > self.max_bytes):
            await _refuse(send)
            return
        seen = 0
        started = refused = False

        async def counted_receive() -> Any:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answered here: the framework turns a failing body read into its own 400.
                    if not started and not refused:
                        refused = True
                        await _refuse(send)
                    raise BodyTooLarge
            return message

        async def watched_send(message: Any) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out; whatever the route makes of the failed read is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            pass


async def _refuse(send: Send) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"request body too large\n"})
