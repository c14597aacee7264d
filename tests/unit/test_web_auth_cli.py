"""`vipbx web show|logout|unlock|unlock-address|locks|code` with the real call-state service in VIPBX_HOME."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from clicase import shown
from click.testing import CliRunner, Result

from asterisk_conf.validate import load_config
from callstate import CallStateService, default_db_path
from cli import web as web_cli
from cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = [str(EXAMPLES / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]


def run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--home", str(home), "web", *args, *FILES], env={"VIPBX_CONFIG": None})


def stored(home: Path) -> CallStateService:
    return CallStateService(default_db_path(home), load_config(FILES))


class RecordingSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, text: str) -> None:
        self.sent.append((to, text))

    async def aclose(self) -> None:
        pass


def test_show_logout_and_unlock(tmp_path: Path) -> None:
    home = tmp_path
    with stored(home) as state:
        for _ in range(2):
            state.web_accounts.open_session("acme", "anna.virtanen", address="198.51.100.7",
                                            idle=timedelta(minutes=30), max_age=timedelta(hours=1), actor="test")
        for _ in range(6):
            state.web_logins.claim_login("acme", "anna.virtanen", "198.51.100.7", actor="test")
    out = shown(run(home, "show", "fi0401110001@acme.example"))
    assert out["user name"] == "fi0401110001@acme.example" and out["sessions"] == "2"
    assert out["password"].startswith("not yet") and out["locked"] != "no"
    assert "user     acme/anna.virtanen" in run(home, "locks").stdout
    assert run(home, "logout", "anna.virtanen@acme").stdout.strip().endswith("2 session(s) ended")
    assert run(home, "unlock", "+358401110001").stdout.strip().endswith("unlocked")
    with stored(home) as state:
        assert not state.web_accounts.sessions_of("acme", "anna.virtanen")
        assert not state.web_logins.user_lock("acme", "anna.virtanen").locked
        sources = {(e.event, e.source) for e in state.audit("acme", "anna.virtanen")}
        assert {("sessions_ended", "cli"), ("login_unlocked", "cli")} <= sources
    assert run(home, "locks").stdout.strip() == "no login is locked"
    assert run(home, "unlock-address", "198.51.100.7").stdout.strip() == "198.51.100.7: unlocked"  # its count
    assert run(home, "unlock-address", "198.51.100.7").stdout.strip() == "198.51.100.7: was not locked"
    assert run(home, "show", "nobody@acme").exit_code != 0


def test_code_is_sent_by_sms_and_needs_a_gateway(tmp_path: Path, monkeypatch: Any) -> None:
    home = tmp_path
    failed = run(home, "code", "anna.virtanen@acme")
    assert failed.exit_code == 1 and "no SMS gateway" in failed.output  # the examples configure none
    sms = RecordingSms()
    monkeypatch.setattr(web_cli, "build_gateways", lambda config, secret: (sms, None))
    for _ in range(5):  # an operator is not rate limited
        result = run(home, "code", "anna.virtanen@acme")
        assert result.exit_code == 0 and "code sent by sms" in result.output
    assert len(sms.sent) == 5 and sms.sent[0][0] == "+358401110001"
    with stored(home) as state:
        assert state.web_logins.pending_code("acme", "anna.virtanen") is not None
        sent = [e for e in state.audit("acme", "anna.virtanen") if e.event == "code_sent"]
        assert len(sent) == 5 and sent[0].source == "cli" and sent[0].actor.startswith("operator")
