"""A short-lived AMI session (panoramisk) for ops actions: reloads, MWI refresh, checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from panoramisk import Manager

log = logging.getLogger(__name__)
# panoramisk logs a warning per failed (re)connect; we raise AmiError with the reason instead.
_quiet = logging.getLogger(__name__ + ".panoramisk")
_quiet.setLevel(logging.ERROR)


# Connect and log in: Asterisk answers a login at once when it is healthy.
CONNECT_TIMEOUT = 5.0
# One action: a reload of a large configuration takes tens of seconds (bench/README.md), so the
# deploy's reloader passes its own, longer, limit.
ACTION_TIMEOUT = 10.0


class AmiError(Exception):
    pass


class AmiTimeout(AmiError):
    """AMI did not answer in time: Asterisk may be hung, or something else listens there."""


@dataclass(frozen=True)
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str


class AmiSession:
    def __init__(self, manager: Manager, where: str = "", action_timeout: float = ACTION_TIMEOUT) -> None:
        self._manager = manager
        self._where = where
        self.action_timeout = action_timeout

    async def _send(self, message: dict[str, str]) -> Any:
        try:
            return await asyncio.wait_for(self._manager.send_action(message), self.action_timeout)
        except TimeoutError:
            raise AmiTimeout(f"{message['Action']}: no answer from AMI at {self._where} within "
                             f"{self.action_timeout:g} s") from None

    async def action(self, action: str, **fields: str) -> dict[str, str]:
        """Send one action; AmiError unless Asterisk answers `Response: Success` within the
        session's action timeout (AmiTimeout if it does not answer at all)."""
        reply = await self._send({"Action": action, **fields})
        if isinstance(reply, list):  # actions that answer with a list of events
            reply = reply[0]
        if reply.get("Response") != "Success":
            raise AmiError(f"{action} {fields}: {reply.get('Message', reply)}")
        return dict(reply)

    async def listing(self, action: str, **fields: str) -> list[dict[str, str]]:
        """The events of an action that answers with a list (e.g. DBGetTree), without the leading
        response and the closing "...Complete" event; AmiError unless accepted."""
        reply = await self._manager.send_action({"Action": action, **fields})
        messages = reply if isinstance(reply, list) else [reply]
        if not messages or messages[0].get("Response") != "Success":
            first = messages[0] if messages else {}
            raise AmiError(f"{action} {fields}: {first.get('Message', first)}")
        return [dict(m) for m in messages[1:] if not str(m.get("Event", "")).endswith("Complete")]

    async def command(self, cli: str) -> str:
        """Run a CLI command and return its output."""
        reply = await self._send({"Action": "Command", "Command": cli})
        output = reply.get("Output") or reply.get("content") or ""
        return "\n".join(output) if isinstance(output, list) else str(output)


@contextlib.asynccontextmanager
async def ami_session(settings: AmiSettings, timeout: float = CONNECT_TIMEOUT, *,
                      action_timeout: float = ACTION_TIMEOUT) -> AsyncIterator[AmiSession]:
    """Connect and log in, or raise AmiError (Asterisk down, wrong secret) within `timeout`:
    AmiTimeout when something accepted the connection but did not answer. Each action of the
    session then has `action_timeout` seconds to be answered."""
    manager = Manager(
        host=settings.host,
        port=settings.port,
        username=settings.username,
        secret=settings.secret,
        ping_delay=3600,  # short-lived: no keep-alive pings
        reconnect_timeout=3600,  # and no background reconnects after we are done
        events="off",
        loop=asyncio.get_running_loop(),
        log=_quiet,
    )
    where = f"{settings.host}:{settings.port}"
    try:
        try:
            try:
                await asyncio.wait_for(manager.connect(), timeout)
            except TimeoutError:
                raise AmiTimeout(f"no connection to AMI at {where} within {timeout:g} s") from None
            try:
                async with asyncio.timeout(timeout):
                    while manager.authenticated_future is None:
                        await asyncio.sleep(0.05)
                    login = await manager.authenticated_future
            except TimeoutError:
                raise AmiTimeout(f"AMI at {where} accepted the connection but did not answer the "
                                 f"login within {timeout:g} s") from None
        except (OSError, TypeError) as exc:
            raise AmiError(f"cannot reach AMI at {where}: {exc or type(exc).__name__}") from exc
        if login.get("Response") != "Success":
            raise AmiError(f"AMI login refused: {login.get('Message')}")
        yield AmiSession(manager, where, action_timeout)
    finally:
        manager.close()


class AmiEvents:
    """A long-lived AMI session that reads events (those the AMI user's `read` classes allow):
    `run()` keeps it until cancelled, calling `handlers[name](fields)` for each event of that
    name. A dropped connection is reconnected every `retry` seconds; events Asterisk sent
    meanwhile are lost (AMI keeps no backlog)."""

    def __init__(self, settings: AmiSettings, handlers: dict[str, Callable[[dict[str, str]], None]],
                 retry: float = 2.0) -> None:
        self._settings = settings
        self._handlers = handlers
        self._retry = retry
        self._manager: Manager | None = None

    @property
    def ready(self) -> bool:
        """Connected and logged in now."""
        m = self._manager
        return bool(m is not None and m._connected and m.authenticated)

    async def run(self) -> None:
        s = self._settings
        manager = Manager(host=s.host, port=s.port, username=s.username, secret=s.secret,
                          ping_delay=10, reconnect_timeout=self._retry, events="on",
                          loop=asyncio.get_running_loop(), log=_quiet)
        for name, handler in self._handlers.items():
            manager.register_event(name, lambda _m, message, handler=handler: handler(dict(message)))
        self._manager = manager
        try:
            manager.connect()  # panoramisk retries a refused or lost connection every `retry` s
            await asyncio.Event().wait()
        finally:
            self._manager = None
            manager.close()
