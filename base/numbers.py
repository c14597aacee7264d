"""Phone numbers as callers and carriers write them → E.164."""

from __future__ import annotations

import re

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


def to_e164(raw: str, country_code: str) -> str | None:
    """`+358401234567`, `00358401234567`, `358401234567` (a carrier that drops the '+') or the
    national `0401234567` → `+358401234567`; None when it is not a phone number at all."""
    digits = re.sub(r"[\s()-]", "", raw or "")
    if digits.startswith("+"):
        candidate = digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    elif digits.startswith("0"):
        candidate = "+" + country_code + digits[1:]
    else:
        candidate = "+" + digits
    return candidate if is_e164(candidate) else None
