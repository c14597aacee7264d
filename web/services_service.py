"""The Services page's voicemail settings and forwards, apart from HTTP: the form's values read
into the call-state service's terms, and each refusal named by a locale key.

The changes are the call-state service's (`update_voicemail_settings`, `set_forward`,
`set_call_waiting`): the same rules, with the same reasons, as the 987 and *43# codes and the CLI.
"""

from __future__ import annotations

from typing import Any

from base.model import TenantUser
from base.numbers import to_e164
from callstate import SettingsError
from callstate import routing as routing_rules
from callstate import voicemail as voicemail_rules
from callstate.targets import TargetRefused

# The voicemail settings, in the SPEC's order; the booleans are check boxes.
SWITCHES = ("notify_sms", "notify_email", "play_activity", "always_ask_pin")
TARGET_NUMBER = "number"
TARGET_CHOICES = (TARGET_NUMBER, routing_rules.VOICEMAIL, routing_rules.NONE)


def refusal_key(exc: SettingsError) -> str:
    """The locale key of a refused target: the reasons the codes speak (`fc-refused-<reason>`)."""
    if isinstance(exc, TargetRefused):
        return "services_refused_" + exc.reason.replace("-", "_")
    return "services_refused"


def press1_value(who: TenantUser, text: str) -> str | None:
    """The press-1 number as typed (national, 00 or E.164) → E.164; empty turns it off. Text that
    is no number passes unchanged, for the setting's own rule to refuse."""
    text = text.strip().replace(" ", "").replace("-", "")
    if not text:
        return None
    return to_e164(text, who.tenant.country_code) or text


def voicemail_changes(who: TenantUser, form: dict[str, str]) -> dict[str, Any]:
    """Every setting from a submitted form: an unchecked box is off."""
    changes: dict[str, Any] = {name: form.get(name) in ("on", "true", "1", "yes") for name in SWITCHES}
    changes["press1_number"] = press1_value(who, form.get("press1_number", ""))
    return changes


def voicemail_refusal(who: TenantUser, changes: dict[str, Any], config: Any) -> str:
    """The locale key of the rule a refused settings change broke."""
    user = who.user
    if not user.has_voicemail:
        return "services_no_voicemail"
    if changes.get("notify_email") and not user.email:
        return "services_refused_no_email"
    number = changes.get("press1_number")
    if number is not None:
        try:
            voicemail_rules.check_press1(config, who.tenant, user, number)
        except SettingsError:
            return _press1_reason(config, who, number)
    return "services_refused"


def _press1_reason(config: Any, who: TenantUser, number: str) -> str:
    platform = config.platform
    if not voicemail_rules.E164.fullmatch(number):
        return "services_refused_invalid_number"
    if number == platform.voicemail_number:
        return "services_refused_voicemail_number"
    if number == platform.activity_number:
        return "services_refused_activity_number"
    if number == who.user.number:
        return "services_refused_own_number"
    return "services_refused_number_barred"


def forward_target(choice: str, number: str) -> str:
    """The form's choice (number, voicemail, none) → what `set_forward` takes."""
    if choice == TARGET_NUMBER:
        if not number.strip():
            raise TargetRefused("invalid-number", "a number is needed")
        return number
    if choice in TARGET_CHOICES:
        return choice
    raise SettingsError(f"unknown forward target {choice!r}")


def forward_refusal(who: TenantUser, target: str, exc: SettingsError) -> str:
    if isinstance(exc, TargetRefused):
        return refusal_key(exc)
    if target == routing_rules.VOICEMAIL and not who.user.has_voicemail:
        return "services_refused_no_voicemail"
    return "services_refused"


def parse_delay(text: str) -> int:
    try:
        seconds = int(text.strip())
    except ValueError as exc:
        raise SettingsError("the delay is a whole number of seconds") from exc
    return routing_rules.check_delay(seconds)
