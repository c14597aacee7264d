"""A tenant's `outbound` (formerly `forwarding`): where its calls may go out, the built-in
premium-rate lists that always apply, the fraud throttle, and bad input reported with file, line
and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from yamlcase import find, problems, tenant, tenant_yaml

from base.outbound import OutboundPolicy


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name "acme.yaml", not a temporary folder
    return tmp_path


# ---------------------------------------------------------------- defaults


def test_default_is_national_without_premium_rate() -> None:
    acme = tenant(tenant_yaml())
    assert acme.outbound is None
    assert acme.outbound_policy == OutboundPolicy.default("358", 1)
    assert acme.outbound_policy.permits("+358501234567")
    assert not acme.outbound_policy.permits("+358600123456")
    assert not acme.outbound_policy.permits("+358700123456")
    assert not acme.outbound_policy.permits("+46701234567")


def test_default_of_sweden_denies_its_premium_rate() -> None:
    svea = tenant(tenant_yaml(country="46"))
    assert svea.outbound_policy.permits("+46701234567")
    assert not svea.outbound_policy.permits("+46900123456")  # was allowed before the +46 list
    assert not svea.outbound_policy.permits("+358501234567")


def test_default_throttle_grows_with_the_users() -> None:
    assert OutboundPolicy.default("358", 1).max_calls == 10
    assert OutboundPolicy.default("358", 1).max_calls_per_minute == 30
    assert OutboundPolicy.default("358", 400).max_calls == 400
    assert OutboundPolicy.default("358", 400).max_calls_per_minute == 800


def test_a_country_without_a_built_in_list_must_give_its_own() -> None:
    found = problems(tenant_yaml(country="33"))
    find(found, 5, "tenants[acme].country_code", "outbound: is required", "country code 33")
    assert len(found) == 1
    found = problems(tenant_yaml('outbound:\n  allow: ["+33"]\n', country="33"))
    find(found, 6, "tenants[acme].outbound.deny", "no built-in list", "country code 33")
    france = tenant(tenant_yaml('outbound:\n  deny: ["+3389"]\n', country="33"))
    assert france.outbound_policy.permits("+33612345678")
    assert not france.outbound_policy.permits("+33891234567")


# ---------------------------------------------------------------- explicit lists


def test_explicit_lists_add_to_the_built_in_deny_lists() -> None:
    acme = tenant(tenant_yaml('outbound:\n  allow: ["+358", "+46", "+4420"]\n  deny: ["+35840"]\n'
                              "  max_calls: 3\n  max_calls_per_minute: 7\n"))
    assert acme.outbound == OutboundPolicy(allow=("+358", "+46", "+4420"), deny=("+35840",),
                                           max_calls=3, max_calls_per_minute=7)
    assert acme.outbound_policy is acme.outbound
    assert acme.outbound_policy.permits("+46701234567")
    assert not acme.outbound_policy.permits("+46900123456")  # Sweden's list applies to a Finnish tenant
    assert not acme.outbound_policy.permits("+358401234567")  # the tenant's own deny
    assert not acme.outbound_policy.permits("+358700123456")  # the built-in list is never replaced
    assert not acme.outbound_policy.permits("+4430123456")


def test_forwarding_is_the_older_name_with_the_lists_only() -> None:
    acme = tenant(tenant_yaml('forwarding:\n  allow: ["+358", "+46"]\n'))
    assert acme.outbound == OutboundPolicy(allow=("+358", "+46"), deny=())
    assert not acme.outbound_policy.permits("+358600123456")
    find(problems(tenant_yaml("forwarding:\n  max_calls: 3\n")), 7, "tenants[acme].forwarding.max_calls",
         "unknown key")


def test_outbound_and_forwarding_together_is_an_error() -> None:
    found = problems(tenant_yaml('outbound:\n  allow: ["+358"]\nforwarding:\n  allow: ["+46"]\n'))
    find(found, 8, "tenants[acme].forwarding", "either outbound: or its older name forwarding:")


def test_explicit_empty_allow_list_allows_nothing() -> None:
    acme = tenant(tenant_yaml("outbound:\n  allow: []\n"))
    assert acme.outbound is not None and acme.outbound.allow == ()
    assert not acme.outbound_policy.permits("+358501234567")


@pytest.mark.parametrize(("value", "words"), [
    ("0", ("from 1 to 10000",)), ("10001", ("from 1 to 10000",)), ('"5"', ("whole number",)),
    ("true", ("whole number",)),
])
@pytest.mark.parametrize("key", ["max_calls", "max_calls_per_minute"])
def test_bad_limits_are_reported_with_line_and_key(key: str, value: str, words: tuple[str, ...]) -> None:
    find(problems(tenant_yaml(f"outbound:\n  {key}: {value}\n")), 7, f"tenants[acme].outbound.{key}", *words)


def test_an_activity_substitute_must_pass_the_policy() -> None:
    body = ("activities:\n"
            "  - {key: available, digit: \"1\"}\n"
            "  - {key: lunch, digit: \"4\", route: \"+358600123456\"}\n"
            "  - {key: sick, digit: \"7\", route: \"+358401110001\"}\n")  # a colleague: fine
    found = problems(tenant_yaml(body))
    find(found, 8, "tenants[acme].activities[1].route", "+358600123456", "outside the numbers")
    assert len(found) == 1


# ---------------------------------------------------------------- problems


@pytest.mark.parametrize(("value", "words"), [
    ('"358"', ("'358'", "not an E.164 prefix")),
    ('"+35a8"', ("not an E.164 prefix",)),
    ('"+0358"', ("not an E.164 prefix",)),
    ('"+"', ("not an E.164 prefix",)),
    ('"+3581234567890123"', ("not an E.164 prefix",)),  # 16 digits
    ('"+358 40"', ("not an E.164 prefix",)),
    ("+358", ("must be text", "quotes")),  # YAML reads an unquoted +358 as a number
    ("358", ("must be text", "quotes")),
    ("true", ("must be text",)),
])
@pytest.mark.parametrize("key", ["allow", "deny"])
@pytest.mark.parametrize("section", ["outbound", "forwarding"])
def test_bad_prefixes_are_reported_with_line_and_key(section: str, key: str, value: str,
                                                     words: tuple[str, ...]) -> None:
    found = problems(tenant_yaml(f'{section}:\n  {key}:\n    - "+358"\n    - {value}\n'))
    find(found, 9, f"tenants[acme].{section}.{key}[1]", *words)
    assert len(found) == 1


def test_every_bad_prefix_is_reported() -> None:
    found = problems(tenant_yaml('forwarding:\n  allow: ["358", "+46"]\n  deny:\n    - "+x"\n    - 4690\n'))
    find(found, 7, "tenants[acme].forwarding.allow[0]", "not an E.164 prefix")
    find(found, 9, "tenants[acme].forwarding.deny[0]", "not an E.164 prefix")
    find(found, 10, "tenants[acme].forwarding.deny[1]", "quotes")
    assert len(found) == 3


@pytest.mark.parametrize(("body", "line", "key", "words"), [
    ('forwarding:\n  allow: ["+358"]\n  alow: ["+46"]\n', 8, "tenants[acme].forwarding.alow",
     ("unknown key", "did you mean 'allow'")),
    ('forwarding:\n  permit: ["+46"]\n', 7, "tenants[acme].forwarding.permit", ("unknown key", "allow, deny")),
    ('forwarding: ["+358"]\n', 6, "tenants[acme].forwarding", ("must be a mapping",)),
    ('forwarding:\n  allow: "+358"\n', 7, "tenants[acme].forwarding.allow", ("must be a list",)),
    ('outbond:\n  allow: ["+358"]\n', 6, "tenants[acme].outbond", ("did you mean 'outbound'",)),
])
def test_structure_problems(body: str, line: int, key: str, words: tuple[str, ...]) -> None:
    find(problems(tenant_yaml(body)), line, key, *words)
