"""The call-handling service: the Stasis app and the FastAGI server in one asyncio process.

Asterisk may restart under it at any time: the ARI client reconnects by itself (and the app
re-syncs), and FastAGI is a listener Asterisk connects to per call, so it needs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agi.server import start_agi_server
from base.model import Config
from prompts.media import PromptLibrary

from .app import Handler, StasisApp
from .client import AriClient

log = logging.getLogger(__name__)
RECORD_NOTICE = "record-notice"  # the prompt both parties of a recorded call hear


class Service:
    """`client` and `app` are exposed so callers can wait for readiness (`client.wait_connected`)."""

    def __init__(
        self,
        config: Config,
        ari_url: str,
        ari_user: str,
        ari_password: str,
        *,
        agi_key: str,
        handlers: Mapping[str, Handler] | None = None,
        background: Sequence[Callable[[], Awaitable[None]]] = (),
        state: Any = None,
        on_connect: Sequence[Callable[[], Awaitable[None]]] = (),
        sounds_dir: Path | None = None,
        resumers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.config = config
        # The prompt catalogue: FastAGI names the announcement of a recorded call from it.
        library = PromptLibrary(sounds_dir, config.platform.default_language) if sounds_dir else None
        self.notice_file = (lambda lang: library.path(lang, RECORD_NOTICE)) if library else None
        self.agi_key = agi_key  # what the dialplan's AGI() URLs carry (secret `agi`)
        self.state = state  # callstate.CallStateService for the FastAGI router; None: defaults only
        self.background = list(background)
        self.client = AriClient(ari_url, ari_user, ari_password, config.platform.ari_app, metered=True)
        self.app = StasisApp(self.client, handlers or {}, resumers=resumers)
        for handler in on_connect:
            self.client.on_connect(handler)

    async def run(self) -> None:
        """Until cancelled. FastAGI listens on `config.platform.agi`."""
        platform = self.config.platform
        agi_server, _ = await start_agi_server(self.config, platform.agi.bind, platform.agi.port, self.state,
                                             key=self.agi_key, notice_file=self.notice_file)
        log.info("serving ARI app %s at %s; entries: %s", platform.ari_app, self.client.base_url,
                 sorted(self.app.handlers) or "none")
        # Plugins' own loops (orphan recovery, notification retries): a crash is logged, not fatal.
        tasks = [asyncio.create_task(_logged(job), name=getattr(job, "__name__", "job")) for job in self.background]
        try:
            await self.app.run()
        finally:
            for task in tasks:
                task.cancel()
            # Ended before the caller closes what they use (the call-state database); bounded, in
            # case one will not end.
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            # Hand live calls back to the dialplan first, then let go of ARI and the listener.
            await self.app.shutdown()
            await self.client.close()
            agi_server.close()
            await agi_server.wait_closed()
            log.info("stopped")


async def _logged(job: Callable[[], Awaitable[None]]) -> None:
    try:
        await job()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background job %s stopped", getattr(job, "__name__", job))


async def serve(
    config: Config,
    ari_url: str,
    ari_user: str,
    ari_password: str,
    *,
    agi_key: str,
    handlers: Mapping[str, Handler] | None = None,
    background: Sequence[Callable[[], Awaitable[None]]] = (),
    state: Any = None,
    on_connect: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Run the service until cancelled. `ari_url` like "http://127.0.0.1:8088/ari"; entries
    without a handler go back to the dialplan's fallback."""
    await Service(config, ari_url, ari_user, ari_password, agi_key=agi_key, handlers=handlers, background=background,
                  state=state, on_connect=on_connect).run()
