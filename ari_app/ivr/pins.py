"""How the IVRs reach the call state for a login: the PIN check with its lockout and the "always
ask PIN" setting. The service's calls hit the database, so they go through `AsyncCallState` (the shared thread
pool), never on the event loop; anything with these three coroutines will do (tests use fakes).
A lock a check causes is also mirrored for the native fallback (`ari_app.pinlocks`)."""

from __future__ import annotations

from typing import Protocol

from ari_app.pinlocks import FallbackLocks
from callstate import (
    AsyncCallState,
    CallStateService,
    PinCheck,
    PinStatus,
    VoicemailSettings,
)


class PinGate(Protocol):
    async def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings: ...

    async def pin_status(self, tenant_id: str, user_id: str) -> PinStatus: ...

    async def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str, actor: str) -> PinCheck: ...


class MirroredPins:
    """The call state's PIN gate; each lock it reports is handed to the fallback's mirror."""

    def __init__(self, state: AsyncCallState, locks: FallbackLocks) -> None:
        self._state = state
        self._locks = locks

    async def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings:
        return await self._state.voicemail_settings(tenant_id, user_id)

    async def pin_status(self, tenant_id: str, user_id: str) -> PinStatus:
        return await self._state.pin_status(tenant_id, user_id)

    async def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str, actor: str) -> PinCheck:
        check = await self._state.check_pin(tenant_id, user_id, pin, source=source, actor=actor)
        if check.locked:
            self._locks.locked(tenant_id, user_id, check.status)
        return check


def pin_gate(state: CallStateService | AsyncCallState, locks: FallbackLocks | None = None) -> PinGate:
    gate = state if isinstance(state, AsyncCallState) else AsyncCallState(state)
    return gate if locks is None else MirroredPins(gate, locks)
