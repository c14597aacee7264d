"""What the feature codes do, over the call-state service: who is calling, and the change.

The call-state service is synchronous (one short transaction); its async view runs it in the
shared bounded thread pool, so that a database waiting on a lock never stalls the other calls of the event loop.
"""

from __future__ import annotations

from ari_app.caller import Caller
from ari_app.origin import Origin
from base.model import Config
from callstate import AsyncCallState, CallStateService, Routing, check_target
from callstate.routing import IMMEDIATE, NONE

SOURCE = "code"


class FeatureService:
    def __init__(self, config: Config, state: CallStateService) -> None:
        self.config = config
        self.state = AsyncCallState(state)  # off the event loop

    def caller(self, origin: Origin, caller_number: str, device: str) -> Caller | None:
        """Who dialled the code: the user of the calling device (its endpoint's VIPBX_TENANT /
        VIPBX_USER), or on a trusted trunk (a user's mobile through the mobile core) the owner of
        the caller number. None for anybody else: an untrusted trunk's caller ID proves nothing."""
        if origin.device is not None:
            return Caller(origin.device, device or origin.device.user.number)
        found = origin.caller(self.config, caller_number)
        return Caller(found, found.user.number) if found is not None else None

    async def set_immediate(self, caller: Caller, dialled: str) -> Routing:
        """987 + number; TargetRefused (with its reason) when the number may not be used."""
        return await self.state.set_forward(caller.tenant.id, caller.user.id, IMMEDIATE,
                                     dialled, actor=caller.actor, source=SOURCE)

    async def clear_immediate(self, caller: Caller) -> Routing:
        return await self.state.set_forward(caller.tenant.id, caller.user.id, IMMEDIATE,
                                     NONE, actor=caller.actor, source=SOURCE)

    async def set_call_waiting(self, caller: Caller, enabled: bool) -> Routing:
        return await self.state.set_call_waiting(caller.tenant.id, caller.user.id, enabled,
                                     actor=caller.actor, source=SOURCE)

    async def routing(self, caller: Caller) -> Routing:
        return await self.state.routing(caller.tenant.id, caller.user.id)

    def transfer_target(self, tenant_id: str, dialled: str) -> str:
        """The E.164 number a transfer may go to, or TargetRefused / LookupError."""
        tenant = next((t for t in self.config.tenants if t.id == tenant_id), None)
        if tenant is None:
            raise LookupError(f"no tenant {tenant_id!r}")
        return check_target(self.config, tenant, None, dialled)
