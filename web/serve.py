"""The home page's listener: uvicorn in the process of `vipbx serve`, as one of its jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from .app import asgi_app
from .deps import WebDeps

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: `vipbx serve` owns SIGINT/SIGTERM and cancels us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def web_server(deps: WebDeps) -> uvicorn.Server:
    listener = deps.settings.listener
    config = uvicorn.Config(
        asgi_app(deps), host=listener.bind, port=listener.port, log_config=None, access_log=False,
        proxy_headers=False,  # PeerFilter reads X-Forwarded-For, from a loopback proxy only
        server_header=False, lifespan="off", timeout_graceful_shutdown=5,
        limit_concurrency=1000, h11_max_incomplete_event_size=64 * 1024)
    return _Server(config)


async def run_web(deps: WebDeps) -> None:
    """Until cancelled; the listener is closed on the way out."""
    server = web_server(deps)
    listener = deps.settings.listener
    family = socket.AF_INET6 if ":" in listener.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listener.bind, listener.port))
    log.info("home page on http://%s:%d/", listener.bind, listener.port)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # A graceful stop: open requests finish (bounded by timeout_graceful_shutdown).
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        raise
    finally:
        sock.close()
