"""Backup and restore, proven by ear: a message left through a real call is backed up while the
PBX and the service run, restored into a fresh, empty home (every file byte for byte, the call
state row for row), lost from the live home, restored there from the archive, and heard again
when its owner calls the voicemail number.

`vipbx backup` and `vipbx restore` run as operators run them (a subprocess each, clitool.py), on
the session PBX's home with YAML equal to the running configuration. Here the fresh home's files
are compared with the archive and the live home's, and the live home, restored over from the same
archive, plays the message; a fresh home heard from its own PBX is in test_serve.py. What the
caller hears is the test phone's own audio: the message is a tone of a pitch no prompt has.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import sqlite3
import tarfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from clitool import Vipbx
from support import Person, Rig, eventually
from test_voicemail import VOICEMAIL, leave_message, write_platform_yaml

from base.model import Config
from base.paths import Paths
from testphone.driver import Call
from testphone.media import _ULAW
from vmstore import VoicemailStore

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support",)  # the `rig` fixture

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
TONE = 700  # Hz: the message, told apart from every spoken prompt by its pitch
CALLER = "201"  # short: its digits are said before the message
MESSAGE_SECONDS = 2.5


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


def mailbox_files(spool: Path) -> dict[str, bytes]:
    box = spool / "voicemail" / ANNA.tenant / ANNA.box
    return {p.relative_to(box).as_posix(): p.read_bytes() for p in sorted(box.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def rows(db_file: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(db_file)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%'")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}  # names from the file


def archived_database(archive: Path, folder: Path) -> Path:
    with tarfile.open(archive, "r:gz") as tar:
        data = tar.extractfile("callstate/state.sqlite3").read()  # type: ignore[union-attr]
    path = folder / "archived.sqlite3"
    path.write_bytes(data)
    return path


def said_number(prompts: list[str]) -> str:
    """The caller number said before a message ("vm-message-from", "plus", "digit-3", ...)."""
    words = prompts[prompts.index("vm-message-from") + 1:]
    words = list(itertools.dropwhile(lambda w: w == "plus", words))
    return "".join(w.removeprefix("digit-") for w in itertools.takewhile(lambda w: w.startswith("digit-"), words))


def heard_pitch(call: Call, start: float, end: float) -> float:
    """Dominant frequency (zero crossings) of what the phone heard between two loop times."""
    assert call.media is not None
    samples = [_ULAW[b] for p in call.media.packets if start <= p.arrival <= end and not p.silent
               for b in p.payload]
    if len(samples) < 4000:  # under half a second: not the message
        return 0.0
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / 8000)


@pytest.fixture
def yaml_files(tmp_path: Path, e2e_config: Config) -> list[str]:
    folder = tmp_path / "yaml"
    folder.mkdir()
    return [str(f) for f in write_platform_yaml(folder, e2e_config)]


@pytest.fixture
def annas_box(rig: Rig) -> Any:
    """Anna's mailbox empty before and after."""
    box = Paths(rig.pbx.home).spool / "voicemail" / ANNA.tenant / ANNA.box
    shutil.rmtree(box, ignore_errors=True)
    yield box
    shutil.rmtree(box, ignore_errors=True)


async def test_a_message_left_by_a_call_is_heard_again_after_backup_and_restore(
        rig: Rig, annas_box: Path, yaml_files: list[str], tmp_path: Path) -> None:
    began = time.monotonic()
    spool = Paths(rig.pbx.home).spool
    store = VoicemailStore(spool)
    obs, me = rig.observer, ANNA.number

    # A caller's call is diverted to Anna's voicemail and leaves a message.
    await leave_message(rig.phone, obs, CALLER, diverted=ANNA, seconds=MESSAGE_SECONDS, skip_greeting=True,
                        frequency=TONE)
    inbox = await eventually(lambda: store.list(ANNA.tenant, ANNA.box, "INBOX"), 10, "the message stored")
    msg_id = inbox[0].envelope.msg_id
    left = mailbox_files(spool)
    assert sorted(left) == ["INBOX/msg0000.txt", "INBOX/msg0000.wav"]

    # Backed up while the PBX and the service run.
    archive = tmp_path / "vipbx-backup.tar.gz"
    operator = Vipbx(rig.pbx.home)
    made = await asyncio.to_thread(operator, "backup", *yaml_files, "--out", str(archive))
    assert made.stderr == "" and len(made.stdout.splitlines()) == 1, made
    assert made.stdout.startswith(f"backup {archive}: ")
    assert archive.stat().st_mode & 0o777 == 0o600

    # Restored into a fresh, empty home: the same files, the same call state.
    fresh = tmp_path / "fresh-home"
    restored = await asyncio.to_thread(Vipbx(fresh), "restore", *yaml_files, "--from", str(archive))
    assert restored.stdout.startswith(f"restored {archive} "), restored
    assert "message lights" not in restored.stdout + restored.stderr  # no Asterisk runs there
    assert mailbox_files(Paths(fresh).spool) == left
    assert rows(Paths(fresh).state_db) == rows(archived_database(archive, tmp_path))
    assert VoicemailStore(Paths(fresh).spool).find(ANNA.tenant, ANNA.box, msg_id) is not None

    # A restore over a home that has messages is refused without --force, in one line.
    refused = await asyncio.to_thread(operator, "restore", *yaml_files, "--from", str(archive), check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"Error: {rig.pbx.home} already has voicemail (1 message in 1 mailbox): --force replaces it"]
    # The message is lost from the live home, then restored from the archive (--force: the
    # service may have logged the call in the call state meanwhile).
    shutil.rmtree(annas_box)
    assert store.find(ANNA.tenant, ANNA.box, msg_id) is None
    forced = await asyncio.to_thread(operator, "restore", *yaml_files, "--from", str(archive), "--force")
    # The running Asterisk recounts the mailboxes and tells the phones (app_voicemail's answer).
    assert forced.stdout.splitlines()[-1] == "message lights refreshed", forced
    assert mailbox_files(spool) == left
    owner = spool.stat()
    for path in (annas_box, *annas_box.rglob("*")):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (owner.st_uid, owner.st_gid), path  # Asterisk's account
        assert st.st_mode & 0o7777 == (0o2770 if path.is_dir() else 0o660), path

    # Anna calls her voicemail from her own number and hears the message.
    since = obs.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=me)
    await obs.wait_prompt(me, "vm-main-menu", since=since)
    assert obs.prompts(me, since) == ["vm-you-have", "vm-new-1", "vm-main-menu"]
    mark = obs.mark()
    await call.send_dtmf("1", wait=False)
    playing = await obs.wait_prompt(me, "msg:INBOX/msg0000", since=mark)
    assert said_number(obs.prompts(me, mark)) == CALLER
    await asyncio.sleep(MESSAGE_SECONDS - 0.5)
    heard = heard_pitch(call, playing.at + 0.2, playing.at + MESSAGE_SECONDS - 0.6)
    assert heard == pytest.approx(TONE, rel=0.08), heard
    await call.send_dtmf("*", wait=False)
    await call.wait_hangup(10)
    assert call.hung_up_by == "far"
    print(f"\nbackup, restore and the calls took {time.monotonic() - began:.1f} s")
