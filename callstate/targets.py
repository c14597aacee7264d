"""Where a user may send calls (a forward or an in-call transfer): normalisation and the rules.

One function decides for every entry point (the 987 code, the CLI, the web page, the transfer
handler), so a number refused on one is refused on all, with the same reason. Its last step,
`check_outbound`, is the tenant's outbound policy, which also decides device calls (FastAGI
`outbound`), "press 1" numbers and activities' substitute numbers.
"""

from __future__ import annotations

import re

from base.model import Config, Tenant, User
from base.numbers import to_e164

from .errors import SettingsError

# Why a target was refused: each has its own spoken prompt (`fc-refused-<reason>`).
INVALID_NUMBER = "invalid-number"
VOICEMAIL_NUMBER = "voicemail-number"
ACTIVITY_NUMBER = "activity-number"
OWN_NUMBER = "own-number"
NUMBER_BARRED = "number-barred"
LOOP = "loop"  # the target forwards back to the user
REASONS = (INVALID_NUMBER, VOICEMAIL_NUMBER, ACTIVITY_NUMBER, OWN_NUMBER, NUMBER_BARRED, LOOP)

_DIALLED = re.compile(r"\+?[0-9]{2,20}")


class TargetRefused(SettingsError):
    """A forward or transfer target that is not allowed; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def resolve(tenant: Tenant, dialled: str) -> str:
    """What a user dialled or typed → E.164: a colleague's extension, the national form
    (040… → +35840… by the tenant's country), 00-international or E.164."""
    raw = (dialled or "").strip().replace(" ", "").replace("-", "")
    if not _DIALLED.fullmatch(raw):
        raise TargetRefused(INVALID_NUMBER, f"{dialled!r} is not a phone number")
    if raw[0] in "123456789":  # extensions never start with 0 or +
        for colleague in tenant.users:
            if colleague.extension == raw:
                return colleague.number
    number = to_e164(raw, tenant.country_code)
    if number is None or (not raw.startswith(("+", "0"))):
        # Bare digits that are no extension of the tenant: ambiguous, refuse rather than guess.
        raise TargetRefused(INVALID_NUMBER, f"{dialled!r} is not a phone number or an extension "
                            f"of {tenant.id}")
    return number


def check_target(config: Config, tenant: Tenant, user: User | None, dialled: str) -> str:
    """The E.164 number calls may be sent to, or TargetRefused with the reason.

    `user` is the user whose calls are sent (None for a transfer, where "own number" does not apply).
    """
    number = resolve(tenant, dialled)
    platform = config.platform
    if number == platform.voicemail_number:
        # SPEC: a forward there would put callers into the voicemail retrieval menu.
        raise TargetRefused(VOICEMAIL_NUMBER, "calls cannot be sent to the voicemail access number")
    if number == platform.activity_number:
        raise TargetRefused(ACTIVITY_NUMBER, "calls cannot be sent to the activity-change number")
    if user is not None and number in own_numbers(tenant, user):
        raise TargetRefused(OWN_NUMBER, f"{number} is {user.id}'s own number")
    return check_outbound(config, tenant, number)


def check_outbound(config: Config, tenant: Tenant, number: str) -> str:
    """`number` (E.164) if the tenant's calls may be sent there, else TargetRefused
    (NUMBER_BARRED): a colleague always; anything else by the tenant's outbound policy."""
    owner = config.find_number(number)
    if owner is not None and owner[0].id == tenant.id:
        return number  # a colleague: always reachable, whatever the allow-list says
    policy = tenant.outbound_policy
    if not policy.permits(number):
        denied = policy.denied_by(number)
        why = f"barred ({denied}...)" if denied else "not in outbound.allow"
        raise TargetRefused(NUMBER_BARRED, f"{number} is outside the numbers {tenant.id} may call "
                            f"out to: {why}")
    return number


def own_numbers(tenant: Tenant, user: User) -> set[str]:
    """The user's number and the tenant numbers that ring the user."""
    return {user.number, *(n.number for n in tenant.numbers if n.user == user.id)}
