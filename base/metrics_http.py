"""The HTTP listener Prometheus scrapes: /metrics from base.metrics.REGISTRY, in a thread of its
own so a scrape never waits for the event loop that serves calls (nor the reverse).

prometheus_client's own server has no address filter; this one answers loopback and the
listener's `permit` networks only, like FastAGI: anyone else is dropped before a thread is started
for the connection (and gets 403 should a request reach the application anyway).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from .metrics import REGISTRY
from .model import Listener

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    listener: Listener  # set by MetricsServer.start

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # Before a thread is started for it: an address that may not scrape costs nothing.
        return permitted(str(client_address[0]), self.listener)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    timeout = 10  # seconds a connection may idle: a slow or stuck client cannot pile up threads

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not worth a log line


def permitted(address: str, listener: Listener) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return True
    return listener.allow_remote and any(ip in ipaddress.ip_network(net, strict=False) for net in listener.permit)


def filtered(app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], listener: Listener):  # type: ignore[no-untyped-def]
    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not permitted(str(environ.get("REMOTE_ADDR", "")), listener):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"not a permitted address\n"]
        return app(environ, start_response)

    return guarded


class MetricsServer:
    """`start()` binds (raising OSError when it cannot), `stop()` ends the thread."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        bind = self.listener.bind
        server_class = _Server6 if ":" in bind else _Server
        app = filtered(make_wsgi_app(REGISTRY), self.listener)
        self._server = make_server(bind, self.listener.port, app, server_class, handler_class=_Quiet)
        self._server.listener = self.listener
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", bind if ":" not in bind else f"[{bind}]", self.listener.port)

    @property
    def port(self) -> int:
        """The bound port (the listener's, or the one the system chose for port 0)."""
        assert self._server is not None
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
