"""What happens to a call to user X now: a pure function of the configuration (and, in later
issues, of the user's call state), so it can be tested without Asterisk or sockets."""

from __future__ import annotations

from dataclasses import dataclass

from asterisk_conf.model import Config, User

RING = "ring"


@dataclass(frozen=True)
class RouteDecision:
    action: str  # VIPBX_ACTION: "ring" for now
    timeout: int  # VIPBX_TIMEOUT: seconds to ring before no-answer treatment
    known: bool = True  # False: tenant/user not in the configuration (the dialplan rings anyway)

    def variables(self) -> dict[str, str]:
        """The channel variables the dialplan reads after AGI()."""
        return {"VIPBX_ACTION": self.action, "VIPBX_TIMEOUT": str(self.timeout)}


def find_user(config: Config, tenant_id: str, user_id: str) -> User | None:
    for tenant in config.tenants:
        if tenant.id == tenant_id:
            try:
                return tenant.user(user_id)
            except KeyError:
                return None
    return None


def decide(config: Config, tenant_id: str, user_id: str) -> RouteDecision:
    timeout = config.platform.no_answer_seconds
    if find_user(config, tenant_id, user_id) is None:
        # The dialplan was rendered from a configuration that knows this user (or this server's
        # copy is out of date): ringing is what the dialplan would do without us.
        return RouteDecision(RING, timeout, known=False)
    return RouteDecision(RING, timeout)
