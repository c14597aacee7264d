"""The one outbound policy: each country's premium-rate list, the international codes, colleagues,
"press 1" numbers when set and when used, the per-minute throttle and the FastAGI decision."""

from __future__ import annotations

import pytest
from people import user

from agi.outbound import decide_outbound, parse_active
from agi.routing import decide
from agi.throttle import WINDOW_SECONDS, MinuteThrottle
from base.model import Activity, Config, Platform, Tenant
from base.outbound import INTERNATIONAL_DENY, PREMIUM_PREFIXES, OutboundPolicy
from callstate import (
    Presence,
    SettingsError,
    TargetRefused,
    VoicemailSettings,
    check_outbound,
)
from callstate.voicemail import apply_changes

ANNA, MIKKO = "+358401110001", "+358401110002"
SVEN = "+46701110001"  # a user of another tenant, in Sweden
OUTSIDE = "+358501234567"

# (country code, numbers in its premium or special ranges, an ordinary number of the country)
COUNTRIES = [
    ("358", ["+358600123456", "+358700123456", "+358100123456", "+358200123456", "+358209123456",
             "+358300123456", "+35811888"], "+358401234567"),
    ("46", ["+46900123456", "+46939123456", "+46944123456", "+46991234567", "+4611811"], "+46701234567"),
    ("47", ["+4782012345", "+4782912345", "+471881"], "+4791234567"),
    ("45", ["+4590123456", "+451811"], "+4520123456"),
    ("372", ["+3729001234", "+3721182"], "+37251234567"),
    ("49", ["+499001234567", "+491371234567", "+491801234567", "+491901234567", "+4911833",
            "+49700123456", "+4912345678"], "+4930123456"),
    ("44", ["+449012345678", "+448712345678", "+448721234567", "+448731234567", "+44118500",
            "+447012345678"], "+447700900123"),
    ("1", ["+19005551234", "+18765551234", "+12845551234", "+18095551234", "+14735551234"], "+12125551234"),
]


def test_every_built_in_country_is_tested() -> None:
    assert {cc for cc, _, _ in COUNTRIES} == set(PREMIUM_PREFIXES)
    assert {"358", "46", "47", "45", "372", "49", "44", "1"} <= set(PREMIUM_PREFIXES)


@pytest.mark.parametrize(("cc", "premium", "ordinary"), COUNTRIES)
def test_each_countrys_premium_ranges_are_refused_and_ordinary_numbers_allowed(
        cc: str, premium: list[str], ordinary: str) -> None:
    policy = OutboundPolicy.default(cc)
    assert policy.permits(ordinary)
    for number in premium:
        assert not policy.permits(number), number
        assert policy.denied_by(number) is not None


@pytest.mark.parametrize(("cc", "premium", "ordinary"), COUNTRIES)
def test_premium_ranges_stay_refused_for_a_tenant_that_allows_the_country(
        cc: str, premium: list[str], ordinary: str) -> None:
    finnish_but_international = OutboundPolicy(allow=("+358", "+" + cc))
    assert finnish_but_international.permits(ordinary)
    assert not any(finnish_but_international.permits(n) for n in premium)


def test_international_premium_and_shared_cost_codes_are_refused_freephone_is_not() -> None:
    everywhere = OutboundPolicy(allow=tuple(f"+{d}" for d in range(1, 10)))
    assert everywhere.permits("+80012345678")  # universal international freephone
    for prefix in INTERNATIONAL_DENY:
        assert not everywhere.permits(prefix + "12345678"), prefix
    for prefix in ("+808", "+878", "+881", "+882", "+883", "+870", "+979", "+991"):
        assert prefix in INTERNATIONAL_DENY


def test_the_tenants_own_deny_list_adds_to_the_built_in_one() -> None:
    policy = OutboundPolicy(allow=("+358",), deny=("+35850",))
    assert not policy.permits(OUTSIDE) and policy.denied_by(OUTSIDE) == "+35850"
    assert not policy.permits("+358600123456")
    assert policy.permits("+358401234567")
    assert not policy.permits("+46701234567")  # not in allow


# ---------------------------------------------------------------------- the policy function

CONFIG = Config(
    platform=Platform(),
    tenants=(
        Tenant(id="acme", name="Acme", domain="acme.example",
               users=(user("anna", ANNA, "101"), user("mikko", MIKKO, "102")),
               outbound=OutboundPolicy(allow=("+358",), max_calls=2, max_calls_per_minute=3),
               activities=(Activity("available", "1"), Activity("lunch", "4", "away", "+358600123456"),
                           Activity("away", "5", "away", OUTSIDE))),
        Tenant(id="svea", name="Svea", domain="svea.example", country_code="46",
               users=(user("sven", SVEN, "201"),)),
    ),
)
ACME = CONFIG.tenants[0]


def test_check_outbound_allows_colleagues_whatever_the_lists_say() -> None:
    closed = Tenant(id="acme", name="Acme", domain="acme.example", users=ACME.users,
                    outbound=OutboundPolicy(allow=()))
    config = Config(CONFIG.platform, (closed, CONFIG.tenants[1]))
    assert check_outbound(config, closed, MIKKO) == MIKKO
    with pytest.raises(TargetRefused) as refused:
        check_outbound(config, closed, SVEN)  # another tenant's user is not a colleague
    assert refused.value.reason == "number-barred"


def test_check_outbound_names_the_barred_range() -> None:
    with pytest.raises(TargetRefused, match=r"\+35870"):
        check_outbound(CONFIG, ACME, "+358700123456")


# ---------------------------------------------------------------------- press 1


@pytest.mark.parametrize("number", ["+19005551234", "+88234567890", "+358700123456", "+358600123456",
                                    "+46900123456", "+46701234567"])
def test_press_1_numbers_the_policy_refuses_cannot_be_set(number: str) -> None:
    with pytest.raises(SettingsError, match="press1_number"):
        apply_changes(CONFIG, ACME, ACME.users[0], VoicemailSettings(), {"press1_number": number})


def test_an_allowed_press_1_number_is_set() -> None:
    changed = apply_changes(CONFIG, ACME, ACME.users[0], VoicemailSettings(), {"press1_number": "+358955512345"})
    assert changed.press1_number == "+358955512345"


# ---------------------------------------------------------------------- the throttle


def test_the_minute_throttle_admits_up_to_the_limit_in_any_sixty_seconds() -> None:
    throttle = MinuteThrottle()
    assert [throttle.admit("acme", 3, t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert throttle.admit("svea", 3, 3.0)  # per tenant
    assert not throttle.admit("acme", 3, WINDOW_SECONDS - 0.5)
    assert throttle.admit("acme", 3, WINDOW_SECONDS + 0.5)  # the call at 0 s has left the window
    assert throttle.recent("acme", WINDOW_SECONDS + 0.5) == 3


def test_an_unreadable_count_of_calls_out_is_refused_as_over_the_limit() -> None:
    assert parse_active("2") == 2 and parse_active("") is None and parse_active("x") is None
    unread = decide_outbound(CONFIG, MinuteThrottle(), "acme", OUTSIDE, parse_active(""), 0.0)
    assert unread.reason == "limit" and "func_groupcount" in unread.why


# ---------------------------------------------------------------------- the FastAGI decision


def test_decide_outbound_policy_then_simultaneous_then_per_minute() -> None:
    throttle = MinuteThrottle()
    barred = decide_outbound(CONFIG, throttle, "acme", "+358600123456", 1, 0.0)
    assert (barred.reason, barred.packed()) == ("barred", "refuse,barred,21")
    assert throttle.recent("acme", 0.0) == 0  # a barred number does not use up the throttle
    assert decide_outbound(CONFIG, throttle, "acme", OUTSIDE, 1, 0.0).packed() == "allow"
    over = decide_outbound(CONFIG, throttle, "acme", OUTSIDE, 3, 1.0)  # max_calls 2, this is the 3rd
    assert (over.reason, over.packed()) == ("limit", "refuse,limit,34")
    assert "outbound.max_calls" in over.why and "2" in over.why
    assert decide_outbound(CONFIG, throttle, "acme", OUTSIDE, 2, 2.0).allowed
    assert decide_outbound(CONFIG, throttle, "acme", OUTSIDE, 1, 3.0).allowed
    minute = decide_outbound(CONFIG, throttle, "acme", OUTSIDE, 1, 4.0)  # the 4th in a minute
    assert minute.reason == "limit" and "max_calls_per_minute" in minute.why
    assert decide_outbound(CONFIG, throttle, "acme", OUTSIDE, 1, 61.0).allowed


@pytest.mark.parametrize(("tenant_id", "number"), [("nobody", OUTSIDE), ("acme", "+35850,1"),
                                                   ("acme", "0501234567"), ("", OUTSIDE)])
def test_decide_outbound_refuses_what_it_cannot_place(tenant_id: str, number: str) -> None:
    assert decide_outbound(CONFIG, MinuteThrottle(), tenant_id, number, 1, 0.0).reason == "barred"


def test_an_activity_substitute_the_policy_refuses_is_not_followed() -> None:
    # Loaded configurations refuse this at load; a configuration built otherwise is caught at use.
    lunch = decide(CONFIG, "acme", "anna", presence=Presence(activity="lunch"))
    assert (lunch.action, lunch.target) == ("ring", "")
    away = decide(CONFIG, "acme", "anna", presence=Presence(activity="away"))
    assert (away.action, away.target) == ("forward", OUTSIDE)
