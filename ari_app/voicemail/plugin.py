"""Wiring of the voicemail plugin: its Stasis entries and its background work."""

from __future__ import annotations

import asyncio
import logging

from ari_app.plugin_api import Plugin, PluginDeps
from ari_app.voice import Voice
from base.model import TenantUser

from .access import Access
from .deposit import Deposit
from .services import VoicemailService

log = logging.getLogger(__name__)

ORPHAN_SCAN_SECONDS = 60.0


def load(deps: PluginDeps) -> Plugin:
    service = VoicemailService(deps.config, deps.store, deps.callstate, deps.notifier, deps.ami, deps.recordings_dir,
                               locks=deps.fallback_locks)
    voice = Voice(deps.sounds_dir, deps.config.platform.default_language)

    async def recover_orphans() -> None:
        # At start (a crash may have left recordings behind), then now and then.
        while True:
            try:
                await service.recover_orphans()
            except Exception:
                log.exception("orphan recovery failed")
            await asyncio.sleep(ORPHAN_SCAN_SECONDS)

    presence = deps.presence

    async def activity_sentence(mailbox: TenantUser, lang: str) -> list[str] | None:
        # The greeting's "… is on vacation until Friday 12 August", in the spoken time zone.
        return await presence.greeting_sentence(mailbox.tenant, mailbox.user, lang, voice.now())

    deposit = Deposit(service, voice, activity_sentence)
    return Plugin(
        handlers={"deposit": deposit, "access": Access(service, voice)},
        resumers={"deposit": deposit.resume},
        background=[recover_orphans],
        # Each connect to Asterisk: fold the fallback's wrong PINs in, rewrite its locks.
        on_connect=[deps.fallback_locks.sync] if deps.fallback_locks is not None else [],
    )
