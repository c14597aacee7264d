"""Sending a caller on to a number (a transfer, "press 1"): `vipbx-connect` reaches the
platform's own numbers first, then the outside through the outbound check of the dialplan, which
applies the policy and the fraud throttle of the tenant named here."""

from __future__ import annotations

from ari_app.session import CallSession
from base.outbound import OUT_TENANT_VAR, OUT_USER_VAR

CONNECT_CONTEXT = "vipbx-connect"


async def connect(call: CallSession, number: str, tenant_id: str, user_id: str = "") -> None:
    """Continue `call` in the dialplan to `number` (E.164) on behalf of the tenant's user."""
    await call.set_var(OUT_TENANT_VAR, tenant_id)
    await call.set_var(OUT_USER_VAR, user_id)
    await call.continue_in_dialplan(CONNECT_CONTEXT, number, 1)
