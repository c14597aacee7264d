"""May this call go out to the public network now? The dialplan's outbound check asks
`agi://HOST:PORT/outbound,TENANT,USER,NUMBER,ACTIVE` for every call that would leave the
platform (a device's call, a forward, a transfer, "press 1", an activity's substitute).

The answer, in VIPBX_OUTBOUND: `allow` (`allow,,,1` when the calling user's calls are recorded),
or `refuse,REASON,CAUSE` with REASON one of REASONS (the prompt the caller hears:
`out-refused-REASON`) and CAUSE the Q.850 cause the call ends with.
ACTIVE is how many calls of the tenant are out at this moment, this one included (Asterisk
counts them: GROUP_COUNT); the per-minute count is kept here (`MinuteThrottle`).
"""

from __future__ import annotations

from dataclasses import dataclass

from base.model import Config
from base.numbers import is_e164
from callstate.targets import TargetRefused, check_outbound

from .throttle import MinuteThrottle

ALLOW = "allow"
BARRED = "barred"  # not allowed by the tenant's outbound policy
LIMIT = "limit"  # the fraud throttle: too many calls out at once or in the last minute
ERROR = "error"  # the dialplan's own verdict when nobody answered the check
REASONS = (BARRED, LIMIT, ERROR)
# Q.850 causes: 21 "call rejected" (SIP 403), 34 "no circuit available" (SIP 503).
CAUSES = {BARRED: 21, LIMIT: 34, ERROR: 21}


@dataclass(frozen=True)
class OutboundDecision:
    reason: str = ""  # "" when allowed, else one of REASONS
    why: str = ""  # for the log line
    record: bool = False  # the calling user's recording is on (see docs/routing.md)

    @property
    def allowed(self) -> bool:
        return not self.reason

    def packed(self) -> str:
        """VIPBX_OUTBOUND for the dialplan's ARRAY(VERDICT,REASON,CAUSE)."""
        if self.allowed:
            return f"{ALLOW},,,1" if self.record else ALLOW
        return f"refuse,{self.reason},{CAUSES[self.reason]}"


def decide_outbound(config: Config, throttle: MinuteThrottle, tenant_id: str, number: str,
                    active: int | None, now: float) -> OutboundDecision:
    """The policy first (a barred number never counts towards the throttle), then the limit of
    simultaneous calls, then the per-minute limit (only admitted calls count)."""
    tenant = config.tenant(tenant_id)
    if tenant is None:
        return OutboundDecision(BARRED, f"no tenant {tenant_id!r} in the configuration")
    if not is_e164(number):
        return OutboundDecision(BARRED, f"{number!r} is not an E.164 number")
    try:
        check_outbound(config, tenant, number)
    except TargetRefused as exc:
        return OutboundDecision(BARRED, str(exc))
    policy = tenant.outbound_policy
    if active is None:
        return OutboundDecision(LIMIT, "the count of calls out (GROUP_COUNT) could not be read: "
                                "is func_groupcount loaded? Restart Asterisk after the deploy")
    if active > policy.max_calls:
        return OutboundDecision(LIMIT, f"limit of {policy.max_calls} simultaneous calls out "
                                f"(outbound.max_calls) reached: {active} with this one")
    if not throttle.admit(tenant.id, policy.max_calls_per_minute, now):
        return OutboundDecision(LIMIT, f"limit of {policy.max_calls_per_minute} calls out a minute "
                                "(outbound.max_calls_per_minute) reached")
    return OutboundDecision()


def parse_active(text: str) -> int | None:
    """GROUP_COUNT as the dialplan sent it; None when unreadable (then refused as over the limit)."""
    try:
        return max(0, int(text))
    except ValueError:
        return None
