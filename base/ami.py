"""A short-lived AMI session (panoramisk) for ops actions: reloads, MWI refresh, checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from panoramisk import Manager

log = logging.getLogger(__name__)
# panoramisk logs a warning per failed (re)connect; we raise AmiError with the reason instead.
_quiet = logging.getLogger(__name__ + ".panoramisk")
_quiet.setLevel(logging.ERROR)


class AmiError(Exception):
    pass


@dataclass(frozen=True)
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str


class AmiSession:
    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    async def action(self, action: str, **fields: str) -> dict[str, str]:
        """Send one action; AmiError unless Asterisk answers `Response: Success`."""
        reply = await self._manager.send_action({"Action": action, **fields})
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
        reply = await self._manager.send_action({"Action": "Command", "Command": cli})
        output = reply.get("Output") or reply.get("content") or ""
        return "\n".join(output) if isinstance(output, list) else str(output)


@contextlib.asynccontextmanager
async def ami_session(settings: AmiSettings, timeout: float = 5.0) -> AsyncIterator[AmiSession]:
    """Connect and log in, or raise AmiError (Asterisk down, wrong secret) within `timeout`."""
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
    try:
        try:
            await asyncio.wait_for(manager.connect(), timeout)
            for _ in range(int(timeout * 20)):
                if manager.authenticated_future is not None:
                    break
                await asyncio.sleep(0.05)
            login = await asyncio.wait_for(manager.authenticated_future, timeout)
        except (OSError, asyncio.TimeoutError, TypeError) as exc:
            raise AmiError(f"cannot reach AMI at {settings.host}:{settings.port}: {exc or type(exc).__name__}") from exc
        if login.get("Response") != "Success":
            raise AmiError(f"AMI login refused: {login.get('Message')}")
        yield AmiSession(manager)
    finally:
        manager.close()
