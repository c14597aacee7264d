"""Who is being changed (a user of the current configuration) and by whom (actor, source)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from base.model import Config, Tenant, User

from .errors import SettingsError, UnknownUserError

# Where a change came from: "cli", "ivr", "code", "web", "agi", ...; short, so logs stay greppable.
SOURCE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
ACTOR_MAX = 200


@dataclass(frozen=True)
class Origin:
    """Who made a change (e.g. an operator's login, a caller's number) and through which entry."""

    actor: str
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not SOURCE.fullmatch(self.source):
            raise SettingsError(f"source must be a short lower-case word such as 'cli', 'ivr' or "
                                f"'web', not {self.source!r}")
        if (not isinstance(self.actor, str) or not self.actor.strip() or len(self.actor) > ACTOR_MAX
                or not self.actor.isprintable()):
            raise SettingsError(f"actor must be 1 to {ACTOR_MAX} printable characters, not {self.actor!r}")


def find_user(config: Config, tenant_id: str, user_id: str) -> tuple[Tenant, User]:
    found = config.find_user(tenant_id, user_id) if isinstance(tenant_id, str) and isinstance(user_id, str) else None
    if found is not None:
        return found
    for tenant in config.tenants:
        if tenant.id == tenant_id:
            for user in tenant.users:
                if user.id == user_id:
                    return tenant, user
            raise UnknownUserError(f"tenant {tenant_id!r} has no user {user_id!r}")
    raise UnknownUserError(f"there is no tenant {tenant_id!r}")
