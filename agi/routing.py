"""What happens to a call to user X now: a pure function of the configuration, the user's call
state and what the dialplan knows about the call, so it is tested without Asterisk or sockets.

The answer is a set of channel variables the dialplan applies (see docs/routing.md), sent packed
in one variable, VIPBX_ROUTE, which the dialplan splits with ARRAY():

| variable | values |
| --- | --- |
| VIPBX_ACTION | `ring`, `forward` (to VIPBX_TARGET at once), `busy` (busy treatment now), `voicemail` |
| VIPBX_TIMEOUT | seconds to ring before the no-answer treatment |
| VIPBX_TARGET | the E.164 number of an immediate forward |
| VIPBX_ON_BUSY, VIPBX_ON_NOANSWER, VIPBX_ON_UNAVAIL | `voicemail`, `none` or an E.164 number |
| VIPBX_FROM | the user's number: the Diversion a forwarded call carries |
| VIPBX_CHAIN | the users this call has been forwarded through, for loop detection |
| VIPBX_RECORD | whose recording is on: `in` (the called user's), `out` (the calling device's user), `both` or empty |

When VIPBX_RECORD is not empty, the server also sets VIPBX_RECORD_NOTICE: the announcement
("this call is being recorded") both parties hear before the call connects.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from base.model import RING as RING_RULE
from base.model import TO_VOICEMAIL as TO_VOICEMAIL_RULE
from base.model import Config, Tenant, User
from callstate.presence import Presence
from callstate.routing import (
    BUSY,
    IMMEDIATE,
    NO_ANSWER,
    NONE,
    UNREACHABLE,
    VOICEMAIL,
    Routing,
    defaults,
)
from callstate.targets import TargetRefused, check_target

RING = "ring"
FORWARD = "forward"
BUSY_NOW = "busy"
TO_VOICEMAIL = "voicemail"

# Forwards followed per call before they are ignored (a carrier loop counts through Diversion).
MAX_FORWARD_HOPS = 5
# Device states (EXTENSION_STATE of the user's hint) that mean "already in a call".
IN_CALL_STATES = frozenset({"INUSE", "BUSY", "RINGINUSE", "HOLDINUSE", "ONHOLD"})
CHAIN_SEPARATOR = "/"
# The order of the fields in VIPBX_ROUTE (see RouteDecision.packed and the dialplan's ARRAY()).
ROUTE_FIELDS = ("VIPBX_ACTION", "VIPBX_TIMEOUT", "VIPBX_TARGET", "VIPBX_ON_BUSY", "VIPBX_ON_NOANSWER",
                "VIPBX_ON_UNAVAIL", "VIPBX_FROM", "VIPBX_CHAIN", "VIPBX_RECORD")
# VIPBX_RECORD: which party's recording is on.
RECORD_IN, RECORD_OUT, RECORD_BOTH = "in", "out", "both"


@dataclass(frozen=True)
class CallFacts:
    """What the dialplan tells about this call attempt."""

    device_state: str = ""  # EXTENSION_STATE of the user's hint: NOT_INUSE, INUSE, ...
    chain: tuple[str, ...] = ()  # "tenant:user" of each user this call was forwarded from
    redirects: int = 0  # REDIRECTING(count): forwards before the call reached us

    @property
    def in_call(self) -> bool:
        return self.device_state.upper() in IN_CALL_STATES

    @classmethod
    def parse(cls, device_state: str = "", chain: str = "", redirects: str = "") -> CallFacts:
        hops = tuple(part for part in chain.split(CHAIN_SEPARATOR) if part)
        try:
            count = max(0, int(redirects or 0))
        except ValueError:
            count = 0
        return cls(device_state.strip(), hops, count)


@dataclass(frozen=True)
class RouteDecision:
    action: str
    timeout: int
    target: str = ""
    on_busy: str = NONE
    on_no_answer: str = NONE
    on_unavailable: str = NONE
    from_number: str = ""
    chain: tuple[str, ...] = ()
    known: bool = True  # False: tenant/user not in the configuration (the dialplan rings anyway)
    loop: bool = False  # a forward was not followed because it would loop (or hop too often)
    record: str = ""  # VIPBX_RECORD (see record_mode)

    def packed(self) -> str:
        """All the variables in one value, in ROUTE_FIELDS order, for `Set(ARRAY(...)=...)`:
        one AGI round trip instead of eight. No value can hold a comma (numbers, words, ids)."""
        values = self.variables()
        assert not any("," in v for v in values.values()), values
        return ",".join(values[name] for name in ROUTE_FIELDS)

    def variables(self) -> dict[str, str]:
        """The channel variables the dialplan reads after AGI()."""
        return {
            "VIPBX_ACTION": self.action,
            "VIPBX_TIMEOUT": str(self.timeout),
            "VIPBX_TARGET": self.target,
            "VIPBX_ON_BUSY": self.on_busy,
            "VIPBX_ON_NOANSWER": self.on_no_answer,
            "VIPBX_ON_UNAVAIL": self.on_unavailable,
            "VIPBX_FROM": self.from_number,
            "VIPBX_CHAIN": CHAIN_SEPARATOR.join(self.chain),
            "VIPBX_RECORD": self.record,
        }


def record_mode(called: bool, calling: bool) -> str:
    """VIPBX_RECORD for a call whose called user records (`called`) and/or whose calling device's
    user records (`calling`)."""
    if called and calling:
        return RECORD_BOTH
    return RECORD_IN if called else RECORD_OUT if calling else ""


def find(config: Config, tenant_id: str, user_id: str) -> tuple[Tenant, User] | None:
    return config.find_user(tenant_id, user_id)


def user_key(tenant_id: str, user_id: str) -> str:
    return f"{tenant_id}:{user_id}"


def decide(config: Config, tenant_id: str, user_id: str, routing: Routing | None = None,
           facts: CallFacts = CallFacts(), presence: Presence | None = None) -> RouteDecision:
    """Precedence: the user's own immediate forward; then their activity's rule (ring, voicemail
    or a substitute number, per tenant); then busy-now (in a call, call waiting off); else ring."""
    found = find(config, tenant_id, user_id)
    if found is None:
        # The dialplan was rendered from a configuration that knows this user (or this server's
        # copy is out of date): ringing is what the dialplan would do without us.
        return RouteDecision(RING, config.platform.no_answer_seconds, known=False)
    tenant, user = found
    state = routing or defaults(config, user)
    here = user_key(tenant_id, user_id)
    chain = (*facts.chain, here)
    loop = False

    def follow(kind: str) -> str:
        """The forward of `kind`, or the user's default where following it would loop."""
        nonlocal loop
        target = state.forward(kind)
        if target in (NONE, VOICEMAIL):
            return target
        if not _still_allowed(config, tenant, user, target):
            # Stored before the tenant's allow-list was tightened (or a service number changed):
            # today's rules win over yesterday's setting.
            return NONE if kind == IMMEDIATE else defaults(config, user).forward(kind)
        if _would_loop(config, target, chain, facts.redirects):
            loop = True
            return NONE if kind == IMMEDIATE else defaults(config, user).forward(kind)
        return target

    immediate = follow(IMMEDIATE)
    decision = RouteDecision(
        action=RING,
        timeout=state.no_answer_seconds,
        on_busy=follow(BUSY),
        on_no_answer=follow(NO_ANSWER),
        on_unavailable=follow(UNREACHABLE),
        from_number=user.number,
        chain=chain,
    )
    rule = _activity_rule(tenant, presence)
    if rule == TO_VOICEMAIL_RULE and not user.has_voicemail:
        rule = RING_RULE  # no mailbox to send it to: the call goes on as when Available
    if rule != RING_RULE and immediate == NONE and rule != TO_VOICEMAIL_RULE:
        if _would_loop(config, rule, chain, facts.redirects):
            loop, rule = True, RING_RULE
        elif not _still_allowed(config, tenant, user, rule):
            # A substitute the outbound policy no longer allows (checked at load, again here).
            rule = RING_RULE
    if immediate == VOICEMAIL:
        action, target = TO_VOICEMAIL, ""
    elif immediate != NONE:
        action, target = FORWARD, immediate
    elif rule == TO_VOICEMAIL_RULE:
        action, target = TO_VOICEMAIL, ""
    elif rule != RING_RULE:
        action, target = FORWARD, rule
    elif facts.in_call and not state.call_waiting:
        action, target = BUSY_NOW, ""
    else:
        action, target = RING, ""
    return replace(decision, action=action, target=target, loop=loop)


def _activity_rule(tenant: Tenant, presence: Presence | None) -> str:
    if presence is None or presence.available:
        return RING_RULE
    activity = tenant.activity(presence.activity)
    return activity.route if activity is not None else RING_RULE


def _still_allowed(config: Config, tenant: Tenant, user: User, target: str) -> bool:
    try:
        check_target(config, tenant, user, target)
    except TargetRefused:
        return False
    return True


def _would_loop(config: Config, target: str, chain: tuple[str, ...], redirects: int) -> bool:
    if len(chain) > MAX_FORWARD_HOPS or redirects >= MAX_FORWARD_HOPS:
        return True
    owner = config.find_number(target)
    return owner is not None and user_key(owner[0].id, owner[1].id) in chain

