"""app_voicemail reads what vmstore writes: the PBX counts our messages, parses our envelopes and
takes our MWI refresh. Every message made here is deleted again, by msg_id."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from asterisk_conf.render import AMI_USER
from base.ami import AmiSettings
from vmstore import Envelope, VoicemailStore, new_msg_id, refresh_mwi
from vmstore.envelope import origdate

pytestmark = pytest.mark.asterisk

CTX, BOX = "acme", "358401110002"  # mikko.korhonen


def make_wav(path: Path, seconds: float) -> Path:
    data = b"\x00\x00" * int(8000 * seconds)
    header = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
              + b"data" + struct.pack("<I", len(data)))
    path.write_bytes(header + data)
    return path


def ami(pbx: Any) -> AmiSettings:
    listener = pbx.config.platform.ami
    return AmiSettings(listener.bind, listener.port, AMI_USER, pbx.secrets.get("ami"))


def new_messages(pbx: Any, mailbox: str) -> int:
    """NewMsg of `voicemail show users for acme`: Context, Mbox, User (name), Zone, NewMsg."""
    for line in pbx.cli(f"voicemail show users for {CTX}").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == CTX and fields[1] == mailbox:
            return int(fields[-1])
    raise AssertionError(f"mailbox {mailbox} not listed by app_voicemail")


@pytest.fixture
def made(pbx: Any) -> Iterator[list[str]]:
    """msg_ids a test stored: deleted afterwards, whatever the outcome."""
    ids: list[str] = []
    yield ids
    store = VoicemailStore(pbx.instance.spool_dir)
    for msg_id in ids:
        found = store.find(CTX, BOX, msg_id)
        if found is not None:
            store.delete(found)


async def test_app_voicemail_counts_and_reads_our_message(pbx: Any, made: list[str], tmp_path: Path) -> None:
    store = VoicemailStore(pbx.instance.spool_dir)
    before = new_messages(pbx, BOX)
    envelope = Envelope(caller_number="+358501234567", caller_name='M "x"',
                        called_number="+358401110002", orig_time=datetime.now(UTC), duration=2,
                        msg_id=new_msg_id(), caller_channel="PJSIP/carrier-00000001")
    message = store.add(CTX, BOX, make_wav(tmp_path / "m.wav", 2), envelope)
    made.append(envelope.msg_id)
    assert await refresh_mwi(ami(pbx), CTX, BOX)
    assert new_messages(pbx, BOX) == before + 1 == store.counts(CTX, BOX)[0]

    # app_voicemail's own parser on our envelope. Columns: Folder, Caller ID (raw, quoted as
    # Asterisk quotes it), Date (origdate), Duration, Flag, ID.
    shown = pbx.cli(f"voicemail show mailbox {BOX} {CTX}")
    line = next((row for row in shown.splitlines() if row.rstrip().endswith(envelope.msg_id)), None)
    assert line is not None, shown
    assert line.startswith("INBOX ") and '"M \\"x\\"" <+358501234567>' in line, line
    assert f" {origdate(envelope.orig_time)}  2 " in line, line

    old = store.mark_old(message)
    assert await refresh_mwi(ami(pbx), CTX, BOX)
    assert new_messages(pbx, BOX) == before
    store.delete(old)
    assert store.find(CTX, BOX, envelope.msg_id) is None


async def test_app_voicemail_reads_a_message_whose_caller_name_has_line_separators(
        pbx: Any, made: list[str], tmp_path: Path) -> None:
    """A name with every kind of line break, NUL, '=' and ';': app_voicemail's own parser still
    finds the message's msg_id, date and duration in the envelope we wrote, and so do we."""
    store = VoicemailStore(pbx.instance.spool_dir)
    name = "Eve\u2028[message]\u2029msg_id=x\x85;--\rflag=Urgent\n\v\f\x00" + "ä" * 200
    envelope = Envelope(caller_number="+358501234567", caller_name=name,
                        called_number="+358401110002", orig_time=datetime.now(UTC), duration=3,
                        msg_id=new_msg_id(), caller_channel="PJSIP/carrier\u2028-00000001")
    store.add(CTX, BOX, make_wav(tmp_path / "m.wav", 3), envelope)
    made.append(envelope.msg_id)
    shown = pbx.cli(f"voicemail show mailbox {BOX} {CTX}")
    line = next((row for row in shown.splitlines() if row.rstrip().endswith(envelope.msg_id)), None)
    assert line is not None, shown
    # The caller id column is cut to its width; the flag column stays empty.
    assert line.startswith('INBOX    "Eve [message] msg_id=x ;-- flag ') and "Urgent" not in line, line
    assert f" {origdate(envelope.orig_time)}  3 " in line, line
    # And our own reader finds it by msg_id, with the caller's number.
    found = store.find(CTX, BOX, envelope.msg_id)
    assert found is not None and found.envelope.caller_number == "+358501234567"
