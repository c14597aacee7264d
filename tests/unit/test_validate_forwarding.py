"""A tenant's `forwarding` (where its users may forward and transfer calls): the national default
without premium-rate ranges, explicit lists, and bad prefixes reported with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from yamlcase import find, problems, tenant, tenant_yaml

from base.model import PREMIUM_PREFIXES, Forwarding


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name "acme.yaml", not a temporary folder
    return tmp_path


# ---------------------------------------------------------------- defaults


def test_default_is_national_without_premium_rate() -> None:
    acme = tenant(tenant_yaml())
    assert acme.forwarding is None
    assert acme.forward_policy == Forwarding(allow=("+358",), deny=PREMIUM_PREFIXES["358"])
    assert acme.forward_policy.permits("+358501234567")
    assert not acme.forward_policy.permits("+358600123456")
    assert not acme.forward_policy.permits("+46701234567")


def test_default_of_another_country_has_no_deny_list() -> None:
    svea = tenant(tenant_yaml(country="46"))
    assert svea.country_code == "46"
    assert svea.forward_policy == Forwarding(allow=("+46",), deny=())
    assert svea.forward_policy.permits("+46701234567") and not svea.forward_policy.permits("+358501234567")


def test_forwarding_default_function() -> None:
    assert Forwarding.default("358").deny == PREMIUM_PREFIXES["358"]
    assert Forwarding.default("1") == Forwarding(allow=("+1",), deny=())


# ---------------------------------------------------------------- explicit lists


def test_explicit_lists() -> None:
    acme = tenant(tenant_yaml('forwarding:\n  allow: ["+358", "+46", "+4420"]\n  deny: ["+35860", "+4690"]\n'))
    assert acme.forwarding == Forwarding(allow=("+358", "+46", "+4420"), deny=("+35860", "+4690"))
    assert acme.forward_policy is acme.forwarding
    assert acme.forward_policy.permits("+46701234567")
    assert not acme.forward_policy.permits("+46901234567")  # deny wins over allow
    assert acme.forward_policy.permits("+358700123456")  # the default deny-list is replaced
    assert not acme.forward_policy.permits("+4430123456")


def test_allow_only_keeps_the_default_deny_list() -> None:
    acme = tenant(tenant_yaml('forwarding:\n  allow: ["+358", "+46"]\n'))
    assert acme.forwarding == Forwarding(allow=("+358", "+46"), deny=PREMIUM_PREFIXES["358"])


def test_deny_only_keeps_the_default_allow_list() -> None:
    acme = tenant(tenant_yaml('forwarding:\n  deny: ["+35840"]\n'))
    assert acme.forwarding == Forwarding(allow=("+358",), deny=("+35840",))


def test_explicit_empty_deny_list() -> None:
    acme = tenant(tenant_yaml("forwarding:\n  deny: []\n"))
    assert acme.forwarding == Forwarding(allow=("+358",), deny=())
    assert acme.forward_policy.permits("+358600123456")


def test_explicit_empty_allow_list_allows_nothing() -> None:
    acme = tenant(tenant_yaml("forwarding:\n  allow: []\n"))
    assert acme.forwarding is not None and acme.forwarding.allow == ()
    assert not acme.forward_policy.permits("+358501234567")


def test_deny_default_follows_the_country_code_whatever_the_key_order() -> None:
    text = tenant_yaml('forwarding:\n  allow: ["+46"]\n', country="46")
    assert tenant(text).forwarding == Forwarding(allow=("+46",), deny=())


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
def test_bad_prefixes_are_reported_with_line_and_key(key: str, value: str, words: tuple[str, ...]) -> None:
    found = problems(tenant_yaml(f'forwarding:\n  {key}:\n    - "+358"\n    - {value}\n'))
    find(found, 9, f"tenants[acme].forwarding.{key}[1]", *words)
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
    ('forwardings:\n  allow: ["+358"]\n', 6, "tenants[acme].forwardings", ("did you mean 'forwarding'",)),
])
def test_structure_problems(body: str, line: int, key: str, words: tuple[str, ...]) -> None:
    find(problems(tenant_yaml(body)), line, key, *words)
