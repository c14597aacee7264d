"""A tenant's `activities` (its presence list): the defaults, an own list with presence states and
call routes, and problems reported with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from yamlcase import find, problems, tenant, tenant_yaml, write

from asterisk_conf.validate import load_config
from base.model import DEFAULT_ACTIVITIES, PRESENCE_STATES, Activity


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # problems name "acme.yaml", not a temporary folder
    return tmp_path


# Line 6: "activities:"; each item below takes two lines (key, digit) unless said otherwise.
AVAILABLE = '  - key: available\n    digit: "1"\n'


def activities(*items: str) -> str:
    return tenant_yaml("activities:\n" + "".join(items))


# ---------------------------------------------------------------- defaults


def test_defaults_when_absent() -> None:
    acme = tenant(tenant_yaml())
    assert acme.activities == DEFAULT_ACTIVITIES
    assert [(a.key, a.digit) for a in acme.activities] == [
        ("available", "1"), ("busy", "2"), ("meeting", "3"), ("lunch", "4"), ("off-work", "5"),
        ("vacation", "6"), ("sick", "7")]
    assert acme.activity("vacation") == Activity("vacation", "6", "xa", "voicemail")
    assert acme.activity("available") == Activity("available", "1", "available", "ring")
    assert acme.activity("holiday") is None


def test_defaults_when_empty() -> None:
    assert tenant(tenant_yaml("activities:\n")).activities == DEFAULT_ACTIVITIES


def test_default_activities_are_consistent() -> None:
    assert len({a.key for a in DEFAULT_ACTIVITIES}) == len({a.digit for a in DEFAULT_ACTIVITIES}) == 7
    assert all(a.presence in PRESENCE_STATES for a in DEFAULT_ACTIVITIES)
    assert all(a.route in ("ring", "voicemail") for a in DEFAULT_ACTIVITIES)


# ---------------------------------------------------------------- an own list


def test_own_list() -> None:
    acme = tenant(activities(
        AVAILABLE,
        '  - key: training\n    digit: "2"\n    presence: away\n    route: "+358501234567"\n',
        '  - key: vacation\n    digit: "9"\n    presence: xa\n    route: voicemail\n',
        '  - key: at-desk-2\n    digit: "3"\n    presence: dnd\n    route: ring\n',
    ))
    assert acme.activities == (
        Activity("available", "1", "available", "ring"),
        Activity("training", "2", "away", "+358501234567"),
        Activity("vacation", "9", "xa", "voicemail"),
        Activity("at-desk-2", "3", "dnd", "ring"),
    )
    assert acme.activity("training") is not None and acme.activity("busy") is None  # replaced, not added


def test_presence_and_route_default_to_available_and_ring() -> None:
    acme = tenant(activities(AVAILABLE, '  - key: errand\n    digit: "5"\n'))
    assert acme.activity("errand") == Activity("errand", "5", "available", "ring")


@pytest.mark.parametrize("state", PRESENCE_STATES)
def test_every_presence_state(state: str) -> None:
    acme = tenant(activities(AVAILABLE, f'  - key: other\n    digit: "2"\n    presence: {state}\n'))
    assert acme.activity("other") == Activity("other", "2", state, "ring")


def test_tenants_have_their_own_lists() -> None:
    text = activities(AVAILABLE, '  - key: training\n    digit: "2"\n')
    text += ("  - id: borealis\n    name: Borealis\n    domain: borealis.example\n    users:\n"
             "      - id: bo\n        name: Bo\n        number: \"+358501110001\"\n"
             "        extension: \"201\"\n        pin: \"480264\"\n")
    acme, borealis = load_config([write(text)]).tenants
    assert [a.key for a in acme.activities] == ["available", "training"]
    assert borealis.activities == DEFAULT_ACTIVITIES


# ---------------------------------------------------------------- problems


def test_duplicate_key_names_both_places() -> None:
    found = problems(activities(AVAILABLE, '  - key: lunch\n    digit: "2"\n', '  - key: lunch\n    digit: "3"\n'))
    problem = find(found, 11, "tenants[acme].activities[2].key", "'lunch' is already the key of another activity",
                   "acme.yaml:9", "activities[1].key")
    assert problem.message.count("acme.yaml") == 1
    assert len(found) == 1


def test_duplicate_digit() -> None:
    found = problems(activities(AVAILABLE, '  - key: lunch\n    digit: "1"\n'))
    find(found, 10, "tenants[acme].activities[1].digit", "'1' is already the digit of another activity",
         "acme.yaml:8")
    assert len(found) == 1


def test_available_must_be_listed() -> None:
    found = problems(activities('  - key: busy\n    digit: "2"\n', '  - key: lunch\n    digit: "3"\n'))
    find(found, 6, "tenants[acme].activities", "must include the activity 'available'")
    assert len(found) == 1


@pytest.mark.parametrize(("digit", "words"), [
    ('"0"', ("'0' is not allowed", "1-9")),
    ('"*"', ("'*' is not allowed",)),
    ('"#"', ("'#' is not allowed",)),
    ('"10"', ("'10' is not allowed",)),
    ('"a"', ("not allowed",)),
    ('""', ("not allowed",)),
    ("6", ("must be text", "quotes")),  # YAML reads an unquoted 6 as a number
])
def test_bad_digits(digit: str, words: tuple[str, ...]) -> None:
    found = problems(activities(AVAILABLE, f"  - key: lunch\n    digit: {digit}\n"))
    find(found, 10, "tenants[acme].activities[1].digit", *words)
    assert len(found) == 1


@pytest.mark.parametrize("key", ["Vacation", "1st", "on vacation", "a" * 32, "-x", "loma_aika", "lomä"])
def test_bad_keys(key: str) -> None:
    found = problems(activities(AVAILABLE, f'  - key: "{key}"\n    digit: "2"\n'))
    find(found, 9, "tenants[acme].activities[1].key", "is not allowed", "lowercase letters")
    assert len(found) == 1


def test_longest_key_is_allowed() -> None:
    acme = tenant(activities(AVAILABLE, f'  - key: {"a" * 31}\n    digit: "2"\n'))
    assert acme.activities[1].key == "a" * 31


@pytest.mark.parametrize(("value", "words"), [
    ("busy", ("must be one of available, away, xa, dnd, chat, unavailable", "'busy'")),
    ("DND", ("must be one of",)),
    ("true", ("must be one of", "quote it")),  # YAML reads an unquoted true as a boolean
])
def test_bad_presence(value: str, words: tuple[str, ...]) -> None:
    found = problems(activities(AVAILABLE, f'  - key: lunch\n    digit: "2"\n    presence: {value}\n'))
    find(found, 11, "tenants[acme].activities[1].presence", *words)
    assert len(found) == 1


@pytest.mark.parametrize(("value", "words"), [
    ("forward", ("must be ring, voicemail or a substitute E.164 number", "'forward'")),
    ("Voicemail", ("must be ring, voicemail",)),
    ('"0501234567"', ("must be ring, voicemail",)),  # national: not E.164
    ('"+358 50 123"', ("not an E.164 number",)),
    ('"+0501234567"', ("not an E.164 number",)),
    ("+358501234567", ("must be ring, voicemail",)),  # unquoted: YAML reads a number
])
def test_bad_route(value: str, words: tuple[str, ...]) -> None:
    found = problems(activities(AVAILABLE, f'  - key: lunch\n    digit: "2"\n    route: {value}\n'))
    find(found, 11, "tenants[acme].activities[1].route", *words)
    assert len(found) == 1


@pytest.mark.parametrize(("body", "line", "key", "words"), [
    ('  - digit: "2"\n', 9, "tenants[acme].activities[1].key", ("missing (required)",)),
    ("  - key: lunch\n", 9, "tenants[acme].activities[1].digit", ("missing (required)",)),
    ('  - key: lunch\n    digit: "2"\n    rout: ring\n', 11, "tenants[acme].activities[1].rout",
     ("unknown key", "did you mean 'route'")),
    ('  - key: lunch\n    digit: "2"\n    label: Lunch\n', 11, "tenants[acme].activities[1].label",
     ("unknown key", "key, digit, presence, route")),
    ("  - lunch\n", 9, "tenants[acme].activities[1]", ("must be a mapping",)),
])
def test_item_problems(body: str, line: int, key: str, words: tuple[str, ...]) -> None:
    found = problems(activities(AVAILABLE, body))
    find(found, line, key, *words)
    assert len(found) == 1


@pytest.mark.parametrize(("body", "line", "key", "words"), [
    ("activities: available\n", 6, "tenants[acme].activities", ("must be a list",)),
    ("activities:\n  key: available\n  digit: \"1\"\n", 6, "tenants[acme].activities", ("must be a list",)),
    ("activity:\n" + AVAILABLE, 6, "tenants[acme].activity", ("did you mean 'activities'",)),
])
def test_structure_problems(body: str, line: int, key: str, words: tuple[str, ...]) -> None:
    find(problems(tenant_yaml(body)), line, key, *words)


def test_every_problem_is_reported() -> None:
    found = problems(activities(
        '  - key: busy\n    digit: "0"\n',  # 7-8
        '  - key: busy\n    digit: "2"\n    presence: gone\n    route: elsewhere\n',  # 9-12
    ))
    find(found, 6, "tenants[acme].activities", "must include the activity 'available'")
    find(found, 8, "tenants[acme].activities[0].digit", "not allowed")
    find(found, 9, "tenants[acme].activities[1].key", "already the key")
    find(found, 11, "tenants[acme].activities[1].presence", "must be one of")
    find(found, 12, "tenants[acme].activities[1].route", "must be ring, voicemail")
    assert len(found) == 5


def test_an_empty_list_is_a_problem_not_the_defaults() -> None:
    find(problems(tenant_yaml("activities: []\n")), 6, "tenants[acme].activities", "must include", "available")


def test_available_always_rings() -> None:
    found = problems(activities('  - key: available\n    digit: "1"\n    route: voicemail\n'))
    find(found, 9, "tenants[acme].activities[0].route", "always rings")
