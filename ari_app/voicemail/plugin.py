"""Wiring of the voicemail plugin: its Stasis entries and its background work."""

from __future__ import annotations

import asyncio
import logging

from ari_app.plugin_api import Plugin, PluginDeps

from .access import Access
from .deposit import Deposit
from .services import VoicemailService
from ari_app.voice import Voice

log = logging.getLogger(__name__)

ORPHAN_SCAN_SECONDS = 60.0


def load(deps: PluginDeps) -> Plugin:
    service = VoicemailService(deps.config, deps.store, deps.callstate, deps.notifier, deps.ami, deps.recordings_dir)
    voice = Voice(deps.sounds_dir, deps.config.platform.default_language)

    async def recover_orphans() -> None:
        # At start (a crash may have left recordings behind), then now and then.
        while True:
            try:
                await service.recover_orphans()
            except Exception:
                log.exception("orphan recovery failed")
            await asyncio.sleep(ORPHAN_SCAN_SECONDS)

    return Plugin(
        handlers={"deposit": Deposit(service, voice), "access": Access(service, voice)},
        background=[recover_orphans],
    )
