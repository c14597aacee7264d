"""Voicemail settings: the values, their defaults, and the rules a change must pass."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from base.model import NO_VOICEMAIL_GROUP, Config, Tenant, User

from .errors import SettingsError
from .targets import TargetRefused, check_outbound

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
AUDIT_PREFIX = "voicemail."


@dataclass(frozen=True)
class VoicemailSettings:
    """One user's voicemail settings; a user who never changed them has exactly these defaults."""

    play_activity: bool = False  # say the user's activity after the greeting
    press1_number: str | None = None  # None: no "press 1 for customer service" in the greeting
    notify_sms: bool = True  # SPEC: by default new messages are notified by SMS only
    notify_email: bool = False  # the e-mail carries the recording
    always_ask_pin: bool = False  # caller ID can be spoofed: ask the PIN even from the own number


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(VoicemailSettings))
BOOL_FIELDS: tuple[str, ...] = tuple(name for name in FIELDS if name != "press1_number")

_TRUE = ("yes", "on", "true", "1")
_FALSE = ("no", "off", "false", "0")
_NONE = ("", "none", "off", "no")


def parse_value(field: str, text: str) -> bool | str | None:
    """A setting typed as text (CLI argument, web form) → the value `update` takes."""
    if field not in FIELDS:
        raise SettingsError(_unknown(field))
    word = text.strip().lower()
    if field in BOOL_FIELDS:
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise SettingsError(f"{field} must be yes or no, not {text!r}")
    return None if word in _NONE else text.strip()


def apply_changes(config: Config, tenant: Tenant, user: User, current: VoicemailSettings,
                  changes: dict[str, Any]) -> VoicemailSettings:
    """`current` with `changes`, or SettingsError naming the first rule broken (nothing applied)."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise SettingsError(_unknown(unknown[0]))
    if not user.has_voicemail:
        raise SettingsError(f"{user.id} is in the group {NO_VOICEMAIL_GROUP!r}: there is no voicemail "
                            "to set up (remove them from the group first)")
    for name in BOOL_FIELDS:
        if name in changes and not isinstance(changes[name], bool):
            raise SettingsError(f"{name} must be true or false, not {changes[name]!r}")
    if "press1_number" in changes:
        check_press1(config, tenant, user, changes["press1_number"])
    if changes.get("notify_email") is True and not user.email:
        raise SettingsError(f"notify_email needs an e-mail address for {user.id} in the configuration")
    return replace(current, **changes)


def to_audit_text(value: bool | str | None) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def check_press1(config: Config, tenant: Tenant, user: User, number: Any) -> None:
    """SettingsError unless `number` may be the user's "press 1" number: when it is set, and
    again before a caller is connected there (the policy may have changed since)."""
    if number is None:
        return
    if not isinstance(number, str) or not E164.fullmatch(number):
        raise SettingsError(f"press1_number must be an E.164 number such as +358955512345 "
                            f"(or none to turn it off), not {number!r}")
    platform = config.platform
    if number == platform.voicemail_number:
        raise SettingsError("press1_number cannot be the voicemail access number: callers would "
                            "land in the voicemail menu")
    if number == platform.activity_number:
        raise SettingsError("press1_number cannot be the activity-change number")
    owner = config.find_number(number)
    if owner is not None and owner[0].id == tenant.id and owner[1].id == user.id:
        raise SettingsError(f"press1_number cannot be {user.id}'s own number: the caller would come "
                            "back to this voicemail")
    try:
        check_outbound(config, tenant, number)
    except TargetRefused as exc:
        # Any outside caller can press 1: a premium number here would be toll fraud.
        raise SettingsError(f"press1_number: {exc}") from exc


def _unknown(field: str) -> str:
    return f"unknown voicemail setting {field!r} (known: {', '.join(FIELDS)})"
