"""The feature-code handlers: `Stasis(app,forward,DIGITS)` (987) and
`Stasis(app,callwaiting,on|off|status)` (*43#, #43#, *#43#). Each answers with a spoken result
in the caller's language: what is now set, or the refusal and its reason."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from ari_app.origin import Origin
from ari_app.session import CallSession
from ari_app.voice import Voice
from callstate import SettingsError, StorageError, TargetRefused
from callstate.targets import INVALID_NUMBER
from prompts import speech

from .services import Caller, FeatureService

log = logging.getLogger(__name__)

REFUSED = "fc-refused"  # generic refusal: a rule without a prompt of its own
TECHNICAL = "fc-refused-error"
NOT_ALLOWED = "fc-refused-not-allowed"


class FeatureCode(ABC):
    """What every code shares: find the caller, answer, speak, hang up."""

    def __init__(self, service: FeatureService, voice: Voice) -> None:
        self.service = service
        self.voice = voice

    async def __call__(self, call: CallSession) -> None:
        origin = Origin.of(self.service.config, call.vars)
        caller = self.service.caller(origin, call.caller_number, call.channel.get("name", ""))
        await call.answer()
        if caller is None:
            # Only a platform device, or a user's number on a trusted trunk: refuse anything else.
            trunk = origin.trunk.name if origin.trunk is not None else "none"
            log.warning("%r: feature code refused: no user (trunk %s, caller %r)", call, trunk,
                        call.caller_number)
            await self._say(call, self.service.config.platform.default_language, [NOT_ALLOWED])
            return
        try:
            names = await self.run(call, caller)
        except TargetRefused as exc:
            log.info("%r: %s/%s refused: %s", call, caller.tenant.id, caller.user.id, exc)
            names = [f"fc-refused-{exc.reason}"]
        except StorageError:
            log.exception("%r: call state not available", call)
            names = [TECHNICAL]
        except SettingsError as exc:
            log.info("%r: %s/%s refused: %s", call, caller.tenant.id, caller.user.id, exc)
            names = [REFUSED]
        await self._say(call, caller.user.language, names)

    @abstractmethod
    async def run(self, call: CallSession, caller: Caller) -> list[str]:
        """Does what the code asks; the prompts that say the result."""

    async def _say(self, call: CallSession, lang: str, names: list[str]) -> None:
        await call.play(self.voice.media(lang, names), barge_in=False)
        await call.hangup()


class ForwardCode(FeatureCode):
    """987 + number: immediate forward, read back; 987 alone: removed."""

    async def run(self, call: CallSession, caller: Caller) -> list[str]:
        dialled = call.args[0] if call.args else ""
        if not dialled:
            await self.service.clear_immediate(caller)
            return ["fc-forward-removed"]
        if not dialled.strip().lstrip("+").isdigit():
            # The service also takes the words "none" and "voicemail" (and blank for none): a
            # code only ever sets a number, so anything else is refused, never a silent change.
            raise TargetRefused(INVALID_NUMBER, f"{dialled!r} is not a phone number")
        routing = await self.service.set_immediate(caller, dialled)
        return speech.forward_set(caller.user.language, routing.immediate)


class CallWaitingCode(FeatureCode):
    async def run(self, call: CallSession, caller: Caller) -> list[str]:
        what = call.args[0] if call.args else ""
        if what == "on":
            await self.service.set_call_waiting(caller, True)
            return ["cw-on"]
        if what == "off":
            await self.service.set_call_waiting(caller, False)
            return ["cw-off"]
        routing = await self.service.routing(caller)
        return ["cw-is-on" if routing.call_waiting else "cw-is-off"]
