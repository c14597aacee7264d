"""Secrets and personal data are closed to other accounts: rendered files, generations, secrets,
the outbox and its recording copies, the call-state database; and `vipbx diff` masks passwords and
PINs."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from asterisk_conf.masking import MASK, mask_diff
from base.secrets import SecretStore
from callstate.db import Database
from cli.main import main
from notify.notice import VoicemailNotice
from notify.outbox import Outbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = ("platform.yaml", "acme.yaml", "borealis.yaml")


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The laxest common umask: what the code sets, not the umask, must close the files."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def vipbx(home: Path, *args: str) -> object:
    return CliRunner().invoke(main, ["--home", str(home), *args], env={"VIPBX_CONFIG": None},
                              catch_exceptions=False)


@pytest.fixture
def yaml_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "yaml"
    folder.mkdir()
    for name in FILES:
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


def yaml_files(folder: Path) -> list[str]:
    return [str(folder / name) for name in FILES]


def test_render_out_is_owner_only(tmp_path: Path, yaml_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    (out / "pjsip.conf").write_text("old")
    os.chmod(out / "pjsip.conf", 0o644)
    result = vipbx(tmp_path / "home", "render", *yaml_files(yaml_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o700
    files = list(out.iterdir())
    assert {"pjsip.conf", "voicemail.conf", "ari.conf", "manager.conf"} <= {p.name for p in files}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert mode(tmp_path / "home" / "secrets.json") == 0o600


def test_deployed_generations_are_closed_to_others(tmp_path: Path, yaml_dir: Path) -> None:
    home = tmp_path / "home"
    result = vipbx(home, "deploy", "--no-reload", *yaml_files(yaml_dir))
    assert result.exit_code == 0, result.output
    live = (home / "etc" / "current").resolve()
    assert mode(live) & 0o007 == 0
    assert all(mode(p) & 0o007 == 0 for p in live.iterdir())


def test_diff_masks_pins_and_passwords(tmp_path: Path, yaml_dir: Path) -> None:
    home = tmp_path / "home"
    assert vipbx(home, "deploy", "--no-reload", *yaml_files(yaml_dir)).exit_code == 0
    acme = yaml_dir / "acme.yaml"
    # A changed PIN and a new device (its generated password appears in the diff).
    text = acme.read_text().replace('pin: "480264"', 'pin: "918273"', 1)
    assert "918273" in text
    acme.write_text(text)
    before = SecretStore(home / "secrets.json").values()
    result = vipbx(home, "diff", *yaml_files(yaml_dir))
    assert result.exit_code == 1, result.output
    shown = result.output
    assert "voicemail.conf" in shown
    assert "918273" not in shown and "480264" not in shown
    changed = [line for line in shown.splitlines() if line.startswith(("-", "+")) and "=>" in line]
    assert changed and all(f"=> {MASK}," in line for line in changed), changed
    for value in SecretStore(home / "secrets.json").values() + before:
        assert value not in shown


def test_mask_diff_masks_by_place_and_by_value() -> None:
    diff = (
        "--- live/pjsip.conf\n+++ new/pjsip.conf\n@@ -1 +1 @@\n-password=old-one\n+password = new-one\n"
        " secret=abc\n--- live/extensions.conf\n+++ new/extensions.conf\n"
        "+exten => 100,1,AGI(agi://h/route,generated-key-123)\n"
        "--- live/voicemail.conf\n+++ new/voicemail.conf\n@@ -5 +5 @@\n"
        "-358401110001 => 1234,Anna,,,tz=helsinki\n+358401110001 => 5678,Anna,,,tz=helsinki\n"
        " [general]\n maxmsg=200\n"
    )
    masked = mask_diff(diff, ["generated-key-123", "short"])
    assert "old-one" not in masked and "new-one" not in masked and "abc" not in masked
    assert "password=********" in masked and "password = ********" in masked
    assert "generated-key-123" not in masked and "exten => 100,1,AGI(agi://h/route,********)" in masked
    assert "1234" not in masked and "5678" not in masked
    assert "-358401110001 => ********,Anna" in masked and "maxmsg=200" in masked


def notice(wav: Path) -> VoicemailNotice:
    return VoicemailNotice("acme", "anna", "Anna", "+358401110001", "anna@example.com", "fi",
                           "+358451234567", datetime(2026, 1, 1, tzinfo=UTC), 5, "m1", wav)


def test_outbox_and_its_recording_copies_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"")
    os.chmod(path, 0o644)  # as an older version left it
    wav = tmp_path / "msg0000.wav"
    wav.write_bytes(b"RIFF")
    box = Outbox(path)
    try:
        box.add(notice(wav), ["sms", "email"], now=0.0)
    finally:
        box.close()
    assert mode(path) == 0o600
    for companion in (tmp_path / "outbox.sqlite3-wal", tmp_path / "outbox.sqlite3-shm"):
        if companion.exists():
            assert mode(companion) == 0o600
    files = tmp_path / "outbox-files"
    assert mode(files) == 0o700
    copies = list(files.iterdir())
    assert copies and all(mode(p) == 0o600 for p in copies)


def test_call_state_database_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    db = Database(path)
    db.close()
    assert mode(path) == 0o600


def test_a_secrets_file_left_open_is_closed_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"ami": "a-generated-secret-value"}')
    os.chmod(path, 0o644)
    assert SecretStore(path).get("ami") == "a-generated-secret-value"
    assert mode(path) == 0o600
