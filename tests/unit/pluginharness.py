"""Driving one ARI plugin's Stasis entries against the fake ARI: a connected client, a StasisApp
serving the plugin's handlers over a real call-state service, and what was played."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
import pytest

from ari_app import client as client_module
from ari_app.app import StasisApp
from ari_app.client import AriClient
from ari_app.plugin_api import Plugin, PluginDeps
from ari_app.presence.services import PresenceService
from ari_app.testing import FakeAri
from base.model import Config
from callstate import CallStateService
from vmstore import VoicemailStore

H = TypeVar("H", bound="PluginHarness")


class PluginHarness:
    """Every playback finishes at once (subclasses may add keys pressed during it)."""

    def __init__(self, fake: FakeAri, client: AriClient, state: CallStateService, sounds: Path,
                 plugin: ModuleType, config: Config) -> None:
        self.fake = fake
        self.client = client
        self.state = state
        self.sounds = sounds
        self.plugin: Plugin = plugin.load(PluginDeps(
            config=config, store=VoicemailStore(sounds.parent / "spool"), callstate=state,
            presence=PresenceService(config, state, None), notifier=None, ami=None,
            recordings_dir=sounds.parent / "recording", sounds_dir=sounds))
        self.app = StasisApp(client, self.plugin.handlers)
        self.task: asyncio.Task[None] | None = None
        fake.route("POST", r"/channels/([^/]+)/play/([^/]+)", self._play)

    async def start(self) -> None:
        self.task = asyncio.create_task(self.app.run())
        await self.client.wait_connected(5)
        await self.fake.wait_connections(1)

    async def stop(self) -> None:
        await self.app.shutdown()
        await self.client.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 2)

    def _play(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        channel_id, playback_id = match.groups()
        asyncio.get_running_loop().create_task(self.playing(channel_id, playback_id, request))
        return httpx.Response(201, json={"id": playback_id, "target_uri": f"channel:{channel_id}",
                                         "state": "queued", "media_uri": request.url.params["media"]})

    async def playing(self, channel_id: str, playback_id: str, request: httpx.Request) -> None:
        """What happens while a prompt plays: here, it just ends."""
        await self.fake.send({
            "type": "PlaybackFinished",
            "playback": {"id": playback_id, "target_uri": f"channel:{channel_id}", "state": "done"}})

    async def until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout)

    def calls(self, method: str, pattern: str) -> list[httpx.Request]:
        return self.fake.calls(method, pattern)

    def played(self, channel_id: str = "c1") -> list[tuple[str, str]]:
        """Every prompt played to the channel, as (language, name)."""
        out = []
        for request in self.calls("POST", rf"/channels/{channel_id}/play/.+"):
            for uri in request.url.params["media"].split(","):
                assert uri.startswith(f"sound:{self.sounds}/"), uri
                lang, name = uri.removeprefix(f"sound:{self.sounds}/").split("/")
                out.append((lang, name))
        return out


@asynccontextmanager
async def running(make: Callable[[FakeAri, AriClient], H], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[H]:
    """A harness made by `make` on a started fake ARI, started, and stopped afterwards."""
    monkeypatch.setattr(client_module, "BACKOFF_FIRST", 0.01)
    fake = FakeAri()
    await fake.start()
    client = AriClient(fake.base_url, fake.user, fake.password, fake.app, transport=fake.transport)
    harness = make(fake, client)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
        await fake.stop()
