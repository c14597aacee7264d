"""Forwards and call waiting: the values, their defaults and the rules a change must pass."""

from __future__ import annotations

from dataclasses import dataclass, replace

from base.model import NO_VOICEMAIL_GROUP, Config, Tenant, User

from .errors import SettingsError
from .targets import check_target

# Which forward: immediate (all calls at once: the 987 code), busy (the user rejects or is in a
# call with call waiting off), no answer (after `no_answer_seconds`), unreachable (no device
# registered, or the devices fail).
IMMEDIATE = "immediate"
BUSY = "busy"
NO_ANSWER = "no_answer"
UNREACHABLE = "unreachable"
KINDS = (IMMEDIATE, BUSY, NO_ANSWER, UNREACHABLE)

# Where a forward goes: a number (E.164), voicemail, or nowhere (busy signal / call ends).
VOICEMAIL = "voicemail"
NONE = "none"

NO_ANSWER_MIN, NO_ANSWER_MAX = 5, 120
LOOP_CHECK_HOPS = 10  # immediate forwards followed when a new one is checked for a loop
AUDIT_PREFIX = "forward."
CALL_WAITING_FIELD = "call_waiting"


@dataclass(frozen=True)
class Routing:
    """One user's forwards and call waiting. Each forward is VOICEMAIL, NONE or an E.164 number."""

    immediate: str = NONE
    busy: str = NONE
    no_answer: str = NONE
    unreachable: str = NONE
    no_answer_seconds: int = 20
    call_waiting: bool = True  # SPEC: recommended on

    def forward(self, kind: str) -> str:
        return str(getattr(self, kind))


def defaults(config: Config, user: User) -> Routing:
    """A voicemail user's busy, no-answer and unreachable calls go to voicemail; a "No voicemail"
    user's go nowhere (busy signal, or the call ends)."""
    fallback = VOICEMAIL if user.has_voicemail else NONE
    return Routing(busy=fallback, no_answer=fallback, unreachable=fallback,
                   no_answer_seconds=config.platform.no_answer_seconds)


def parse_kind(text: str) -> str:
    word = text.strip().lower().replace("-", "_")
    if word in ("all", "unconditional", "cfu"):
        word = IMMEDIATE
    if word not in KINDS:
        raise SettingsError(f"unknown forward {text!r} (known: {', '.join(KINDS)})")
    return word


def check_forward(config: Config, tenant: Tenant, user: User, kind: str, target: str) -> str:
    """The stored form of `target` for the `kind` forward, or SettingsError / TargetRefused."""
    if kind not in KINDS:
        raise SettingsError(f"unknown forward {kind!r} (known: {', '.join(KINDS)})")
    if not isinstance(target, str):
        raise SettingsError(f"a forward target is text, not {type(target).__name__}")
    word = target.strip().lower()
    if word in (NONE, "off", ""):
        return NONE
    if word in (VOICEMAIL, "vm"):
        if not user.has_voicemail:
            raise SettingsError(f"{user.id} is in the group {NO_VOICEMAIL_GROUP!r}: there is no "
                                "voicemail to forward to")
        return VOICEMAIL
    return check_target(config, tenant, user, target)


def check_delay(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not NO_ANSWER_MIN <= seconds <= NO_ANSWER_MAX:
        raise SettingsError(f"the no-answer delay must be {NO_ANSWER_MIN} to {NO_ANSWER_MAX} seconds, "
                            f"not {seconds!r}")
    return seconds


def effective(config: Config, user: User, stored: dict[str, object]) -> Routing:
    """The stored columns over the defaults. A stored 'voicemail' of a user since put into the
    "No voicemail" group reads as 'none': there is no mailbox to send calls to."""
    base = defaults(config, user)
    values: dict[str, object] = {}
    for kind in KINDS:
        value = stored.get(f"fwd_{kind}")
        if isinstance(value, str):
            values[kind] = NONE if value == VOICEMAIL and not user.has_voicemail else value
    if stored.get("no_answer_seconds") is not None:
        values["no_answer_seconds"] = int(str(stored["no_answer_seconds"]))
    if stored.get("call_waiting") is not None:
        values["call_waiting"] = bool(stored["call_waiting"])
    return replace(base, **values)  # type: ignore[arg-type]
