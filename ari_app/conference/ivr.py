"""The conference number: `Stasis(app,conference)`.

The caller types a room number and the room's PIN (up to three tries per call); an unknown room, a
closed one (no PIN set yet), a locked one and a wrong PIN get the same words after the same pause,
so probing tells nothing. The right PIN sends the caller on to `vipbx-conference`, where the
dialplan runs ConfBridge on the room's bridge.
"""

from __future__ import annotations

import asyncio
import logging

from ari_app.ivr import Ivr
from ari_app.session import CallSession
from ari_app.voice import Voice
from base.model import MAX_PIN_DIGITS
from callstate import SettingsError, StorageError

from .services import ConferenceService

log = logging.getLogger(__name__)

TRIES = 3
ROOM_DIGITS = 15
VERDICT_SECONDS = 0.5  # no verdict sooner: a known room's database answer sounds like none
ROOM_CONTEXT = "vipbx-conference"
BRIDGE_VARIABLE = "VIPBX_CONF_BRIDGE"


class ConferenceIvr:
    def __init__(self, service: ConferenceService, voice: Voice, verdict_seconds: float = VERDICT_SECONDS) -> None:
        self.service = service
        self.voice = voice
        self.verdict_seconds = verdict_seconds

    async def __call__(self, call: CallSession) -> None:
        await call.answer()
        ivr = Ivr(call, self.voice, self.service.config.platform.default_language)
        await ivr.say("conf-welcome")
        try:
            for _ in range(TRIES):
                bridge = await self._try(ivr)
                if bridge is not None:
                    await ivr.announce("conf-joining")
                    await call.set_var(BRIDGE_VARIABLE, bridge)
                    await call.continue_in_dialplan(ROOM_CONTEXT, "enter", 1)
                    return
                await ivr.say("conf-refused")
        except StorageError:
            log.exception("%r: call state not available", call)
            await ivr.announce("fc-refused-error")
        await ivr.goodbye()

    async def _try(self, ivr: Ivr) -> str | None:
        room = await ivr.ask("conf-enter-room", max_digits=ROOM_DIGITS)
        pin = await ivr.ask("conf-enter-pin", max_digits=MAX_PIN_DIGITS)
        floor = asyncio.get_running_loop().time() + self.verdict_seconds
        try:
            bridge = await self.service.enter(room, pin, actor=ivr.call.caller_number or "caller")
        except SettingsError as exc:
            log.info("%r: conference refused: %s", ivr.call, exc)
            bridge = None
        await asyncio.sleep(max(0.0, floor - asyncio.get_running_loop().time()))
        log.info("%r: room %s %s", ivr.call, room or "-", "opened" if bridge else "refused")
        return bridge
