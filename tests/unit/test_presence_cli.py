"""`vipbx presence show|set` with the real call-state service in VIPBX_HOME (no Asterisk: the change
is stored and the command says that phones see it later), and `parse_until`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import pytest
from clicase import shown
from click.testing import CliRunner, Result

from asterisk_conf.validate import load_config
from callstate import CallStateService, Presence, default_db_path
from cli.main import main
from cli.presence import parse_until, presence_group

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = [str(EXAMPLES / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]
ANNA = "anna.virtanen@acme"
HELSINKI = ZoneInfo("Europe/Helsinki")
NOT_REACHABLE = "note: Asterisk not reachable: phones see the change when the service next starts"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(presence_group, [*args, *FILES], env={"VIPBX_HOME": str(home), "VIPBX_CONFIG": None},
                              catch_exceptions=False)


def stored(home: Path) -> CallStateService:
    return CallStateService(default_db_path(home), load_config(FILES))


def presence(home: Path, user_id: str = "anna.virtanen") -> Presence:
    with stored(home) as state:
        return state.presence("acme", user_id)


def audit(home: Path) -> list[Any]:
    with stored(home) as state:
        return list(reversed(state.audit()))


def test_show_defaults(home: Path) -> None:
    result = run(home, "show", ANNA)
    assert result.stdout.splitlines()[0] == "presence of anna.virtanen@acme (+358401110001):"
    assert shown(result) == {"activity": "available", "until": "-", "note": "-", "shown to phones as": "available",
                             "calls": "ring", "role": "Toimitusjohtaja"}
    assert shown(run(home, "show", "+358401110009"))["role"] == "-"  # the workshop has no role
    assert audit(home) == []


def test_set_and_show(home: Path) -> None:
    result = run(home, "set", ANNA, "meeting", "--note", "Room 3")
    assert shown(result) == {"activity": "meeting", "until": "-", "note": "Room 3", "shown to phones as": "dnd",
                             "calls": "voicemail", "role": "Toimitusjohtaja"}
    assert result.stderr.strip() == NOT_REACHABLE  # no Asterisk: said, but not an error
    assert presence(home) == Presence("meeting", None, "Room 3")
    assert shown(run(home, "show", "+358401110001"))["activity"] == "meeting"
    entries = audit(home)
    assert [(e.field, e.old, e.new, e.source) for e in entries] == [
        ("presence.activity", "available", "meeting", "cli"), ("presence.note", None, "Room 3", "cli")]
    assert all(e.actor.startswith("operator") for e in entries)


def test_set_with_until(home: Path) -> None:
    before = datetime.now(UTC)
    result = run(home, "set", ANNA, "vacation", "--until", "3d")
    got = presence(home)
    assert got.activity == "vacation" and got.until is not None
    assert before + timedelta(days=3) - timedelta(minutes=1) <= got.until <= datetime.now(UTC) + timedelta(days=3)
    until_line = shown(result)["until"]
    assert until_line == got.until.astimezone(HELSINKI).strftime("%Y-%m-%d %H:%M %Z")
    assert shown(result)["shown to phones as"] == "xa"


def test_note_is_kept_unless_given(home: Path) -> None:
    run(home, "set", ANNA, "busy", "--note", "call my mobile")
    assert shown(run(home, "set", ANNA, "lunch"))["note"] == "call my mobile"
    assert presence(home) == Presence("lunch", None, "call my mobile")
    assert shown(run(home, "set", ANNA, "available", "--note", ""))["note"] == "-"
    assert presence(home) == Presence()


@pytest.mark.parametrize(("args", "words"), [
    (("holiday",), "unknown activity 'holiday'"),
    (("Vacation",), "unknown activity"),
    (("available", "--until", "2h"), "Available has no end time"),
    (("vacation", "--until", "0m"), "already passed"),
    (("vacation", "--until", "500d"), "400 days"),
    (("vacation", "--note", "x" * 101), "at most 100"),
    (("vacation", "--note", "two\nlines"), "one line"),
])
def test_refused_change_exits_1_and_changes_nothing(home: Path, args: tuple[str, ...], words: str) -> None:
    run(home, "set", ANNA, "lunch", "--note", "kept")
    result = run(home, "set", ANNA, *args)
    assert result.exit_code == 1
    assert "Error:" in result.output and words in result.output
    assert presence(home) == Presence("lunch", None, "kept")
    assert len(audit(home)) == 2


def test_bad_until_is_a_usage_error(home: Path) -> None:
    result = run(home, "set", ANNA, "vacation", "--until", "next week")
    assert result.exit_code == 2 and "--until" in result.output and "HH:MM" in result.output
    assert presence(home) == Presence()


def test_unknown_user(home: Path) -> None:
    assert run(home, "show", "nobody@acme").exit_code == 1
    result = run(home, "set", "+358409999999", "busy")
    assert result.exit_code == 1 and "no user has the number" in result.output
    assert audit(home) == []


def test_group_is_part_of_vipbx() -> None:
    assert isinstance(main, click.Group) and main.commands.get("presence") is presence_group
    result = CliRunner().invoke(main, ["presence", "--help"])
    assert result.exit_code == 0 and "show" in result.output and "set" in result.output


# ---------------------------------------------------------------------- parse_until

NOW = datetime(2024, 10, 25, 15, 0, tzinfo=HELSINKI)  # a Friday; winter time starts on Sunday


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", NOW + timedelta(minutes=30)),
    ("2h", NOW + timedelta(hours=2)),
    ("3d", datetime(2024, 10, 28, 15, 0, tzinfo=HELSINKI)),  # the same clock time, after the switch
    ("90s", NOW + timedelta(seconds=90)),
    (" 2h ", NOW + timedelta(hours=2)),
    ("16:30", datetime(2024, 10, 25, 16, 30, tzinfo=HELSINKI)),
    ("14:30", datetime(2024, 10, 26, 14, 30, tzinfo=HELSINKI)),  # passed today: tomorrow
    ("15:00", datetime(2024, 10, 26, 15, 0, tzinfo=HELSINKI)),
    ("2024-10-28", datetime(2024, 10, 28, 0, 0, tzinfo=HELSINKI)),
    ("2024-10-28 08:30", datetime(2024, 10, 28, 8, 30, tzinfo=HELSINKI)),
    ("2024-10-20", datetime(2024, 10, 20, 0, 0, tzinfo=HELSINKI)),  # the past: the service refuses it
])
def test_parse_until(text: str, expected: datetime) -> None:
    got = parse_until(text, NOW)
    assert got == expected and got.tzinfo is not None
    assert got.astimezone(UTC) == expected.astimezone(UTC)


def test_parse_until_durations_are_elapsed_time_across_a_dst_change() -> None:
    # 03:30 summer time, half an hour before the clocks go back from 04:00 to 03:00.
    night = datetime(2024, 10, 27, 3, 30, tzinfo=HELSINKI)
    assert night.utcoffset() == timedelta(hours=3)
    got = parse_until("2h", night)
    assert got.astimezone(UTC) == datetime(2024, 10, 27, 2, 30, tzinfo=UTC)  # two real hours
    assert (got.hour, got.minute, got.utcoffset()) == (4, 30, timedelta(hours=2))
    # Days keep the clock time: 03:30 three days on, winter time.
    assert parse_until("3d", night).astimezone(UTC) == datetime(2024, 10, 30, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "25:00", "2h30m", "h", "-2h", "2w", "2024-13-01", "16.30",
                                  "99999999999d"])
def test_parse_until_refuses(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_until(text, NOW)
