"""`vipbx forward ...` and `vipbx callwaiting ...` with the real call-state service in VIPBX_HOME."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from clicase import shown
from click.testing import CliRunner, Result

from asterisk_conf.validate import load_config
from callstate import CallStateService, default_db_path
from cli.forward import callwaiting_group, forward_group
from cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = [str(EXAMPLES / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]
ANNA = "anna.virtanen@acme"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def run(group: click.Command, home: Path, *args: str) -> Result:
    return CliRunner().invoke(group, [*args, *FILES], env={"VIPBX_HOME": str(home), "VIPBX_CONFIG": None},
                              catch_exceptions=False)


def fwd(home: Path, *args: str) -> Result:
    return run(forward_group, home, *args)


def cw(home: Path, *args: str) -> Result:
    return run(callwaiting_group, home, *args)


def stored(home: Path) -> CallStateService:
    return CallStateService(default_db_path(home), load_config(FILES))


def audit(home: Path) -> list[Any]:
    with stored(home) as state:
        return list(reversed(state.audit()))


def test_show_defaults(home: Path) -> None:
    result = fwd(home, "show", ANNA)
    assert result.stdout.splitlines()[0] == "forwards of anna.virtanen@acme (+358401110001):"
    assert shown(result) == {"immediate (all calls)": "none", "when busy": "voicemail",
                             "no answer": "voicemail after 20 s", "unreachable": "voicemail",
                             "call waiting": "on"}
    assert shown(fwd(home, "show", "+358401110009")) == {  # workshop: "No voicemail"
        "immediate (all calls)": "none", "when busy": "none", "no answer": "none", "unreachable": "none",
        "call waiting": "on"}


def test_set_a_national_number(home: Path) -> None:
    result = fwd(home, "set", ANNA, "immediate", "050 123 4567")
    assert shown(result)["immediate (all calls)"] == "+358501234567"
    assert shown(fwd(home, "show", "+358401110001"))["immediate (all calls)"] == "+358501234567"
    [entry] = audit(home)
    assert (entry.user_id, entry.source, entry.field, entry.old, entry.new) == (
        "anna.virtanen", "cli", "forward.immediate", "none", "+358501234567")
    assert entry.actor.startswith("operator")


@pytest.mark.parametrize("kind", ["all", "no-answer", "BUSY", "unreachable"])
def test_kind_words(home: Path, kind: str) -> None:
    assert fwd(home, "set", ANNA, kind, "102").exit_code == 0
    assert "+358401110002" in fwd(home, "show", ANNA).stdout


@pytest.mark.parametrize(("destination", "words"), [
    ("+358201243100", "voicemail access number"),
    ("0201243200", "activity-change number"),
    ("0401110001", "own number"),
    ("+358923130000", "own number"),  # anna's switchboard number
    ("0600123456", "outside the numbers"),
    ("+46701234567", "outside the numbers"),
    ("12345", "not a phone number"),
])
def test_refused_number_exits_with_the_reason_and_changes_nothing(home: Path, destination: str,
                                                                   words: str) -> None:
    fwd(home, "set", ANNA, "busy", "102")
    before = fwd(home, "show", ANNA).stdout
    result = fwd(home, "set", ANNA, "busy", destination)
    assert result.exit_code == 1
    assert "Error:" in result.output and words in result.output
    assert fwd(home, "show", ANNA).stdout == before
    assert len(audit(home)) == 1


def test_refused_loop(home: Path) -> None:
    assert fwd(home, "set", ANNA, "immediate", "102").exit_code == 0
    result = fwd(home, "set", "mikko.korhonen@acme", "immediate", "101")
    assert result.exit_code == 1 and "back to mikko.korhonen" in result.output


def test_bad_kind_and_unknown_user(home: Path) -> None:
    bad = fwd(home, "set", ANNA, "sometimes", "102")
    assert bad.exit_code == 2 and "unknown forward" in bad.output
    assert fwd(home, "show", "nobody@acme").exit_code == 1
    assert fwd(home, "set", "+358409999999", "busy", "102").exit_code == 1
    assert audit(home) == []


def test_voicemail_for_a_no_voicemail_user_is_refused(home: Path) -> None:
    result = fwd(home, "set", "workshop@acme", "busy", "voicemail")
    assert result.exit_code == 1 and "No voicemail" in result.output


def test_clear(home: Path) -> None:
    fwd(home, "set", ANNA, "immediate", "0501234567")
    result = fwd(home, "clear", ANNA, "immediate")
    assert shown(result)["immediate (all calls)"] == "none"
    # Clearing a conditional forward means no forward at all, not back to voicemail.
    assert shown(fwd(home, "clear", ANNA, "busy"))["when busy"] == "none"
    assert shown(fwd(home, "set", ANNA, "busy", "voicemail"))["when busy"] == "voicemail"
    assert [(e.field, e.new) for e in audit(home)] == [
        ("forward.immediate", "+358501234567"), ("forward.immediate", "none"), ("forward.busy", "none"),
        ("forward.busy", "voicemail")]


def test_reset(home: Path) -> None:
    defaults = shown(fwd(home, "show", ANNA))
    fwd(home, "set", ANNA, "immediate", "0501234567")
    fwd(home, "set", ANNA, "no_answer", "102", "--delay", "40")
    cw(home, "off", ANNA)
    assert shown(fwd(home, "reset", ANNA)) == defaults
    assert shown(fwd(home, "show", ANNA)) == defaults
    assert fwd(home, "reset", "nobody@acme").exit_code == 1


def test_delay(home: Path) -> None:
    result = fwd(home, "set", ANNA, "no_answer", "0501234567", "--delay", "35")
    assert shown(result)["no answer"] == "+358501234567 after 35 s"
    assert shown(fwd(home, "show", ANNA))["no answer"] == "+358501234567 after 35 s"
    for bad in ("4", "121"):
        refused = fwd(home, "set", ANNA, "no_answer", "voicemail", "--delay", bad)
        assert refused.exit_code == 1 and "5 to 120" in refused.output
    wrong_kind = fwd(home, "set", ANNA, "busy", "voicemail", "--delay", "30")
    assert wrong_kind.exit_code == 1 and "no_answer" in wrong_kind.output
    assert fwd(home, "set", ANNA, "no_answer", "voicemail", "--delay", "ten").exit_code == 2
    assert shown(fwd(home, "show", ANNA))["no answer"] == "+358501234567 after 35 s"


def test_callwaiting_show_on_off(home: Path) -> None:
    label = "call waiting of anna.virtanen@acme (+358401110001)"
    assert cw(home, "show", ANNA).stdout == f"{label}: on\n"
    off = cw(home, "off", "+358401110001")
    assert off.exit_code == 0 and off.stdout == f"{label}: off\n"
    assert cw(home, "show", ANNA).stdout == f"{label}: off\n"
    assert shown(fwd(home, "show", ANNA))["call waiting"] == "off"
    assert cw(home, "on", ANNA).stdout == f"{label}: on\n"
    assert [(e.field, e.old, e.new, e.source) for e in audit(home)] == [
        ("call_waiting", "on", "off", "cli"), ("call_waiting", "off", "on", "cli")]
    assert cw(home, "off", "nobody@acme").exit_code == 1


def test_groups_are_part_of_vipbx(home: Path) -> None:
    runner = CliRunner()
    env = {"VIPBX_HOME": str(home), "VIPBX_CONFIG": None}
    result = runner.invoke(main, ["forward", "set", ANNA, "busy", "102", *FILES], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["callwaiting", "show", ANNA, *FILES], env=env, catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout.endswith(": on\n")
    assert (home / "state.sqlite3").exists()
    assert shown(fwd(home, "show", ANNA))["when busy"] == "+358401110002"


# ---------------------------------------------------------------------- vipbx voicemail pin


def pin(home: Path, *args: str) -> Result:
    from cli.voicemail import voicemail
    return run(voicemail, home, "pin", *args)


def test_pin_shows_the_lock_level_and_unlock_clears_it(home: Path) -> None:
    with stored(home) as state:
        for _ in range(5):
            state.check_pin("acme", "anna.virtanen", "000000", source="ivr", actor="+358451234567")
    before = shown(pin(home, ANNA))
    assert (before["wrong PINs"], before["lock level"]) == ("5", "1")
    assert before["locked"].startswith("20") and before["fallback wrong PINs"] == "?"  # never deployed
    result = pin(home, ANNA, "--unlock")
    assert result.exit_code == 0 and "unlocked" in result.stdout
    after = shown(pin(home, ANNA))
    assert (after["wrong PINs"], after["lock level"], after["locked"]) == ("0", "0", "no")
    [unlock] = [e for e in audit(home) if e.event == "pin_unlocked"]
    assert (unlock.source, unlock.actor.startswith("operator")) == ("cli", True)


def test_pin_shows_a_lock_held_until_unlocked(home: Path) -> None:
    from datetime import UTC, datetime, timedelta
    later = datetime.now(UTC) + timedelta(minutes=2)
    config = load_config(FILES)
    # One 1-minute step, then held: the second series (after the first lock ran out) holds.
    with CallStateService(default_db_path(home), config, lockout_minutes=1) as state:
        state.count_pin_failures("acme", "anna.virtanen", 5, actor="fallback", source="fallback")
    with CallStateService(default_db_path(home), config, lockout_minutes=1, clock=lambda: later) as state:
        state.count_pin_failures("acme", "anna.virtanen", 5, actor="fallback", source="fallback")
    listed = shown(pin(home, ANNA))
    assert (listed["lock level"], listed["locked"]) == ("2", "until unlocked")
