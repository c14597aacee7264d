"""How the IVRs reach the call state for a login: the PIN check with its lockout and the "always
ask PIN" setting. The service's calls hit the database, so they run in the shared thread pool,
never on the event loop. `pin_gate` is the one place to change when an async call-state client
takes over: anything with these three coroutines will do."""

from __future__ import annotations

from typing import Protocol

from base.offload import run_blocking
from callstate import CallStateService, PinCheck, PinStatus, VoicemailSettings


class PinGate(Protocol):
    async def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings: ...

    async def pin_status(self, tenant_id: str, user_id: str) -> PinStatus: ...

    async def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str, actor: str) -> PinCheck: ...


class OffloadedPins:
    """The blocking call-state service, one pool thread per call."""

    def __init__(self, state: CallStateService) -> None:
        self.state = state

    async def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings:
        return await run_blocking(self.state.voicemail_settings, tenant_id, user_id)

    async def pin_status(self, tenant_id: str, user_id: str) -> PinStatus:
        return await run_blocking(self.state.pin_status, tenant_id, user_id)

    async def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str, actor: str) -> PinCheck:
        return await run_blocking(self.state.check_pin, tenant_id, user_id, pin, source=source, actor=actor)


def pin_gate(state: CallStateService) -> PinGate:
    return OffloadedPins(state)
