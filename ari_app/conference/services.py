"""Who owns a conference room, its bridge's name, and whether a PIN opens it.

A user's room number is the digits of their own number without the `+` (unique on the platform,
as the number is); the room's bridge is `TENANT-ROOM`. The PIN and its lockout are the call-state
service's (`callstate.conference_state`), the one writer the home page uses too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from base.model import Config, TenantUser
from base.offload import run_blocking
from callstate import CallStateService

ROOM = re.compile(r"[1-9][0-9]{6,14}")
SOURCE = "ivr"


def room_number(who: TenantUser) -> str:
    return who.user.number.removeprefix("+")


def bridge_name(who: TenantUser) -> str:
    """The ConfBridge conference of the user's room (tenant ids and digits: nothing to quote)."""
    return f"{who.tenant.id}-{room_number(who)}"


def room_owner(config: Config, room: str) -> TenantUser | None:
    """The user whose room this is; None for digits that are no user's own number (a tenant's
    extra number opens no room)."""
    if not ROOM.fullmatch(room):
        return None
    found = config.find_number("+" + room)
    return found if found is not None and found.user.number == "+" + room else None


class ConferenceService:
    def __init__(self, state: CallStateService, config: Callable[[], Config] | None = None) -> None:
        self.state = state
        self._config = config or (lambda: state.config)

    @property
    def config(self) -> Config:
        return self._config()

    async def enter(self, room: str, pin: str, *, actor: str) -> str | None:
        """The bridge to join when `pin` opens `room`, else None (an unknown room, a closed or
        locked one and a wrong PIN alike); a wrong PIN counts towards the room's lockout."""
        owner = room_owner(self.config, room)
        if owner is None:
            return None
        check = await run_blocking(self.state.conferences.check_pin, owner.tenant.id, owner.user.id, pin,
                                   actor=actor or "caller", source=SOURCE)
        return bridge_name(owner) if check.ok else None
