"""A small typed asyncio client for the Asterisk REST Interface (ARI).

REST calls go over httpx, events arrive over one websocket (`/ari/events`). The event loop
reconnects by itself, so Asterisk may restart under us; `on_connect` handlers run after every
(re)connect so the application can re-sync what it missed while the socket was down.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

from base import metrics

from .lanes import Event, EventLanes

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 200  # simultaneous ARI requests; see templates/http.conf.j2
KEEPALIVE_CONNECTIONS = 50

# websockets logs every handshake header (Authorization included) at DEBUG. Its own logger is
# pinned to INFO so that turning on debug logging never prints the ARI password.
_ws_log = logging.getLogger(__name__ + ".websocket")
_ws_log.setLevel(logging.INFO)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
ConnectHandler = Callable[[], Awaitable[None]]

BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
# A connection that lived this long was healthy: the next drop starts the backoff afresh.
STABLE_AFTER = 5.0
# Event handling bounds (lanes.py): handler runs at once per channel, events waiting per channel,
# events held in all. Far above what a call does; a flood meets them.
CHANNEL_RUNS = 32
CHANNEL_QUEUE = 256
EVENTS_HELD = 4096


class AriError(Exception):
    """ARI answered a request with 4xx/5xx."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:200]}")
        self.method = method
        self.path = path
        self.status = status
        self.body = body


def encode_params(params: Mapping[str, Any]) -> dict[str, str]:
    """ARI query values: booleans as true/false, lists comma-joined, None left out."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


class AriClient:
    def __init__(
        self,
        base_url: str,
        user: str,
        password: str,
        app: str,
        *,
        subscribe_all: bool = False,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: httpx.MockTransport
        metered: bool = False,  # the service's own client: its connection is in the metrics
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.metered = metered
        self._ever_connected = False
        self.app = app
        self.subscribe_all = subscribe_all
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._ws_headers = {"Authorization": f"Basic {token}"}
        # ARI is a local control channel: never route it through an environment proxy.
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            auth=httpx.BasicAuth(user, password),
            timeout=timeout,
            trust_env=False,
            transport=transport,
            # Bounded below the PBX's http.conf sessionlimit: with hundreds of calls, requests
            # wait for a pooled connection instead of Asterisk dropping the session. Fewer are kept
            # idle: httpcore checks every pooled connection's socket on each request.
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=KEEPALIVE_CONNECTIONS),
        )
        self._event_handlers: list[EventHandler] = []
        self._connect_handlers: list[ConnectHandler] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Event handling is bounded: see lanes.py.
        self._lanes = EventLanes(self._start_handlers, runs=CHANNEL_RUNS, queue=CHANNEL_QUEUE,
                                 total=EVENTS_HELD)
        self._connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._closing = False
        self._closed = asyncio.Event()  # wakes run() out of its backoff sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- REST -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """One ARI call; the decoded JSON answer, or None for an empty one (204)."""
        response = await self._http.request(
            method,
            path.lstrip("/"),
            params=encode_params(params or {}),
            json=json,
        )
        if response.status_code >= 400:
            raise AriError(method, path, response.status_code, response.text)
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content  # e.g. a stored recording's audio

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, **params: Any) -> Any:
        return await self.request("POST", path, params=params)

    async def delete(self, path: str, **params: Any) -> Any:
        return await self.request("DELETE", path, params=params)

    # --- events -----------------------------------------------------------------------

    def on_event(self, handler: EventHandler) -> None:
        self._event_handlers.append(handler)

    def on_connect(self, handler: ConnectHandler) -> None:
        self._connect_handlers.append(handler)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    def events_url(self) -> str:
        url = httpx.URL(self.base_url + "/events")
        scheme = "wss" if url.scheme == "https" else "ws"
        params = {"app": self.app, "subscribeAll": "true" if self.subscribe_all else "false"}
        return str(url.copy_with(scheme=scheme).copy_merge_params(params))

    async def run(self) -> None:
        """Receive events until `close()`, reconnecting with capped exponential backoff."""
        delay = BACKOFF_FIRST
        url = self.events_url()
        while not self._closing:
            started = time.monotonic()
            try:
                async with connect(
                    url,
                    additional_headers=self._ws_headers,
                    proxy=None,
                    open_timeout=10,
                    max_size=16 * 2**20,
                    logger=_ws_log,
                ) as ws:
                    if self._closing:
                        break
                    self._ws = ws
                    self._connected.set()
                    if self.metered:
                        if self._ever_connected:
                            metrics.ari_reconnects.inc()
                        metrics.ari_connected.set(1)
                    self._ever_connected = True
                    log.info("ARI events connected: %s", url)
                    for on_connect in self._connect_handlers:
                        self._spawn(on_connect())
                    async for message in ws:
                        await self._dispatch(message)
                if not self._closing:
                    log.warning("ARI events: Asterisk closed the connection")
            except InvalidURI:
                raise
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
                if not self._closing:
                    log.warning("ARI events: %s: %s", type(exc).__name__, exc)
            finally:
                self._ws = None
                self._connected.clear()
                if self.metered:
                    metrics.ari_connected.set(0)
            if self._closing:
                break
            if time.monotonic() - started > STABLE_AFTER:
                delay = BACKOFF_FIRST
            log.info("ARI events: reconnecting in %.1f s", delay)
            await self._pause(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _pause(self, delay: float) -> None:
        """Sleep between attempts; `close()` cuts it short."""
        try:  # asyncio.timeout: wait_for (3.11) may swallow a cancel as the wait ends
            async with asyncio.timeout(delay):
                await self._closed.wait()
        except TimeoutError:
            pass

    async def _dispatch(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            log.warning("ARI events: not JSON, ignored (%d bytes)", len(message))
            return
        if not isinstance(event, dict):
            return
        await self._lanes.admit(event)
        # Messages already buffered are read without a pause: let the handlers just started run
        # before the next one, so a lane fills only when its handlers really wait.
        await asyncio.sleep(0)

    def _start_handlers(self, event: Event, done: Callable[[], None]) -> None:
        # One task per handler and event: a slow handler never holds up the socket. Tasks start
        # in creation order, so a handler that routes before its first await sees events in order.
        left = len(self._event_handlers)
        if not left:
            done()
            return

        def one_done(_: asyncio.Task[None]) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                done()

        for handler in self._event_handlers:
            self._spawn(handler(event)).add_done_callback(one_done)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("ARI handler failed", exc_info=exc)

    async def close(self) -> None:
        self._closing = True
        self._closed.set()
        if self._ws is not None:
            await self._ws.close()
        self._lanes.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()
