"""The user a call belongs to, once identified (by device, caller number or PIN), as every IVR and
feature code sees them."""

from __future__ import annotations

from dataclasses import dataclass

from base.model import Tenant, TenantUser, User


@dataclass(frozen=True)
class Caller:
    who: TenantUser
    actor: str  # who the audit trail names for the caller's changes: the calling number or device
    by_pin: bool = False  # False: known by the own device or number

    @property
    def tenant(self) -> Tenant:
        return self.who.tenant

    @property
    def user(self) -> User:
        return self.who.user
