"""FastAGI server: Asterisk asks `agi://HOST:PORT/route,KEY,TENANT,USER,...` what to do with a call to
a user, and `agi://HOST:PORT/outbound,KEY,TENANT,USER,NUMBER,ACTIVE` whether a call may go out to
the public network, and gets the answer as channel variables (see docs/architecture.md, "Dialplan
contract", and docs/routing.md).

Only Asterisk may ask: a peer outside loopback and the listener's `permit` networks is dropped
before it says a word, and a request whose first argument is not the generated key (`agi` in
secrets.json, rendered into the dialplan) is refused. Both are logged, the key never. The key is
an argument, not part of the URL, because Asterisk logs the URL when it cannot connect.

Built on panoramisk's FastAGI `Application` (routes, `Request.send_command`). Its connection
handler is replaced: in panoramisk 1.4 a peer that closes before the blank line ending the AGI
environment makes it spin on EOF without ever yielding, which freezes the whole event loop
(ARI included). Ours reads the environment with a size limit and a timeout.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from panoramisk.fast_agi import Application, Request

from base import logcontext, metrics
from base.model import Config
from base.offload import run_blocking

from .outbound import decide_outbound, parse_active
from .routing import CallFacts, RouteDecision, decide, find, record_mode
from .throttle import MinuteThrottle

log = logging.getLogger(__name__)

ENV_TIMEOUT = 5.0  # seconds for Asterisk to send the AGI environment
REQUEST_TIMEOUT = 10.0  # seconds for a whole request: a stuck peer must not hold a socket forever
# Connections served at once. Asterisk holds one per call being routed, for milliseconds; more
# than this is a flood, and each one would hold a file descriptor of the process that also
# serves ARI. Beyond it a connection is closed at once (the dialplan's fallback rings).
MAX_CONNECTIONS = 256
# An Asterisk unique id (epoch.sequence, or a system name before it): the received TIFF's name.
FAX_ID = re.compile(r"[A-Za-z0-9_-]{0,32}\.?[0-9]{1,12}\.[0-9]{1,12}")
# The announcement of a recorded call in a language: a sound file (its path without extension is
# what Dial's A() option plays), None when there is none.
NoticeFile = Callable[[str], Path | None]
SAFE_SOUND_PATH = re.compile(r"/[A-Za-z0-9/._+-]+")


class AgiError(Exception):
    """Asterisk refused an AGI command or the call hung up meanwhile."""


def quote(value: str) -> str:
    """An AGI command argument: double-quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def agi_args(request: Request) -> list[str]:
    """agi_arg_1, agi_arg_2, ... in order."""
    args: list[str] = []
    while f"agi_arg_{len(args) + 1}" in request.headers:
        args.append(request.headers[f"agi_arg_{len(args) + 1}"])
    return args


async def set_variables(request: Request, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        result = await request.send_command(f"SET VARIABLE {name} {quote(value)}")
        if "error" in result or result.get("status_code") != 200:
            raise AgiError(f"SET VARIABLE {name}: {result.get('msg') or result}")


class AgiApplication(Application):  # type: ignore[misc]  # panoramisk has no type hints
    """Our FastAGI scripts. `config` may be replaced at run time (e.g. after a deploy).

    `state` is the call-state service (forwards, call waiting); without one, every user has the
    default routing. `notice_file(language)` is the announcement of a recorded call (a sound file,
    None when there is none).
    """

    def __init__(self, config: Config, state: Any = None, *, key: str,
                 notice_file: NoticeFile | None = None) -> None:
        if not key:
            raise ValueError("FastAGI needs a key")
        super().__init__()
        self.config = config
        self.state = state
        self._key = key.encode()
        self.throttle = MinuteThrottle()
        self.notice_file = notice_file
        self.add_route("route", self.route)
        self.add_route("outbound", self.outbound)
        self.add_route("ping", self.ping)
        self.add_route("fax", self.fax)
        self.connections = 0  # being served now
        self._refusing = False  # logged once per flood, not once per refused connection

    async def route(self, request: Request) -> str:
        """`route,TENANT,USER,DEVICE_STATE,CHAIN,REDIRECT_COUNT,CALLER_TENANT,CALLER_USER` (the
        last two: the calling device's user, empty for a call from a trunk)."""
        args = agi_args(request)
        tenant_id, user_id, device_state, chain, redirects, caller_tenant, caller_user = (args + [""] * 7)[:7]
        facts = CallFacts.parse(device_state, chain, redirects)
        logcontext.bind(tenant=tenant_id, user=user_id)
        decision = await self.decide(tenant_id, user_id, facts)
        if not decision.known:
            # No answer: the dialplan's fallback rings and, for a user with voicemail, sends busy
            # and unanswered calls there (our "ring" would come with ON_* = none).
            log.warning("route: unknown tenant/user %r/%r, letting the devices ring", tenant_id, user_id)
            return "unknown"
        if decision.loop:
            log.warning("route %s/%s: a forward was not followed (loop or too many hops: %s)",
                        tenant_id, user_id, "/".join(decision.chain))
        record = record_mode(await self.records(tenant_id, user_id), await self.records(caller_tenant, caller_user))
        # The announcement in the language of the user whose recording it is (the called one's
        # when both record). No announcement, no recording: the law wants both parties told.
        notice = self.notice(*((caller_tenant, caller_user) if record == "out" else (tenant_id, user_id)), bool(record))
        decision = replace(decision, record=record if notice else "")
        variables = {"VIPBX_ROUTE": decision.packed(), **notice}
        if await self.receives_fax(tenant_id, user_id):
            variables["VIPBX_FAX"] = "1"
        await set_variables(request, variables)
        log.info("route %s/%s (%s): %s %s%s", tenant_id, user_id, facts.device_state or "-",
                 decision.action, decision.target, f" (recorded: {record})" if record else "")
        return decision.action

    async def records(self, tenant_id: str, user_id: str) -> bool:
        """Whether the user's calls are recorded; False for no user, or when the state cannot be
        read (a call goes unrecorded rather than unrouted)."""
        recording = getattr(self.state, "recording_state", None)
        if recording is None or not tenant_id or find(self.config, tenant_id, user_id) is None:
            return False
        try:
            return bool(await run_blocking(recording.recording, tenant_id, user_id))
        except Exception:
            log.exception("recording setting of %s/%s unreadable: the call is not recorded", tenant_id, user_id)
            return False

    def notice(self, tenant_id: str, user_id: str, recorded: bool) -> dict[str, str]:
        """VIPBX_RECORD_NOTICE: the announcement of a recorded call in the recording user's
        language (a file path without extension); empty when there is none, and then the call is
        not recorded."""
        found = find(self.config, tenant_id, user_id) if recorded and self.notice_file is not None else None
        if found is None or self.notice_file is None:
            return {}
        file = self.notice_file(found[1].language)
        played = str(file.with_suffix("")) if file is not None else ""
        if not SAFE_SOUND_PATH.fullmatch(played):
            # Missing, or a path Dial's options could not carry (':' ',' '(' ...).
            log.warning("the announcement of recorded calls (%s) is missing or unusable: %s/%s's call is "
                        "not recorded (run `vipbx prompts build`)", played or "no file", tenant_id, user_id)
            return {}
        return {"VIPBX_RECORD_NOTICE": played}

    async def decide(self, tenant_id: str, user_id: str, facts: CallFacts) -> RouteDecision:
        config = self.config
        routing = presence = None
        if self.state is not None and find(config, tenant_id, user_id) is not None:
            # A thread: a database waiting on a lock must not stall every other call.
            routing, presence = await run_blocking(self.state.call_state, tenant_id, user_id)
        return decide(config, tenant_id, user_id, routing, facts, presence)

    async def receives_fax(self, tenant_id: str, user_id: str) -> bool:
        fax = getattr(self.state, "fax", None)
        if fax is None:
            return False
        try:
            return bool(await run_blocking(fax.enabled, tenant_id, user_id))
        except Exception:  # a fax setting must never stop the call being routed
            log.exception("route %s/%s: fax setting unreadable, not listening for a fax", tenant_id, user_id)
            return False

    async def fax(self, request: Request) -> None:
        """`fax,TENANT,USER,UNIQUEID,FAXSTATUS,FAXPAGES,CALLER,REMOTE_ID,FAXERROR`: a fax call
        ended (run in the `h` extension: nothing is asked of the channel)."""
        tenant_id, user_id, unique_id, status, pages, caller, remote, error = (agi_args(request) + [""] * 8)[:8]
        fax = getattr(self.state, "fax", None)
        if fax is None or self.config.find_user(tenant_id, user_id) is None or not FAX_ID.fullmatch(unique_id):
            log.warning("fax: refused %r/%r (%r)", tenant_id, user_id, unique_id)
            return
        count = int(pages) if pages.isdigit() else 0
        fax_id = await run_blocking(lambda: fax.record(
            tenant_id, user_id, caller=caller, remote_id=remote, pages=count, ok=status == "SUCCESS",
            error=error, tiff=f"{unique_id}.tif"))
        log.info("fax %s/%s from %s: %s, %d page(s) (#%d)", tenant_id, user_id, caller or "-", status or "-",
                 count, fax_id)

    async def outbound(self, request: Request) -> str:
        """`outbound,TENANT,USER,NUMBER,ACTIVE`: VIPBX_OUTBOUND (see agi/outbound.py)."""
        tenant_id, user_id, number, active = (agi_args(request) + [""] * 4)[:4]
        logcontext.bind(tenant=tenant_id, user=user_id)
        now = asyncio.get_running_loop().time()
        decision = decide_outbound(self.config, self.throttle, tenant_id, number, parse_active(active), now)
        notice = self.notice(tenant_id, user_id, decision.allowed and await self.records(tenant_id, user_id))
        decision = replace(decision, record=bool(notice))  # no announcement, no recording
        who = f"tenant {tenant_id or '-'}, user {user_id or '-'} ({request.headers.get('agi_channel', '-')})"
        if decision.allowed:
            log.info("outbound %s to %s: allowed", who, number)
        else:
            log.warning("outbound %s to %s refused (%s): %s", who, number, decision.reason, decision.why)
        await set_variables(request, {"VIPBX_OUTBOUND": decision.packed(), **notice})
        return "allowed" if decision.allowed else "refused"

    async def ping(self, request: Request) -> None:
        await set_variables(request, {"VIPBX_PONG": "1"})

    def permitted(self, peer: Any) -> bool:
        """Loopback, or an address of the listener's permit networks (read per connection: the
        configuration may be replaced at run time)."""
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except (TypeError, IndexError, ValueError):
            return False  # not an IP peer (e.g. a Unix socket): not Asterisk over TCP
        if address.is_loopback:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        listener = self.config.platform.agi
        return listener.allow_remote and any(
            address in ipaddress.ip_network(net, strict=False) for net in listener.permit
        )

    def has_key(self, headers: dict[str, str]) -> bool:
        """Whether the first AGI argument is the key; the key is then taken out of `headers`,
        so the scripts see their own arguments as agi_arg_1, agi_arg_2, ..."""
        given = headers.get("agi_arg_1", "")
        # Compared in constant time: the reply time must not reveal how much of a guess is right.
        if not hmac.compare_digest(given.encode(), self._key):
            return False
        number = 1
        while f"agi_arg_{number + 1}" in headers:
            headers[f"agi_arg_{number}"] = headers.pop(f"agi_arg_{number + 1}")
            number += 1
        headers.pop(f"agi_arg_{number}", None)
        return True

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= MAX_CONNECTIONS:
            if not self._refusing:
                log.warning("FastAGI: %d connections open, refusing more", self.connections)
            self._refusing = True
            metrics.agi_refused.labels("overload").inc()
            writer.close()
            return
        self._refusing = False
        self.connections += 1
        try:
            await self._serve(reader, writer)
        finally:
            self.connections -= 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        served = ""  # the script being served, once it is known to be ours
        try:
            if not self.permitted(peer):
                log.warning("FastAGI: connection from %s refused: not a permitted address", peer)
                metrics.agi_refused.labels("address").inc()
                return
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\n\n"), ENV_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                log.warning("FastAGI: no complete AGI environment from %s", peer)
                metrics.agi_refused.labels("incomplete").inc()
                return
            lines = raw.decode(self.default_encoding, errors="replace").splitlines()
            headers: OrderedDict[str, str] = OrderedDict()
            for line in lines:
                key, sep, value = line.partition(": ")
                if sep:
                    headers[key] = value
            if not self.has_key(headers):
                log.warning("FastAGI: request from %s refused: wrong or missing key", peer)
                metrics.agi_refused.labels("key").inc()
                return
            # agi://host/script?x=y sends "script?x=y"; the script name is what routes.
            script = headers.get("agi_network_script", "").lstrip("/").split("?", 1)[0]
            endpoint = self._route.get(script)
            if endpoint is None:
                # The peer's mistake, not ours: no ERROR for what anyone can send.
                log.warning("FastAGI: no script %r (from %s)", script, peer)
                metrics.agi_refused.labels("script").inc()
                return
            request = Request(app=self, headers=headers, reader=reader, writer=writer, encoding=self.default_encoding)
            served = script
            # This connection's task: its lines name the call (scripts bind tenant and user).
            logcontext.bind(call_id=headers.get("agi_uniqueid"))
            started = time.monotonic()
            answer = await asyncio.wait_for(endpoint(request), REQUEST_TIMEOUT)
            metrics.agi_seconds.labels(script).observe(time.monotonic() - started)
            metrics.agi_requests.labels(script, answer or "ok").inc()
        except Exception:
            log.exception("FastAGI: request from %s failed", peer)
            if served:
                metrics.agi_requests.labels(served, "error").inc()
        finally:
            writer.close()


async def start_agi_server(config: Config, host: str, port: int, state: Any = None, *,
                           key: str, notice_file: NoticeFile | None = None) -> tuple[asyncio.Server, AgiApplication]:
    """Listen for FastAGI requests carrying `key`; the caller owns (and closes) the server."""
    app = AgiApplication(config, state, key=key, notice_file=notice_file)
    server = await asyncio.start_server(app.handler, host, port)
    log.info("FastAGI listening on %s:%d", host, port)
    return server, app
