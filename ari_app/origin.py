"""Where a call came from, and whom its caller ID may name.

A platform device's endpoint sets VIPBX_TENANT / VIPBX_USER; a trunk's endpoint sets VIPBX_TRUNK
(pjsip.conf). Nothing a caller sends can set these variables. Only a trusted trunk's caller ID
identifies a user: from an untrusted trunk, or from a channel of no known origin, anybody can
write any number there. A national number is read in the country of the trunk the call came in
on, or of the calling device's tenant; with neither, only international forms name anyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from base.model import Config, TenantUser, Trunk

TENANT_VAR, USER_VAR, TRUNK_VAR = "VIPBX_TENANT", "VIPBX_USER", "VIPBX_TRUNK"


@dataclass(frozen=True)
class Origin:
    device: TenantUser | None = None  # the user whose platform device is calling
    trunk: Trunk | None = None  # the trunk the call came in on

    @classmethod
    def of(cls, config: Config, variables: Mapping[str, str]) -> Origin:
        tenant_id, user_id = variables.get(TENANT_VAR), variables.get(USER_VAR)
        if tenant_id and user_id:
            return cls(device=config.find_user(tenant_id, user_id))
        name = variables.get(TRUNK_VAR)
        return cls(trunk=config.platform.trunk(name) if name else None)

    @property
    def country_code(self) -> str | None:
        """The country national numbers of this call are read in; None when unknown."""
        if self.device is not None:
            return self.device.tenant.country_code
        return self.trunk.country_code if self.trunk is not None else None

    @property
    def trusted(self) -> bool:
        """The caller ID names the caller: a trusted trunk's (a device is known by itself)."""
        return self.trunk is not None and self.trunk.trusted

    def find(self, config: Config, number: str) -> TenantUser | None:
        """The user a number (typed or sent) belongs to, national forms read in this call's country."""
        return config.find_caller(number, self.country_code)

    def caller(self, config: Config, caller_number: str) -> TenantUser | None:
        """The user this call comes from without a PIN: the calling device's own, or the owner of
        the caller number on a trusted trunk; None for anybody else."""
        if self.device is not None:
            return self.device
        if self.trusted and caller_number:
            return self.find(config, caller_number)
        return None
