"""The home page's user names: the service guide's `fi0401234567@company.fi` (a country prefix and
the national number, then the tenant's domain), or `user@company.fi` with the user's id."""

from __future__ import annotations

import re

from base.model import Config, TenantUser
from base.numbers import to_e164

NATIONAL = re.compile(r"[a-z]{2}(0[0-9]{4,15})")
E164 = re.compile(r"\+?[1-9][0-9]{6,15}")
MAX_LENGTH = 254


def find_login(config: Config, name: str) -> TenantUser | None:
    """The user a typed user name names, or None. Case and surrounding blanks are ignored."""
    name = (name or "").strip().lower()
    if len(name) > MAX_LENGTH or name.count("@") != 1:
        return None
    local, _, domain = name.partition("@")
    tenant = next((t for t in config.tenants if t.domain.lower() == domain), None)
    if tenant is None or not local:
        return None
    national = NATIONAL.fullmatch(local)
    if national or E164.fullmatch(local):
        number = to_e164(national.group(1) if national else "+" + local.lstrip("+"), tenant.country_code)
        owner = config.find_number(number) if number else None
        # A tenant's extra numbers ring a user too, but name a login only as the user's own number.
        if owner is None or owner.tenant.id != tenant.id or owner.user.number != number:
            return None
        return owner
    return config.find_user(tenant.id, local)


def login_name(who: TenantUser) -> str:
    """The user's name as the page shows it: `fi0401234567@company.fi` style for Finnish numbers,
    the number without '+' otherwise."""
    tenant, user = who
    prefix = "+" + tenant.country_code
    if user.number.startswith(prefix):
        country = COUNTRY_PREFIXES.get(tenant.country_code)
        if country:
            return f"{country}0{user.number[len(prefix):]}@{tenant.domain}"
    return f"{user.number.lstrip('+')}@{tenant.domain}"


# The calling codes of the countries the built-in outbound lists know, and their ISO prefixes.
COUNTRY_PREFIXES = {"358": "fi", "46": "se", "47": "no", "45": "dk", "372": "ee", "49": "de", "44": "gb"}
