"""Where a tenant's calls may go out to the public network: the one outbound policy, shared by
device calls, forwards, transfers, "press 1" and activities' substitute numbers.

A number is allowed when it starts with one of the tenant's `allow` prefixes and with none of the
deny prefixes. The built-in deny lists below always apply, whatever the tenant's own lists say
(they are added to, never replaced): premium-rate and special ranges of the countries we know,
and the international ranges that cost far more than any call. A tenant's own `deny` adds more.

Sources (national numbering plans, as published by each regulator; ITU-T E.164 assignments):
FI Traficom numbering decision (service numbers 0100/0200/0300, premium 060x/070x, 0209);
SE PTS numbering plan (0900, 0939, 0944, 099 premium; 118 directory enquiries);
NO Nkom numbering plan (820-829 premium; 18xx directory enquiries);
DK Energistyrelsen numbering plan (90xx premium; 18xx directory enquiries);
EE TTJA numbering plan (900 premium; 11xx directory enquiries);
DE BNetzA numbering plan (0900 premium, 0137 mass calls, 0180 shared cost, 0190 old premium,
012 innovative services, 0700 personal numbers, 118xx directory enquiries);
GB Ofcom National Telephone Numbering Plan (09 premium, 0871-0873 service charge, 070 personal
numbers, 118 directory enquiries);
US NANPA (900 premium service; the Caribbean and Atlantic NANP areas that are other countries,
reached at international rates with +1 and long the target of "one ring" fraud). The 976
exchange of US premium lines sits inside every area code and cannot be a prefix: it is not listed.
International: ITU-T E.164 shared and global codes (+800 freephone stays allowed).
"""

from __future__ import annotations

from dataclasses import dataclass

# Premium-rate and special ranges per country code, as E.164 prefixes.
PREMIUM_PREFIXES: dict[str, tuple[str, ...]] = {
    "358": (  # Finland
        "+358100", "+358200", "+358209", "+358300",  # service numbers 0100 / 0200 / 0209 / 0300
        "+35860", "+35870",  # premium rate 060x / 070x
        "+358118",  # directory enquiries 118xx
    ),
    "46": (  # Sweden
        "+46900", "+46939", "+46944", "+4699",  # premium rate 0900 / 0939 / 0944 / 099
        "+46118",  # directory enquiries 118xxx
    ),
    "47": (  # Norway
        "+4782",  # premium rate 820-829
        "+4718",  # directory enquiries 18xx
    ),
    "45": (  # Denmark
        "+4590",  # premium rate 90xx xxxx
        "+4518",  # directory enquiries 18xx
    ),
    "372": (  # Estonia
        "+372900",  # premium rate 900
        "+37211",  # directory enquiries 11xx
    ),
    "49": (  # Germany
        "+49900", "+49190",  # premium rate 0900, and the retired 0190
        "+49137",  # mass-call (televoting) 0137
        "+49180",  # shared-cost service 0180
        "+4912",  # innovative services 012
        "+49700",  # personal numbers 0700
        "+49118",  # directory enquiries 118xx
    ),
    "44": (  # United Kingdom
        "+449",  # premium rate 09
        "+44871", "+44872", "+44873",  # service charge 0871-0873
        "+4470",  # personal numbers 070
        "+44118",  # directory enquiries 118
    ),
    "1": (  # North America: premium 900, and NANP areas that are other countries
        "+1900",
        "+1242", "+1246", "+1264", "+1268", "+1284", "+1345", "+1441", "+1473", "+1649",
        "+1658", "+1664", "+1721", "+1758", "+1767", "+1784", "+1809", "+1829", "+1849",
        "+1868", "+1869", "+1876",
    ),
}

# International codes that are premium or shared-cost whoever calls them (ITU-T E.164).
INTERNATIONAL_DENY: tuple[str, ...] = (
    "+808",  # international shared-cost service
    "+870",  # Inmarsat
    "+878",  # universal personal telecommunications
    "+881",  # global mobile satellite systems (Iridium, Globalstar, ...)
    "+882", "+883",  # international networks
    "+888",  # telecommunications for disaster relief
    "+979",  # international premium-rate service
    "+991",  # international public correspondence trial
)

# Every built-in deny prefix: a Finnish tenant that allows "+46" still cannot reach +46900.
BUILTIN_DENY: tuple[str, ...] = (
    *(prefix for prefixes in PREMIUM_PREFIXES.values() for prefix in prefixes),
    *INTERNATIONAL_DENY,
)

# Fraud throttle defaults, per tenant: high enough for its users' normal traffic, low enough that
# one leaked device password cannot run a bill of hundreds of calls.
MIN_MAX_CALLS = 10  # simultaneous outbound calls: at least this, or one per user
MIN_MAX_CALLS_PER_MINUTE = 30  # new outbound calls a minute: at least this, or two per user


def has_builtin_list(country_code: str) -> bool:
    return country_code in PREMIUM_PREFIXES


def default_max_calls(users: int) -> int:
    return max(MIN_MAX_CALLS, users)


def default_max_calls_per_minute(users: int) -> int:
    return max(MIN_MAX_CALLS_PER_MINUTE, 2 * users)


@dataclass(frozen=True)
class OutboundPolicy:
    """A tenant's outbound rules: E.164 prefixes it may call (`allow`), its own extra deny
    prefixes (`deny`, added to BUILTIN_DENY), and its fraud throttle."""

    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    max_calls: int = MIN_MAX_CALLS  # simultaneous calls out of the platform
    max_calls_per_minute: int = MIN_MAX_CALLS_PER_MINUTE  # new calls out, in any 60 s

    @classmethod
    def default(cls, country_code: str, users: int = 0) -> OutboundPolicy:
        """National numbers only; the built-in deny lists; the throttle scaled to the users."""
        return cls(allow=("+" + country_code,), deny=(),
                   max_calls=default_max_calls(users),
                   max_calls_per_minute=default_max_calls_per_minute(users))

    def denied_by(self, number: str) -> str | None:
        """The deny prefix `number` falls under (built-in or the tenant's), or None."""
        for prefix in (*BUILTIN_DENY, *self.deny):
            if number.startswith(prefix):
                return prefix
        return None

    def permits(self, number: str) -> bool:
        return any(number.startswith(p) for p in self.allow) and self.denied_by(number) is None


# Channel variables naming whose call goes out when the channel is not that user's own device
# (a forward, a transfer, "press 1"): the dialplan's outbound check asks the policy for them.
OUT_TENANT_VAR = "VIPBX_OUT_TENANT"
OUT_USER_VAR = "VIPBX_OUT_USER"
