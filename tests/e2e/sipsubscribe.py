"""A small SIP presence watcher over UDP, acting as one device of the PBX.

It does what a desk phone's busy-lamp field does and nothing more: SUBSCRIBE to a colleague's
extension with `Event: presence` (RFC 6665), answer the digest challenge (RFC 2617 / RFC 7616,
MD5, qop=auth when offered), keep the dialog (tags, CSeq, remote target), answer every NOTIFY
with 200 OK and keep its body, and unsubscribe (`Expires: 0`) when closed. The PIDF bodies
(RFC 3863) are read into `Pidf`, including the elements Asterisk's supplements add: the RPID
activities of `<dm:person>` and the `<digium_presence>` tuple that carries the presence state and
its message. `Registration` puts another device online (REGISTER), so its hint's device state
changes too.

    async with PresenceWatcher(Account("acme-mikko-soft", password), "101",
                               server=("127.0.0.42", 17060), local=("127.0.0.43", 17061)) as watcher:
        first = await watcher.next_notify()
        busy = await watcher.wait_for(lambda n: n.pidf is not None and n.pidf.presence == "dnd")
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import cast

T1 = 0.5  # RFC 3261 retransmission timer base for requests over UDP
T2 = 4.0
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "o": "event", "k": "supported", "u": "allow-events"}


# --- messages -------------------------------------------------------------------------------------

@dataclass
class SipMessage:
    """A request (`method` set) or a response (`status` set); headers keep their order."""

    start: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        text = data.decode("utf-8", errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation line
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        message = cls(lines[0], headers, body)
        length = message.header("content-length")
        if length is not None and length.isdigit():
            message.body = body.encode()[:int(length)].decode("utf-8", errors="replace")
        return message

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0] if self.is_request else ""

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1]) if not self.is_request else 0

    @property
    def reason(self) -> str:
        parts = self.start.split(" ", 2)
        return parts[2] if not self.is_request and len(parts) > 2 else ""

    def all(self, name: str) -> list[str]:
        """Every value of the header `name` (long or compact form, case-insensitive), in order;
        comma-separated values of one line stay together."""
        wanted = name.lower()
        return [value for key, value in self.headers
                if COMPACT.get(key.lower(), key.lower()) == wanted]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.header("cseq") or "0 ").partition(" ")
        return int(number), method.strip()

    def encode(self) -> bytes:
        body = self.body.encode()
        lines = [self.start]
        lines += [f"{name}: {value}" for name, value in self.headers if name.lower() != "content-length"]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def __str__(self) -> str:
        return self.encode().decode("utf-8", errors="replace")


def header_param(value: str, name: str) -> str | None:
    """`;name=value` of a header such as From/To/Via (outside any <...> URI)."""
    outside = value.rsplit(">", 1)[-1] if ">" in value else value
    for part in outside.split(";")[1:]:
        key, _, found = part.partition("=")
        if key.strip().lower() == name:
            return found.strip()
    return None


def uri_of(value: str) -> str:
    """The URI of a name-addr (`"Name" <sip:...>;tag=x`) or of a bare addr-spec."""
    if "<" in value:
        return value.split("<", 1)[1].split(">", 1)[0]
    return value.split(";", 1)[0].strip()


# --- digest authentication --------------------------------------------------------------------------

_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """`Digest realm="x", nonce="y", ...` → ("digest", {realm: x, nonce: y, ...})."""
    scheme, _, rest = value.strip().partition(" ")
    params = {key.lower(): raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
              for key, raw in _PARAM.findall(rest)}
    return scheme.lower(), params


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_authorization(challenge: dict[str, str], *, method: str, uri: str, username: str,
                         password: str, nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization value answering an MD5 digest challenge (qop=auth when offered)."""
    realm, nonce = challenge.get("realm", ""), challenge["nonce"]
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in qops:
        cnonce = cnonce or secrets.token_hex(8)
        count = f"{nc:08x}"
        response = _md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "algorithm=MD5", f'cnonce="{cnonce}"', "qop=auth",
                   f"nc={count}"]
    elif qops:
        raise SipError(f"unsupported qop {challenge['qop']!r} (only auth)")
    else:
        fields += [f'response="{_md5(f"{ha1}:{nonce}:{ha2}")}"', "algorithm=MD5"]
    if "opaque" in challenge:
        fields.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(fields)


def md5_challenge(message: SipMessage) -> tuple[str, dict[str, str]] | None:
    """The (header name, parameters) of the MD5 digest challenge in a 401/407, if any."""
    name = "WWW-Authenticate" if message.status == 401 else "Proxy-Authenticate"
    reply = "Authorization" if message.status == 401 else "Proxy-Authorization"
    for value in message.all(name):
        scheme, params = parse_challenge(value)
        if scheme == "digest" and params.get("algorithm", "MD5").upper() == "MD5" and "nonce" in params:
            return reply, params
    return None


# --- PIDF -------------------------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass(frozen=True)
class Pidf:
    """What a watcher reads from an `application/pidf+xml` body.

    `basic` and `note` are standard PIDF: Asterisk derives them from the hint's device state
    (open/"Ready", closed/"Unavailable", "On the phone", ...). `activities` are the RPID
    activities of `<dm:person>` (the eyebeam supplement, also from the device state).
    `presence`, `subtype` and `message` come from the `<digium_presence>` element: the hint's
    presence state (available, away, dnd, xa, ...) and its message.
    """

    entity: str
    basic: str | None
    note: str | None
    activities: tuple[str, ...]
    presence: str | None
    subtype: str | None
    message: str | None
    xml: str

    @classmethod
    def parse(cls, body: str) -> Pidf:
        root = ElementTree.fromstring(body.strip())
        if _local(root.tag) != "presence":
            raise SipError(f"not a PIDF document: <{_local(root.tag)}>")
        basic = note = presence = subtype = message = None
        activities: list[str] = []
        for child in root:
            kind = _local(child.tag)
            if kind == "note" and note is None:
                note = (child.text or "").strip()
            elif kind == "tuple":
                for element in child.iter():
                    name = _local(element.tag)
                    if name == "basic" and basic is None and child.get("id") != "digium-presence":
                        basic = (element.text or "").strip()
                    elif name == "digium_presence":
                        presence, subtype = element.get("type"), element.get("subtype")
                        message = (element.text or "").strip() or None
            elif kind == "person":
                for element in child.iter():
                    if _local(element.tag) == "activities":
                        activities += [_local(a.tag) for a in element]
        return cls(root.get("entity", ""), basic, note, tuple(activities), presence, subtype,
                   message, body)


@dataclass(frozen=True)
class Notify:
    """One NOTIFY of the subscription, as received (and answered with 200 OK)."""

    cseq: int
    event: str
    subscription_state: str
    content_type: str
    body: str
    message: SipMessage = field(repr=False, compare=False)

    @property
    def terminated(self) -> bool:
        return self.subscription_state.split(";", 1)[0].strip().lower() == "terminated"

    @property
    def pidf(self) -> Pidf | None:
        if "pidf+xml" not in self.content_type.lower() or not self.body.strip():
            return None
        return Pidf.parse(self.body)


# --- the watcher --------------------------------------------------------------------------------

class SipError(Exception):
    """A protocol failure: a timeout, an unexpected answer."""


class Refused(SipError):
    """A SUBSCRIBE or REGISTER got a final answer other than 2xx (after authentication)."""

    def __init__(self, response: SipMessage) -> None:
        super().__init__(f"{response.cseq[1]} refused: {response.start}")
        self.response = response
        self.status = response.status


@dataclass(frozen=True)
class Account:
    """A device of the PBX: its endpoint id is the SIP user and the digest user name."""

    user: str
    password: str


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_message: Callable[[SipMessage, tuple[str, int]], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive (CRLF)
        try:
            message = SipMessage.parse(data)
        except (ValueError, IndexError):
            return
        self.on_message(message, addr)


class _UserAgent:
    """One device's UDP socket, its client transactions with digest retry, and the answers to
    requests that arrive (the subclass handles its own)."""

    method = ""

    def __init__(self, account: Account, *, server: tuple[str, int], local: tuple[str, int],
                 user_agent: str, log: bool) -> None:
        self.account = account
        self.server = server
        self.local = local
        self.user_agent = user_agent
        self.log = log
        self.call_id = f"{secrets.token_hex(12)}@{local[0]}"
        self.local_tag = secrets.token_hex(6)
        self.cseq = 0
        self.sent: list[SipMessage] = []
        self.received: list[SipMessage] = []
        self._pending: dict[str, asyncio.Future[SipMessage]] = {}
        self._socket: _Socket | None = None
        self._nc = 0  # nonce count for the last challenge's nonce
        self._nonce: str | None = None

    @property
    def server_hostport(self) -> str:
        return f"{self.server[0]}:{self.server[1]}"

    async def _bind(self) -> None:
        _, self._socket = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Socket(self._on_message), local_addr=self.local)

    async def _unbind(self) -> None:
        """Close the socket; the port is free again once this returns."""
        socket, self._socket = self._socket, None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        if socket is not None and socket.transport is not None:
            socket.transport.close()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(socket.closed), 1.0)

    # -- client transactions -----------------------------------------------------------------------
    def _build(self, request_uri: str, headers: list[tuple[str, str]]) -> SipMessage:
        """A request of `self.method` with the common headers first, then `headers`."""
        self.cseq += 1
        host, port = self.local
        common = [
            ("Via", f"SIP/2.0/UDP {host}:{port};rport;branch=z9hG4bK{secrets.token_hex(10)}"),
            ("Max-Forwards", "70"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} {self.method}"),
            ("User-Agent", self.user_agent),
        ]
        return SipMessage(f"{self.method} {request_uri} SIP/2.0", common + headers)

    async def _request(self, make: Callable[[], SipMessage], timeout: float) -> SipMessage:
        """Send what `make()` builds; when challenged, once more with digest credentials (again
        only if the nonce was stale). The final response."""
        authorization: tuple[str, str] | None = None
        for _ in range(3):
            request = make()
            if authorization is not None:
                request.headers.append(authorization)
            response = await self._transaction(request, timeout)
            challenge = md5_challenge(response) if response.status in (401, 407) else None
            if challenge is None:
                return response
            name, params = challenge
            if authorization is not None and params.get("stale", "").lower() != "true":
                return response  # the credentials themselves were refused
            self._nc = self._nc + 1 if params["nonce"] == self._nonce else 1
            self._nonce = params["nonce"]
            uri = request.start.split(" ")[1]
            authorization = (name, digest_authorization(
                params, method=self.method, uri=uri, username=self.account.user,
                password=self.account.password, nc=self._nc))
        return response

    async def _transaction(self, request: SipMessage, timeout: float) -> SipMessage:
        """Send `request`, retransmitting (RFC 3261 timer E) until a final response."""
        loop = asyncio.get_running_loop()
        branch = header_param(request.header("via") or "", "branch") or ""
        future: asyncio.Future[SipMessage] = loop.create_future()
        self._pending[branch] = future
        deadline = loop.time() + timeout
        interval = T1
        try:
            while True:
                self._send(request, self.server)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise SipError(f"no final answer to {request.start} within {timeout} s")
                try:
                    return await asyncio.wait_for(asyncio.shield(future), min(interval, remaining))
                except asyncio.TimeoutError:
                    interval = min(interval * 2, T2)
        finally:
            self._pending.pop(branch, None)

    def _send(self, message: SipMessage, addr: tuple[str, int]) -> None:
        if self._socket is None or self._socket.transport is None:
            raise SipError("the socket is closed")
        if self.log:
            print(f">>> to {addr[0]}:{addr[1]}\n{message}")
        self.sent.append(message)
        self._socket.transport.sendto(message.encode(), addr)

    # -- incoming ----------------------------------------------------------------------------------
    def _on_message(self, message: SipMessage, addr: tuple[str, int]) -> None:
        if self.log:
            print(f"<<< from {addr[0]}:{addr[1]}\n{message}")
        self.received.append(message)
        if not message.is_request:
            branch = header_param(message.header("via") or "", "branch") or ""
            future = self._pending.get(branch)
            if future is not None and not future.done() and message.status >= 200:
                future.set_result(message)
        elif message.method == "ACK":
            return
        elif message.method == "OPTIONS":
            self._reply(message, addr, 200, "OK")
        elif not self._on_request(message, addr):
            self._reply(message, addr, 481, "Call/Transaction Does Not Exist")

    def _on_request(self, request: SipMessage, addr: tuple[str, int]) -> bool:
        """Handle (and answer) a request of ours; False leaves it to the default answer."""
        return False

    def _reply(self, request: SipMessage, addr: tuple[str, int], status: int, reason: str,
               extra: list[tuple[str, str]] | None = None) -> None:
        headers = [("Via", via) for via in request.all("via")]
        to = request.header("to") or ""
        if header_param(to, "tag") is None:
            to += f";tag={self.local_tag}"
        headers += [("From", request.header("from") or ""), ("To", to),
                    ("Call-ID", request.header("call-id") or ""), ("CSeq", request.header("cseq") or ""),
                    ("User-Agent", self.user_agent)]
        headers += extra or []
        self._send(SipMessage(f"SIP/2.0 {status} {reason}", headers), addr)


class Registration(_UserAgent):
    """The device registered at the PBX while the context is open (so its device state is
    NOT_INUSE rather than UNAVAILABLE), unregistered on exit."""

    method = "REGISTER"

    def __init__(self, account: Account, *, server: tuple[str, int], local: tuple[str, int],
                 expires: int = 120, user_agent: str = "vipbx-watcher/1.0", log: bool = False) -> None:
        super().__init__(account, server=server, local=local, user_agent=user_agent, log=log)
        self.expires = expires

    def _register(self, expires: int) -> SipMessage:
        host, port = self.local
        aor = f"<sip:{self.account.user}@{self.server_hostport}>"
        return self._build(f"sip:{self.server_hostport}", [
            ("From", f"{aor};tag={self.local_tag}"), ("To", aor),
            ("Contact", f"<sip:{self.account.user}@{host}:{port};transport=udp>"),
            ("Expires", str(expires)),
        ])

    async def __aenter__(self) -> Registration:
        await self._bind()
        try:
            response = await self._request(lambda: self._register(self.expires), 5.0)
            if not 200 <= response.status < 300:
                raise Refused(response)
        except BaseException:
            await self._unbind()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            with suppress(SipError):
                await self._request(lambda: self._register(0), 3.0)
        finally:
            await self._unbind()


class PresenceWatcher(_UserAgent):
    """One presence subscription of `account` to `target` (an extension) at `server`.

    `user_agent` matters: Asterisk adds the presence state and its message to the PIDF only for
    watchers whose User-Agent contains "digium" (any case)."""

    method = "SUBSCRIBE"

    def __init__(self, account: Account, target: str, *, server: tuple[str, int],
                 local: tuple[str, int], expires: int = 120,
                 user_agent: str = "vipbx-watcher/1.0", log: bool = False) -> None:
        super().__init__(account, server=server, local=local, user_agent=user_agent, log=log)
        self.expires = expires
        self.target_uri = f"sip:{target}@{self.server_hostport}"
        self.remote_target = self.target_uri  # the notifier's Contact, once known
        self.remote_tag: str | None = None
        self.response: SipMessage | None = None  # the final answer to the initial SUBSCRIBE
        self.notifies: list[Notify] = []  # every NOTIFY received, in order
        self._queue: asyncio.Queue[Notify] = asyncio.Queue()
        self._last_notify_cseq = -1

    # -- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> PresenceWatcher:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, timeout: float = 5.0) -> SipMessage:
        """Bind, SUBSCRIBE (authenticating when challenged); the final 2xx. Raises `Refused`
        for any other final answer."""
        await self._bind()
        response = await self._request(lambda: self._subscribe(self.expires), timeout)
        self.response = response
        if not 200 <= response.status < 300:
            raise Refused(response)
        if to_tag := header_param(response.header("to") or "", "tag"):
            self.remote_tag = to_tag
        if contact := response.header("contact"):
            self.remote_target = uri_of(contact)
        return response

    async def close(self, timeout: float = 3.0) -> None:
        """Unsubscribe (Expires: 0) and wait briefly for the final NOTIFY; then unbind."""
        try:
            if self._socket is not None and self.remote_tag is not None and not self.terminated:
                with suppress(SipError):
                    reply = await self._request(lambda: self._subscribe(0), timeout)
                    if 200 <= reply.status < 300:
                        await self.wait_for(lambda n: n.terminated, timeout, consume=False)
        finally:
            await self._unbind()

    @property
    def terminated(self) -> bool:
        return any(n.terminated for n in self.notifies)

    def _subscribe(self, expires: int) -> SipMessage:
        host, port = self.local
        in_dialog = self.remote_tag is not None
        return self._build(self.remote_target if in_dialog else self.target_uri, [
            ("From", f"<sip:{self.account.user}@{self.server_hostport}>;tag={self.local_tag}"),
            ("To", f"<{self.target_uri}>" + (f";tag={self.remote_tag}" if in_dialog else "")),
            ("Contact", f"<sip:{self.account.user}@{host}:{port};transport=udp>"),
            ("Event", "presence"),
            ("Accept", "application/pidf+xml"),
            ("Expires", str(expires)),
            ("Allow", "NOTIFY"),
        ])

    # -- NOTIFYs -----------------------------------------------------------------------------------
    async def next_notify(self, timeout: float = 5.0) -> Notify:
        """The next NOTIFY not yet taken (waiting up to `timeout` seconds for it)."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise SipError(f"no NOTIFY within {timeout} s") from None

    async def wait_for(self, check: Callable[[Notify], bool], timeout: float = 5.0, *,
                       consume: bool = True) -> Notify:
        """The first NOTIFY not yet taken (waiting for new ones) for which `check` holds; with
        `consume`, it and the ones before it are taken. A SipError on timeout shows the last
        bodies."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if consume:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    notify = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if check(notify):
                    return notify
        else:
            first = len(self.notifies) - self._queue.qsize()
            while True:
                found = next((n for n in self.notifies[first:] if check(n)), None)
                if found is not None:
                    return found
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(0.05)
        seen = "\n---\n".join(n.body for n in self.notifies[-3:]) or "(none)"
        raise SipError(f"no matching NOTIFY within {timeout} s; the last bodies:\n{seen}")

    async def quiet(self, seconds: float) -> list[Notify]:
        """The NOTIFYs that arrive within `seconds` (taken)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        got: list[Notify] = []
        while (remaining := deadline - loop.time()) > 0:
            try:
                got.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return got

    def _on_request(self, request: SipMessage, addr: tuple[str, int]) -> bool:
        if request.header("call-id") != self.call_id:
            return False
        if request.method != "NOTIFY":
            self._reply(request, addr, 405, "Method Not Allowed", [("Allow", "NOTIFY")])
            return True
        if self.remote_tag is None and (from_tag := header_param(request.header("from") or "", "tag")):
            self.remote_tag = from_tag  # the NOTIFY overtook the 200 OK
        if contact := request.header("contact"):
            self.remote_target = uri_of(contact)
        self._reply(request, addr, 200, "OK")
        number = request.cseq[0]
        if number <= self._last_notify_cseq:
            return True  # a retransmission: answered again, not recorded twice
        self._last_notify_cseq = number
        notify = Notify(number, request.header("event") or "", request.header("subscription-state") or "",
                        request.header("content-type") or "", request.body, request)
        self.notifies.append(notify)
        self._queue.put_nowait(notify)
        return True
