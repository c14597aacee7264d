"""`vipbx phone start` (the last step of deploy.sh) with a configuration it cannot serve: one
clear line and exit status 1, never a traceback, and a running phone is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import phone as phone_cli
from cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def files(tmp_path: Path, carrier: str) -> list[str]:
    platform = (EXAMPLES / "platform.yaml").read_text(encoding="utf-8")
    platform = platform.replace("host: 127.0.0.4", f"host: {carrier}").replace("match: [127.0.0.4]", f"match: [{carrier}]")
    (tmp_path / "platform.yaml").write_text(platform, encoding="utf-8")
    return [str(tmp_path / "platform.yaml"), str(EXAMPLES / "acme.yaml")]


def no_phone_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(ctx: object) -> None:
        raise AssertionError("the phone instance was reached before the settings were checked")

    monkeypatch.setattr(phone_cli, "_phone", refuse)


@pytest.mark.parametrize("args, says", [
    ([], "the devices (--phones-ip) and the carrier (its trunk's host) are both 127.0.0.3"),
    (["--rtp", "forty-41"], "--rtp 'forty-41' is not a port range such as 40000-40999"),
])
def test_phone_start_that_cannot_work_says_why_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str) -> None:
    no_phone_touched(monkeypatch)
    result = CliRunner().invoke(main, ["--home", str(tmp_path / "home"), "phone", "start", *args,
                                       *files(tmp_path, "127.0.0.3")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's error exit, not an exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: test phone not started: ") and says in lines[0], lines
