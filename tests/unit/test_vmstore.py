"""vmstore: the app_voicemail spool format, safe numbering, renumbering, greetings, the recording
journal with orphan delivery, MWI refresh and the `vipbx voicemail` commands."""

from __future__ import annotations

import asyncio
import errno
import os
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from asterisk_conf.validate import load_config
from base.ami import AmiSettings
from callstate import CallStateService
from cli.voicemail import voicemail
from vmstore import (
    Envelope,
    FolderVisit,
    MessageNotFound,
    RecordingJournal,
    VoicemailStore,
    deliver_orphans,
    deliver_recording,
    new_msg_id,
    refresh_mwi,
)
from vmstore import store as store_module
from vmstore import wav as wavfile
from vmstore.envelope import callerid_merge, callerid_parse, origdate

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CTX, BOX = "acme", "358401110001"
T0 = datetime(2024, 3, 5, 14, 3, 4, tzinfo=UTC)


def make_wav(path: Path, seconds: float, *, tag: int = 0, header_bytes: int | None = None) -> Path:
    """8 kHz 16-bit mono PCM, as Asterisk records; `tag` makes the audio unique; `header_bytes`
    forces the `data` size in the header (a recording cut off by a crash says 0)."""
    frames = int(8000 * seconds)
    data = struct.pack("<H", tag & 0xFFFF) * frames
    declared = len(data) if header_bytes is None else header_bytes
    header = (b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVE"
              + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
              + b"data" + struct.pack("<I", declared))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + data)
    return path


def envelope(**changes: Any) -> Envelope:
    base = Envelope(caller_number="+358501234567", caller_name="Matti Meikäläinen", called_number="+358401110001",
                    orig_time=T0, duration=12, msg_id=new_msg_id())
    return replace(base, **changes)


@pytest.fixture
def store(tmp_path: Path) -> VoicemailStore:
    return VoicemailStore(tmp_path / "spool")


# --- the envelope, as app_voicemail writes and reads it ------------------------------------

APP_VOICEMAIL_TXT = """;
; Message Information file
;
[message]
origmailbox=358401110001
context=vipbx-call-user
exten=s
rdnis=+358401110001
priority=17
callerchan=PJSIP/carrier-00000001
callerid="Matti Meikäläinen" <+358501234567>
origdate=Tue Mar  5 02:03:04 PM UTC 2024
origtime=1709647384
category=
msg_id=1709647384-00000000
flag=
duration=12
"""


def test_envelope_text_is_app_voicemails_format_byte_for_byte() -> None:
    e = envelope(msg_id="1709647384-00000000", caller_channel="PJSIP/carrier-00000001",
                 context="vipbx-call-user", exten="s", priority=17, origmailbox="358401110001")
    assert e.to_text() == APP_VOICEMAIL_TXT
    assert Envelope.from_text(APP_VOICEMAIL_TXT) == e


def test_origdate_matches_c_strftime() -> None:
    # app_voicemail: ast_strftime("%a %b %e %r UTC %Y") in UTC; the C locale is Python's default.
    for ts in (0, 1709647384, 1709596800, 1709640000, 1735689599):
        when = datetime.fromtimestamp(ts, UTC)
        assert origdate(when) == time.strftime("%a %b %e %r UTC %Y", time.gmtime(ts))


def test_envelope_reads_what_app_voicemail_writes_for_unknown_callers_and_older_files() -> None:
    text = APP_VOICEMAIL_TXT.replace("rdnis=+358401110001", "rdnis=unknown").replace(
        'callerid="Matti Meikäläinen" <+358501234567>', "callerid=Unknown").replace(
        "context=vipbx-call-user\n", "context=vipbx-call-user\nmacrocontext=\n")
    e = Envelope.from_text(text)
    assert (e.caller_name, e.caller_number) == (None, None)
    assert e.called_number == "+358401110001"  # not redirected: the mailbox's own number
    assert e.orig_time == T0 and e.duration == 12


def test_awkward_caller_names_survive_asterisks_config_parser() -> None:
    for name in ('Ann "the boss"', "semi;colon", "back\\slash;", ">arrow", "line\nbreak"):
        written = envelope(caller_name=name).to_text()
        assert written.count("\n") == APP_VOICEMAIL_TXT.count("\n")
        assert Envelope.from_text(written).caller_name == name.replace("\n", " ")
    assert callerid_merge(None, "+35850") == "+35850"
    assert callerid_merge("Only Name", None) == "Only Name"
    assert callerid_merge(None, None) == "Unknown"
    assert callerid_merge("X", '+358<50>"; evil') == '"X" <+35850evil>'
    assert callerid_parse("+358501234567") == (None, "+358501234567")
    assert callerid_parse("Firm Oy <0955512345>") == ("Firm Oy", "0955512345")


def test_damaged_envelope_still_lists() -> None:
    e = Envelope.from_text("garbage\n[message]\norigtime=x\n", fallback_time=T0)
    assert e.orig_time == T0 and e.msg_id == "" and e.duration == 0


def test_msg_ids_are_unique_and_shaped_like_app_voicemails() -> None:
    ids = {new_msg_id() for _ in range(1000)}
    assert len(ids) == 1000
    epoch, counter, _ = next(iter(ids)).split("-")
    assert abs(int(epoch) - time.time()) < 5 and len(counter) == 8


# --- adding, listing, counting -----------------------------------------------------------

def test_add_moves_audio_in_and_writes_the_envelope(store: VoicemailStore, tmp_path: Path) -> None:
    audio = make_wav(tmp_path / "rec" / "a.wav", 2, tag=7)
    content = audio.read_bytes()
    message = store.add(CTX, BOX, audio, envelope())
    inbox = tmp_path / "spool" / "voicemail" / CTX / BOX / "INBOX"
    assert message.wav == inbox / "msg0000.wav" and message.wav.read_bytes() == content
    assert not audio.exists()
    assert (message.folder, message.number, message.mailbox, message.context) == ("INBOX", 0, BOX, CTX)
    assert message.envelope.origmailbox == BOX
    assert (inbox / "msg0000.txt").read_text() == message.envelope.to_text()
    assert store.list(CTX, BOX) == [message]
    assert store.counts(CTX, BOX) == (1, 0)
    assert sorted(p.name for p in inbox.iterdir()) == ["msg0000.txt", "msg0000.wav"]  # no litter
    # Voicemail is private: group-shared with Asterisk, nobody else.
    for path in (inbox, inbox.parent, inbox.parent / "Old", inbox.parent.parent):
        assert path.stat().st_mode & 0o777 == 0o770, path
    for path in (message.wav, message.txt, inbox.parent / ".vipbx.lock"):
        assert path.stat().st_mode & 0o777 == 0o660, path


def test_missing_mailbox_reads_as_empty_and_creates_nothing(store: VoicemailStore, tmp_path: Path) -> None:
    assert store.list(CTX, BOX) == [] and store.list(CTX, BOX, "Old") == []
    assert store.counts(CTX, BOX) == (0, 0)
    assert store.greeting(CTX, BOX) is None
    assert store.find(CTX, BOX, "nope") is None
    store.delete_greeting(CTX, BOX)
    assert not (tmp_path / "spool").exists()


def test_names_cannot_leave_the_spool(store: VoicemailStore) -> None:
    for context, mailbox in (("..", BOX), (CTX, "../x"), (CTX, ""), ("a/b", BOX), (CTX, ".hidden")):
        with pytest.raises(ValueError):
            store.mailbox_dir(context, mailbox)


def test_add_across_file_systems_copies_then_removes_the_source(store: VoicemailStore, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    audio = make_wav(tmp_path / "rec" / "a.wav", 1.5, tag=3)
    content = audio.read_bytes()
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        if Path(src) == audio:  # as across bind mounts: same device, still EXDEV
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(store_module.os, "rename", rename)
    message = store.add(CTX, BOX, audio, envelope())
    assert message.wav.read_bytes() == content and not audio.exists()
    assert [p.name for p in message.wav.parent.iterdir() if p.name.startswith(".in-")] == []


def test_a_failed_add_leaves_the_recording_where_it_was(store: VoicemailStore, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    audio = make_wav(tmp_path / "rec" / "a.wav", 1.5)
    real_rename = os.rename

    def rename(src: Any, dst: Any) -> None:
        if str(dst).endswith(".txt"):
            raise OSError(errno.EIO, "disk trouble")
        real_rename(src, dst)

    monkeypatch.setattr(store_module.os, "rename", rename)
    with pytest.raises(OSError):
        store.add(CTX, BOX, audio, envelope())
    assert audio.exists() and store.counts(CTX, BOX) == (0, 0)
    assert os.listdir(store.mailbox_dir(CTX, BOX) / "INBOX") == []


def _add_many(store: VoicemailStore, audios: list[Path]) -> list[str]:
    barrier = threading.Barrier(len(audios))

    def one(audio: Path) -> str:
        msg_id = f"{audio.stem}-{new_msg_id()}"
        barrier.wait()
        store.add(CTX, BOX, audio, envelope(msg_id=msg_id))
        return msg_id

    with ThreadPoolExecutor(len(audios)) as pool:
        return list(pool.map(one, audios))


def _assert_all_there(store: VoicemailStore, tags: dict[str, int], count: int) -> None:
    messages = store.list(CTX, BOX)
    assert [m.number for m in messages] == list(range(count))  # distinct, contiguous
    assert sorted(m.envelope.msg_id for m in messages) == sorted(tags)  # none lost, none doubled
    for message in messages:  # each envelope sits with its own audio
        sample = message.wav.read_bytes()[44:46]
        assert struct.unpack("<H", sample)[0] == tags[message.envelope.msg_id]
    inbox = store.mailbox_dir(CTX, BOX) / "INBOX"
    assert sorted(os.listdir(inbox)) == sorted(f"msg{n:04d}.{x}" for n in range(count) for x in ("txt", "wav"))


def test_twenty_concurrent_adds_from_threads(store: VoicemailStore, tmp_path: Path) -> None:
    audios = [make_wav(tmp_path / "rec" / f"r{i}.wav", 0.2, tag=i + 1) for i in range(20)]
    ids = _add_many(store, audios)
    _assert_all_there(store, {msg_id: i + 1 for i, msg_id in enumerate(ids)}, 20)


_WORKER = """
import sys, threading, time
from datetime import datetime, timezone
from pathlib import Path
from vmstore import Envelope, VoicemailStore
spool, start, *audios = sys.argv[1:]
store = VoicemailStore(Path(spool))
while time.time() < float(start):
    time.sleep(0.001)
def one(audio):
    e = Envelope("+35850", None, "+358401110001", datetime.now(timezone.utc), 1, Path(audio).stem)
    store.add("acme", "358401110001", Path(audio), e)
threads = [threading.Thread(target=one, args=(a,)) for a in audios]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_twenty_concurrent_adds_from_several_processes_and_threads(store: VoicemailStore, tmp_path: Path) -> None:
    audios = [make_wav(tmp_path / "rec" / f"r{i}.wav", 0.2, tag=i + 1) for i in range(20)]
    start = str(time.time() + 1.5)  # all processes begin together
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(store.spool_dir), start,
                                 *map(str, audios[i::5])], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
               for i in range(5)]
    assert [w.wait(timeout=60) for w in workers] == [0] * 5
    _assert_all_there(store, {f"r{i}": i + 1 for i in range(20)}, 20)


def test_add_waits_for_app_voicemails_folder_lock(store: VoicemailStore, tmp_path: Path) -> None:
    store.add(CTX, BOX, make_wav(tmp_path / "a.wav", 1), envelope())
    inbox = store.mailbox_dir(CTX, BOX) / "INBOX"
    lock = inbox / ".lock"
    lock.touch()  # app_voicemail is numbering a message right now
    released = threading.Timer(0.3, lock.unlink)
    released.start()
    began = time.monotonic()
    message = store.add(CTX, BOX, make_wav(tmp_path / "b.wav", 1), envelope())
    assert time.monotonic() - began >= 0.25 and message.number == 1
    assert not lock.exists()
    # A lock its holder never removed (a crash) is broken, or app_voicemail would drop messages.
    lock.touch()
    os.utime(lock, (time.time() - 60, time.time() - 60))
    assert store.add(CTX, BOX, make_wav(tmp_path / "c.wav", 1), envelope()).number == 2
    assert not lock.exists()


def test_an_add_cut_short_between_its_renames_is_completed(store: VoicemailStore, tmp_path: Path) -> None:
    first = store.add(CTX, BOX, make_wav(tmp_path / "a.wav", 1), envelope())
    inbox = first.wav.parent
    # The crash: audio renamed in as msg0001, envelope still hidden.
    make_wav(inbox / "msg0001.wav", 1, tag=9)
    crashed = envelope(msg_id="crashed")
    (inbox / ".msg0001.txt.tmp").write_text(crashed.to_text())
    assert store.counts(CTX, BOX) == (1, 0)  # app_voicemail does not count it yet
    later = store.add(CTX, BOX, make_wav(tmp_path / "b.wav", 1), envelope(msg_id="later"))
    assert later.number == 2
    assert [m.envelope.msg_id for m in store.list(CTX, BOX)] == [first.envelope.msg_id, "crashed", "later"]
    # Audio with neither envelope is no message: the next number reuses its name.
    make_wav(inbox / "msg0003.wav", 1, tag=5)
    assert store.add(CTX, BOX, make_wav(tmp_path / "c.wav", 1, tag=6), envelope()).number == 3
    assert struct.unpack("<H", (inbox / "msg0003.wav").read_bytes()[44:46])[0] == 6


# --- heard and deleted: folders stay contiguous ------------------------------------------

def _ids(store: VoicemailStore, folder: str) -> list[str]:
    messages = store.list(CTX, BOX, folder)
    assert [m.number for m in messages] == list(range(len(messages)))
    for m in messages:
        assert m.wav.exists() and m.txt.exists()
    return [m.envelope.msg_id for m in messages]


def test_mark_old_and_delete_keep_both_folders_contiguous(store: VoicemailStore, tmp_path: Path) -> None:
    for name in "abcde":
        store.add(CTX, BOX, make_wav(tmp_path / f"{name}.wav", 1), envelope(msg_id=name))
    inbox = store.list(CTX, BOX)
    heard = store.mark_old(inbox[1])
    assert (heard.folder, heard.number, heard.envelope.msg_id) == ("Old", 0, "b")
    assert heard.wav.exists() and heard.txt.exists()
    assert _ids(store, "INBOX") == ["a", "c", "d", "e"] and _ids(store, "Old") == ["b"]
    store.mark_old(store.list(CTX, BOX)[0])
    assert _ids(store, "INBOX") == ["c", "d", "e"] and _ids(store, "Old") == ["b", "a"]
    assert store.counts(CTX, BOX) == (3, 2)

    # A Message listed before the numbers shifted still means the same message.
    stale_e = inbox[4]
    assert stale_e.number == 4
    store.delete(stale_e)
    assert _ids(store, "INBOX") == ["c", "d"]
    store.delete(store.list(CTX, BOX, "Old")[0])
    assert _ids(store, "Old") == ["a"]
    store.delete(stale_e)  # already gone: nothing happens
    assert _ids(store, "INBOX") == ["c", "d"]
    with pytest.raises(MessageNotFound):
        store.mark_old(stale_e)
    # Marking a message that another session already moved returns where it is now.
    c = store.list(CTX, BOX)[0]
    moved = store.mark_old(c)
    assert store.mark_old(c) == moved and _ids(store, "Old") == ["a", "c"]
    assert store.find(CTX, BOX, "d") == store.list(CTX, BOX)[0]


# --- greetings -----------------------------------------------------------------------------

def test_greeting_is_stored_as_unavail_and_busy(store: VoicemailStore, tmp_path: Path) -> None:
    box = store.mailbox_dir(CTX, BOX)
    box.mkdir(parents=True)
    for own in ("greet.wav", "temp.wav", "unavail.gsm"):
        (box / own).write_bytes(b"theirs")
    audio = make_wav(tmp_path / "g.wav", 2, tag=4)
    content = audio.read_bytes()
    store.set_greeting(CTX, BOX, audio)
    assert not audio.exists()
    assert (box / "unavail.wav").read_bytes() == content == (box / "busy.wav").read_bytes()
    assert store.greeting(CTX, BOX) == box / "unavail.wav"
    assert not (box / "unavail.gsm").exists()  # a stale format would be played to gsm callers
    store.set_greeting(CTX, BOX, make_wav(tmp_path / "g2.wav", 1, tag=5))  # replaced
    assert (box / "busy.wav").read_bytes() == (box / "unavail.wav").read_bytes() != content
    store.delete_greeting(CTX, BOX)
    assert store.greeting(CTX, BOX) is None
    assert sorted(p.name for p in box.iterdir() if not p.name.startswith(".") and p.is_file()) == ["greet.wav", "temp.wav"]


def test_a_greeting_app_voicemail_recorded_is_found(store: VoicemailStore) -> None:
    box = store.mailbox_dir(CTX, BOX)
    box.mkdir(parents=True)
    (box / "busy.wav").write_bytes(b"x")
    assert store.greeting(CTX, BOX) == box / "busy.wav"


# --- WAV length and repair --------------------------------------------------------------------

def test_wav_duration_from_size_and_header_repair(tmp_path: Path) -> None:
    good = make_wav(tmp_path / "good.wav", 2.5)
    assert wavfile.duration(good) == 2.5 and not wavfile.repair_header(good)
    cut = make_wav(tmp_path / "cut.wav", 3, header_bytes=0)
    assert wavfile.duration(cut) == 3.0
    assert wavfile.repair_header(cut)
    import wave
    with wave.open(str(cut)) as w:
        assert w.getnframes() == 24000
    assert wavfile.duration(tmp_path / "missing.wav") == 0.0
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    assert wavfile.duration(tmp_path / "junk.wav") == 0.0 and not wavfile.repair_header(tmp_path / "junk.wav")


# --- the recording journal ------------------------------------------------------------------

def _meta(**changes: Any) -> dict[str, Any]:
    return {"tenant": "acme", "user": "anna.virtanen", "context": CTX, "mailbox": BOX,
            "caller_number": "+358501234567", "caller_name": "Matti", "called_number": "+358401110001",
            "channel": "PJSIP/carrier-0000002a", "started": T0.isoformat(), "language": "fi", **changes}


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_journal_begin_finish(tmp_path: Path) -> None:
    journal = RecordingJournal(tmp_path / "recording")
    written = journal.begin("vipbx/abc", _meta())
    sidecar = tmp_path / "recording" / "vipbx" / "abc.json"
    assert sidecar.exists() and written["name"] == "vipbx/abc" and written["msg_id"]
    assert journal.read("vipbx/abc") == written
    assert journal.audio("vipbx/abc") == tmp_path / "recording" / "vipbx" / "abc.wav"
    assert journal.finish("vipbx/abc") == written and not sidecar.exists()
    assert journal.finish("vipbx/abc") is None
    for bad in ("../x", "/abs", "a/../b", ""):
        with pytest.raises(ValueError):
            journal.begin(bad, _meta())


def test_a_restarted_app_adopts_the_recording_of_a_channel_by_its_id(store: VoicemailStore, tmp_path: Path) -> None:
    rec = tmp_path / "recording"
    before = RecordingJournal(rec)
    before.begin("vipbx/live", _meta(channel="PJSIP/carrier-00000001", channel_id="1700000000.1"))
    before.begin("vipbx/quiet", _meta(channel="PJSIP/carrier-00000001", channel_id="1690000000.9"))
    before.begin("vipbx/old-version", _meta(channel="PJSIP/carrier-00000003"))  # no channel_id
    for name in ("live", "quiet", "old-version"):
        make_wav(rec / "vipbx" / f"{name}.wav", 2)
    _age(rec / "vipbx" / "quiet.wav", 30)  # an older Asterisk run's call with the same channel name
    before.release("vipbx/live")  # stopped mid-recording

    after = RecordingJournal(rec)
    assert after.adopt("1700000000.7", "PJSIP/carrier-00000009") is None
    assert after.adopt("1700000000.1", "PJSIP/carrier-00000001") == "vipbx/live"
    assert after.adopt("1700000000.1", "PJSIP/carrier-00000001") is None  # once
    assert after.adopt("1700000000.3", "PJSIP/carrier-00000003") == "vipbx/old-version"  # by name, live
    _age(rec / "vipbx" / "live.wav", 30)  # the caller is done; the file went quiet
    # Adopted entries are not the scan's; the quiet one of the other run is.
    assert [p.name for p, _ in after.orphans(older_than=10)] == ["quiet.wav"]
    assert not after.claim_orphan("vipbx/live")
    message = deliver_recording(after, store, "vipbx/live")
    assert message is not None and store.counts(CTX, BOX) == (1, 0)
    assert after.adopt("1700000000.1", "PJSIP/carrier-00000001") is None
    assert after.closed_for("1700000000.1")["msg_id"] == message.envelope.msg_id


def test_the_scan_and_a_call_taken_up_never_both_deliver(store: VoicemailStore, tmp_path: Path) -> None:
    """The caller ended with # while no app ran: the start's scan delivers it; the call taken up
    afterwards finds it delivered (and is told so), never a second copy."""
    rec = tmp_path / "recording"
    RecordingJournal(rec).begin("vipbx/done", _meta(channel_id="1700000000.2"))
    make_wav(rec / "vipbx" / "done.wav", 2)
    _age(rec / "vipbx" / "done.wav", 30)
    after = RecordingJournal(rec)
    assert len(deliver_orphans(after, store, older_than=10)) == 1
    assert after.adopt("1700000000.2") is None
    assert after.closed_for("1700000000.2") is not None
    assert store.counts(CTX, BOX) == (1, 0)


def test_orphans_are_delivered_after_a_restart(store: VoicemailStore, tmp_path: Path) -> None:
    rec = tmp_path / "recording"
    before = RecordingJournal(rec)
    long_id = before.begin("vipbx/long", _meta())["msg_id"]
    before.begin("vipbx/short", _meta(caller_number="+358409999999"))
    before.begin("vipbx/busy", _meta())
    before.begin("vipbx/never", _meta())
    # Asterisk finished the files after the app died; a crash of Asterisk leaves a 0-size header.
    make_wav(rec / "vipbx" / "long.wav", 4, tag=8, header_bytes=0)
    make_wav(rec / "vipbx" / "short.wav", 0.5)
    make_wav(rec / "vipbx" / "busy.wav", 2)
    assert before.orphans(older_than=0) == []  # its own recordings are in progress, not orphans
    for name in ("long", "short"):
        _age(rec / "vipbx" / f"{name}.wav", 30)
    _age(rec / "vipbx" / "never.json", 30)

    after = RecordingJournal(rec)  # the restarted app
    assert sorted(p.name for p, _ in after.orphans(older_than=10)) == ["long.wav", "short.wav"]
    delivered = deliver_orphans(after, store, older_than=10)
    assert len(delivered) == 1
    message = delivered[0]
    assert (message.context, message.mailbox, message.folder) == (CTX, BOX, "INBOX")
    e = message.envelope
    assert (e.caller_number, e.caller_name, e.called_number) == ("+358501234567", "Matti", "+358401110001")
    assert (e.orig_time, e.duration, e.caller_channel) == (T0, 4, "PJSIP/carrier-0000002a")
    assert e.msg_id == long_id  # the id the sidecar promised: a second delivery is recognised
    assert wavfile.duration(message.wav) == 4.0
    import wave
    with wave.open(str(message.wav)) as w:  # the header now says what is there
        assert w.getnframes() == 32000
    assert sorted(p.name for p in (rec / "vipbx").iterdir()) == ["busy.json", "busy.wav"]  # short discarded, never dropped
    assert store.counts(CTX, BOX) == (1, 0)


def test_an_orphan_already_delivered_is_not_delivered_twice(store: VoicemailStore, tmp_path: Path) -> None:
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    meta = journal.begin("vipbx/dup", _meta())
    audio = make_wav(rec / "vipbx" / "dup.wav", 2)
    # A copy across file systems landed, then the app died before removing the source.
    store.add(CTX, BOX, make_wav(tmp_path / "copy.wav", 2), envelope(msg_id=meta["msg_id"]))
    _age(audio, 30)
    assert deliver_orphans(RecordingJournal(rec), store, older_than=10) == []
    assert store.counts(CTX, BOX) == (1, 0) and not audio.exists() and not journal.sidecar("vipbx/dup").exists()


class Crash(BaseException):
    """The process dies here."""


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("copied", [False, True], ids=["renamed-in", "copied-in"])
def test_a_delivery_repeated_after_a_crash_stores_nothing_twice(store: VoicemailStore, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch, copied: bool) -> None:
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    promised = journal.begin("vipbx/once", _meta())["msg_id"]
    audio = make_wav(rec / "vipbx" / "once.wav", 3)
    content = audio.read_bytes()

    def die(name: str) -> None:
        if copied:  # across file systems the source goes last: it is still there
            audio.write_bytes(content)
        raise Crash

    # The message is in the mailbox, then the app dies before it closes the journal entry.
    monkeypatch.setattr(journal, "finish", die)
    with pytest.raises(Crash):
        deliver_recording(journal, store, "vipbx/once")
    assert _files(rec) == ["vipbx/once.json", "vipbx/once.wav"] if copied else ["vipbx/once.json"]
    inbox = store.mailbox_dir(CTX, BOX) / "INBOX"
    assert _files(inbox) == ["msg0000.txt", "msg0000.wav"]

    restarted = RecordingJournal(rec)
    assert deliver_recording(restarted, store, "vipbx/once") is None
    assert _files(rec) == [] and _files(inbox) == ["msg0000.txt", "msg0000.wav"]
    assert [m.envelope.msg_id for m in store.list(CTX, BOX)] == [promised]


def test_the_orphan_scan_after_that_crash_stores_nothing_twice(store: VoicemailStore, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    journal.begin("vipbx/once", _meta())
    make_wav(rec / "vipbx" / "once.wav", 3)
    monkeypatch.setattr(journal, "finish", lambda name: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        deliver_recording(journal, store, "vipbx/once")
    _age(rec / "vipbx" / "once.json", 30)
    assert deliver_orphans(RecordingJournal(rec), store, older_than=10) == []
    assert _files(rec) == [] and store.counts(CTX, BOX) == (1, 0)


def test_entries_whose_recording_never_began_are_dropped(store: VoicemailStore, tmp_path: Path) -> None:
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    for name in ("none", "empty", "header"):
        journal.begin(f"vipbx/{name}", _meta())
    (rec / "vipbx" / "empty.wav").write_bytes(b"")
    make_wav(rec / "vipbx" / "header.wav", 0)  # Asterisk opened the file, then nothing came
    for path in (rec / "vipbx").iterdir():
        _age(path, 30)
    assert deliver_orphans(RecordingJournal(rec), store, older_than=10) == []
    assert _files(rec) == []
    assert not store.mailbox_dir(CTX, BOX).exists()


def test_a_bad_sidecar_is_logged_once_and_skipped(store: VoicemailStore, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    journal.begin("a-nobox", _meta(context=None, tenant=None))
    journal.begin("b-good", _meta())
    journal.begin("c-garbled", _meta())
    journal.begin("d-list", _meta())
    journal.begin("e-good", _meta(caller_number="+358409999999"))
    (rec / "c-garbled.json").write_text('{"context": "acme", "mailb', encoding="utf-8")
    (rec / "d-list.json").write_text("[1, 2]", encoding="utf-8")
    for name in ("a-nobox", "b-good", "c-garbled", "d-list", "e-good"):
        _age(make_wav(rec / f"{name}.wav", 2), 30)

    scan = RecordingJournal(rec)
    delivered = deliver_orphans(scan, store, older_than=10)
    assert sorted(m.envelope.caller_number for m in delivered) == ["+358409999999", "+358501234567"]
    assert store.counts(CTX, BOX) == (2, 0)
    bad = ["a-nobox", "c-garbled", "d-list"]
    assert _files(rec) == sorted(f"{n}.{ext}" for n in bad for ext in ("json", "wav"))
    reported = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert sorted(line.split()[1] for line in reported) == bad

    caplog.clear()
    assert deliver_orphans(scan, store, older_than=10) == []  # tried again, but not logged again
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
    assert len(_files(rec)) == 6


def test_a_recording_for_a_mailbox_refused_is_discarded(store: VoicemailStore, tmp_path: Path) -> None:
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    journal.begin("gone", _meta())
    make_wav(rec / "gone.wav", 2)
    assert deliver_recording(journal, store, "gone", accept=lambda meta: meta["mailbox"] != BOX) is None
    assert _files(rec) == [] and store.counts(CTX, BOX) == (0, 0)


# --- one caller's pass through a folder ------------------------------------------------------------

def _seed(store: VoicemailStore, tmp_path: Path, names: str) -> None:
    for name in names:
        store.add(CTX, BOX, make_wav(tmp_path / f"{name}.wav", 1), envelope(msg_id=name))


def _where(store: VoicemailStore) -> dict[str, tuple[str, int]]:
    return {m.envelope.msg_id: (m.folder, m.number)
            for folder in ("INBOX", "Old") for m in store.list(CTX, BOX, folder)}


class Reads:
    """Counts folder listings and searches by id: a visit lists once and then needs neither."""

    def __init__(self, store: VoicemailStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lists = self.scans = 0
        listing, scanning = store.list, store._find_id

        def counted_list(*args: Any) -> Any:
            self.lists += 1
            return listing(*args)

        def counted_scan(*args: Any) -> Any:
            self.scans += 1
            return scanning(*args)

        monkeypatch.setattr(store, "list", counted_list)
        monkeypatch.setattr(store, "_find_id", counted_scan)


def test_a_visit_reads_its_folder_once_and_keeps_the_numbering(store: VoicemailStore, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(store, tmp_path, "abcde")
    reads = Reads(store, monkeypatch)
    visit = FolderVisit(store, CTX, BOX, "INBOX")
    assert len(visit) == 5

    def listen(index: int) -> str:
        message = visit.message(index)
        assert message is not None and message.wav.exists()
        visit.heard(index)
        return message.envelope.msg_id

    assert listen(0) == "a"
    visit.leave(0)  # next
    assert listen(1) == "b"
    visit.delete(1)  # delete: the next one comes up at the same place
    assert listen(1) == "c"
    visit.leave(1)  # next
    assert listen(2) == "d"
    visit.leave(2)  # previous
    assert listen(1) == "c"  # heard already, now from Old
    assert visit.close()
    assert (reads.lists, reads.scans) == (1, 0)

    assert _where(store) == {"e": ("INBOX", 0), "a": ("Old", 0), "c": ("Old", 1), "d": ("Old", 2)}
    assert {m.envelope.msg_id: (m.folder, m.number) for m in visit.messages} == _where(store)
    assert all(m.wav.exists() for m in visit.messages)


def test_a_heard_message_moves_to_old_only_when_left(store: VoicemailStore, tmp_path: Path) -> None:
    _seed(store, tmp_path, "ab")
    visit = FolderVisit(store, CTX, BOX, "INBOX")
    visit.message(0)
    visit.heard(0)
    # Staying on it (replay, or the message menu): still new, nothing renumbered.
    assert _where(store) == {"a": ("INBOX", 0), "b": ("INBOX", 1)}
    visit.leave(1)  # never heard: stays new
    assert store.counts(CTX, BOX) == (2, 0)
    assert visit.close()  # the caller hung up on it
    assert _where(store) == {"b": ("INBOX", 0), "a": ("Old", 0)}
    untouched = FolderVisit(store, CTX, BOX, "INBOX")
    assert not untouched.close() and _where(store) == {"b": ("INBOX", 0), "a": ("Old", 0)}


def test_a_visit_follows_changes_made_elsewhere(store: VoicemailStore, tmp_path: Path) -> None:
    _seed(store, tmp_path, "abc")
    visit = FolderVisit(store, CTX, BOX, "INBOX")
    store.delete(store.list(CTX, BOX)[1])  # b, by another session
    store.mark_old(store.list(CTX, BOX)[1])  # c, heard in another session
    assert visit.message(1) is None and len(visit) == 2  # b left the visit; 1 now names c
    c = visit.message(1)
    assert c is not None and (c.folder, c.number, c.envelope.msg_id) == ("Old", 0, "c")
    visit.heard(0)
    visit.delete(1)
    assert visit.close()
    assert _where(store) == {"a": ("Old", 0)}


# --- MWI -----------------------------------------------------------------------------------------

@dataclass
class FakeAmi:
    """Enough of AMI for panoramisk: a banner, Login, and recorded actions."""

    actions: list[dict[str, str]]
    port: int = 0
    refuse: bool = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            fields = dict(line.split(": ", 1) for line in raw.decode().strip().split("\r\n") if ": " in line)
            self.actions.append(fields)
            ok = not (self.refuse and fields.get("Action") != "Login")
            answer = "Success" if ok else "Error"
            writer.write(f"Response: {answer}\r\nActionID: {fields.get('ActionID', '')}\r\nMessage: ok\r\n\r\n".encode())
            await writer.drain()
        writer.close()


async def test_refresh_mwi_sends_voicemailrefresh() -> None:
    fake = FakeAmi([])
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert await refresh_mwi(AmiSettings("127.0.0.1", port, "vipbx", "s3cret"), CTX, BOX)
        refresh = [a for a in fake.actions if a.get("Action") == "VoicemailRefresh"]
        assert [(a["Context"], a["Mailbox"]) for a in refresh] == [(CTX, BOX)]
        fake.refuse = True
        assert not await refresh_mwi(AmiSettings("127.0.0.1", port, "vipbx", "s3cret"), CTX, BOX)


async def test_refresh_mwi_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    assert not await refresh_mwi(AmiSettings("127.0.0.1", port, "vipbx", "x"), CTX, BOX, timeout=2)
    assert "MWI refresh for 358401110001@acme failed" in caplog.text


# --- `vipbx voicemail` -------------------------------------------------------------------------

@pytest.fixture
def cli_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


CLI_FILES = [str(EXAMPLES / name) for name in ("platform.yaml", "acme.yaml", "borealis.yaml")]


def run(home: Path, *args: str) -> Any:
    runner = CliRunner()
    return runner.invoke(voicemail, [*args, *CLI_FILES], env={"VIPBX_HOME": str(home), "VIPBX_CONFIG": None},
                         catch_exceptions=False)


def test_cli_list_play_delete(cli_home: Path, tmp_path: Path) -> None:
    store = VoicemailStore(cli_home / "pbx" / "spool")
    store.add(CTX, BOX, make_wav(tmp_path / "a.wav", 75, tag=1), envelope(msg_id="a", duration=75))
    store.add(CTX, BOX, make_wav(tmp_path / "b.wav", 3, tag=2), envelope(msg_id="b", duration=3, caller_name=None))
    store.mark_old(store.list(CTX, BOX)[0])

    listed = run(cli_home, "list", "anna.virtanen@acme")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == "anna.virtanen@acme (+358401110001): 1 new, 1 old"
    assert lines[1].split() == ["FOLDER", "#", "FROM", "WHEN", "LENGTH"]
    assert lines[2].split()[:3] == ["INBOX", "1", "+358501234567"] and lines[2].endswith("0:03")
    assert lines[3].split()[:4] == ["Old", "1", '"Matti', 'Meikäläinen"'] and lines[3].endswith("1:15")
    assert run(cli_home, "list", "+358401110001").stdout == listed.stdout
    assert run(cli_home, "list", "+358401110002").stdout.splitlines()[1] == "no messages"
    assert "no user" in run(cli_home, "list", "nobody@acme").output
    assert run(cli_home, "list", "+358000").exit_code == 1

    out = tmp_path / "export.wav"
    played = run(cli_home, "play", "anna.virtanen@acme", "1", "--folder", "Old", "--out", str(out))
    assert played.exit_code == 0, played.output
    assert out.read_bytes() == store.list(CTX, BOX, "Old")[0].wav.read_bytes()
    assert store.counts(CTX, BOX) == (1, 1)  # exporting is not hearing
    assert run(cli_home, "play", "anna.virtanen@acme", "1", "--out", "-").stdout_bytes[:4] == b"RIFF"
    assert run(cli_home, "play", "anna.virtanen@acme", "2", "--out", str(out)).exit_code == 1
    assert run(cli_home, "play", "anna.virtanen@acme", "1").exit_code == 2  # neither --out nor --play

    deleted = run(cli_home, "delete", "anna.virtanen@acme", "1")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted INBOX message 1" in deleted.stdout and "Asterisk not reachable" in deleted.output
    assert store.counts(CTX, BOX) == (0, 1) and _ids(store, "Old") == ["a"]


class FakeSettingsError(Exception):
    pass


class FakeStorageError(Exception):
    pass


def test_cli_settings(cli_home: Path) -> None:
    shown = run(cli_home, "settings", "+358401110003")
    assert shown.exit_code == 0, shown.output
    assert "voicemail settings of sara.lindqvist@acme (+358401110003):" in shown.stdout
    assert "notify by SMS:        yes" in shown.stdout and "press 1 connects to:  off" in shown.stdout

    changed = run(cli_home, "settings", "sara.lindqvist@acme", "--email", "--no-sms", "--press1", "+358955512345",
                  "--always-pin")
    assert changed.exit_code == 0, changed.output
    assert "press 1 connects to:  +358955512345" in changed.stdout and "notify by e-mail:     yes" in changed.stdout
    service = CallStateService(cli_home / "state.sqlite3", load_config(CLI_FILES))
    try:
        rows = service.audit("acme", "sara.lindqvist")
        assert {(e.field, e.new) for e in rows} == {
            ("voicemail.notify_email", "true"), ("voicemail.notify_sms", "false"),
            ("voicemail.press1_number", "+358955512345"), ("voicemail.always_ask_pin", "true")}
        assert all(e.source == "cli" and e.actor.startswith("operator") for e in rows)

        assert run(cli_home, "settings", "sara.lindqvist@acme", "--no-press1").exit_code == 0
        assert service.voicemail_settings("acme", "sara.lindqvist").press1_number is None
    finally:
        service.close()
    bad = run(cli_home, "settings", "sara.lindqvist@acme", "--press1", "+1bad")
    assert bad.exit_code == 1 and "must be an E.164 number" in bad.output
    assert run(cli_home, "settings", "sara.lindqvist@acme", "--press1", "+358955512345", "--no-press1").exit_code == 2


def test_cli_settings_with_the_real_call_state_service(cli_home: Path) -> None:
    pytest.importorskip("callstate")
    shown = run(cli_home, "settings", "mikko.korhonen@acme")
    assert shown.exit_code == 0, shown.output
    assert "notify by SMS:        yes" in shown.stdout and "notify by e-mail:     no" in shown.stdout
    changed = run(cli_home, "settings", "+358401110002", "--email", "--activity", "--press1", "+358955512345")
    assert changed.exit_code == 0, changed.output
    again = run(cli_home, "settings", "mikko.korhonen@acme").stdout  # kept in VIPBX_HOME/state.sqlite3
    assert "notify by e-mail:     yes" in again and "activity in greeting: yes" in again
    assert "press 1 connects to:  +358955512345" in again and (cli_home / "state.sqlite3").exists()
    bad = run(cli_home, "settings", "mikko.korhonen@acme", "--press1", "12345")
    assert bad.exit_code == 1 and "Error:" in bad.output
    no_voicemail = run(cli_home, "settings", "workshop@acme", "--email")
    assert no_voicemail.exit_code == 1 and "No voicemail" in no_voicemail.output


# --- data safety on the live path -----------------------------------------------------------

def test_a_live_delivery_after_an_asterisk_crash_repairs_the_header(store: VoicemailStore, tmp_path: Path) -> None:
    """Asterisk died mid-message: the call ends and the app delivers at once (not as an orphan);
    the file's header still claims no audio, and the message must play all that was said."""
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    journal.begin("vipbx/cut", _meta())
    make_wav(rec / "vipbx" / "cut.wav", 3, tag=9, header_bytes=0)
    message = deliver_recording(journal, store, "vipbx/cut")
    assert message is not None and message.envelope.duration == 3
    import wave
    with wave.open(str(message.wav)) as w:
        assert w.getnframes() == 24000


def test_recorded_audio_is_on_disk_before_its_name_is_in_the_mailbox(store: VoicemailStore, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    audio = make_wav(tmp_path / "rec" / "a.wav", 2)
    inode = audio.stat().st_ino
    events: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        events.append({inode: "fsync-audio", audio.parent.stat().st_ino: "fsync-source-dir"}.get(st.st_ino, "fsync"))
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        events.append("rename-audio" if Path(src) == audio else "rename")
        real_rename(src, dst)

    monkeypatch.setattr(store_module.os, "fsync", fsync)
    monkeypatch.setattr(store_module.os, "rename", rename)
    store.add(CTX, BOX, audio, envelope())
    assert "rename-audio" in events and "fsync-audio" in events
    assert events.index("fsync-audio") < events.index("rename-audio")
    assert "fsync-source-dir" in events[events.index("rename-audio"):]  # the name it left, too


def test_a_failed_delivery_is_retried_by_the_next_scan(store: VoicemailStore, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rec = tmp_path / "recording"
    journal = RecordingJournal(rec)
    promised = journal.begin("vipbx/full", _meta())["msg_id"]
    audio = make_wav(rec / "vipbx" / "full.wav", 2)
    real_add = store.add

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "add", disk_full)
    with pytest.raises(OSError):
        deliver_recording(journal, store, "vipbx/full")
    assert audio.exists() and journal.sidecar("vipbx/full").exists()  # kept
    _age(audio, 30)
    assert deliver_orphans(journal, store, older_than=10) == []  # still full: kept again
    monkeypatch.setattr(store, "add", real_add)  # space is back
    [message] = deliver_orphans(journal, store, older_than=10)  # the same process, no restart
    assert message.envelope.msg_id == promised
    assert _files(rec) == [] and store.counts(CTX, BOX) == (1, 0)
