"""How the IVRs reach the call state for a login: the PIN check with its lockout and the "always
ask PIN" setting. The service's calls hit the database, so they go through `AsyncCallState` (the shared thread
pool), never on the event loop; anything with these three coroutines will do (tests use fakes)."""

from __future__ import annotations

from typing import Protocol

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


def pin_gate(state: CallStateService) -> PinGate:
    return AsyncCallState(state)
