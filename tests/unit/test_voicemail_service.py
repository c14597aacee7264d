"""The voicemail service, the handlers' one way to voicemail data: recording and delivering a
message, a pass through a folder (hang-up included), and no spool, lock or database work on the
event loop."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from people import PIN, user

from ari_app.voicemail.services import VoicemailService
from base.model import Config, Platform, Tenant, TenantUser
from callstate import CallStateService
from notify import VoicemailNotice
from vmstore import Envelope, VoicemailStore
from vmstore import store as store_module

ANNA = user("anna.virtanen", "+358401110001", "101")
ACME = Tenant(id="acme", name="Acme", domain="acme.example", users=(ANNA,))
CONFIG = Config(platform=Platform(), tenants=(ACME,))
CTX, BOX = "acme", ANNA.mailbox


def make_wav(path: Path, seconds: float) -> Path:
    frames = int(8000 * seconds)
    header = (b"RIFF" + (36 + 2 * frames).to_bytes(4, "little") + b"WAVEfmt "
              + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
              + (8000).to_bytes(4, "little") + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little")
              + (16).to_bytes(2, "little") + b"data" + (2 * frames).to_bytes(4, "little"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + b"\0\1" * frames)
    return path


class Notices:
    def __init__(self) -> None:
        self.queued: list[tuple[VoicemailNotice, bool, bool]] = []

    async def notify(self, notice: VoicemailNotice, *, sms: bool, email: bool) -> None:
        self.queued.append((notice, sms, email))


class Rig:
    def __init__(self, tmp_path: Path, state: CallStateService) -> None:
        self.store = VoicemailStore(tmp_path / "spool")
        self.recordings = tmp_path / "spool" / "recording"
        self.notices = Notices()
        self.service = VoicemailService(CONFIG, self.store, state, self.notices, None, self.recordings)
        self.mailbox = TenantUser(ACME, ANNA)
        self.tmp = tmp_path

    def seed(self, names: str) -> None:
        for name in names:
            envelope = Envelope(caller_number="+358501234567", caller_name=None, called_number=ANNA.number,
                                orig_time=datetime(2024, 3, 5, tzinfo=UTC), duration=1, msg_id=name)
            self.store.add(CTX, BOX, make_wav(self.tmp / f"{name}.wav", 1), envelope)

    def where(self) -> dict[str, tuple[str, int]]:
        return {m.envelope.msg_id: (m.folder, m.number)
                for folder in ("INBOX", "Old") for m in self.store.list(CTX, BOX, folder)}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG) as service:
        yield service


@pytest.fixture
def rig(tmp_path: Path, state: CallStateService) -> Rig:
    return Rig(tmp_path, state)


# --- leaving a message ---------------------------------------------------------------------------

async def test_a_message_keeps_the_msg_id_its_journal_entry_promised(rig: Rig) -> None:
    name = await rig.service.start_message(rig.mailbox, caller_number="+358501234567", caller_name="Matti",
                                           channel="PJSIP/carrier-00000001")
    sidecar = rig.recordings / f"{name}.json"
    promised = json.loads(sidecar.read_text())["msg_id"]
    make_wav(rig.recordings / f"{name}.wav", 2)  # what Asterisk records

    message = await rig.service.finish_message(name)
    assert message is not None and message.envelope.msg_id == promised
    assert [m.envelope.msg_id for m in rig.store.list(CTX, BOX)] == [promised]
    assert sorted(p.name for p in rig.recordings.rglob("*") if p.is_file()) == []
    # The default settings notify by SMS: the notice is queued with the message.
    [(notice, sms, email)] = rig.notices.queued
    assert (notice.msg_id, notice.user_id, notice.wav, sms, email) == (promised, ANNA.id, message.wav, True, False)


async def test_a_recording_under_a_second_is_no_message(rig: Rig) -> None:
    name = await rig.service.start_message(rig.mailbox, caller_number="", caller_name="", channel="")
    make_wav(rig.recordings / f"{name}.wav", 0.4)
    assert await rig.service.finish_message(name) is None
    assert rig.store.counts(CTX, BOX) == (0, 0) and rig.notices.queued == []
    assert [p for p in rig.recordings.rglob("*") if p.is_file()] == []


# --- listening ----------------------------------------------------------------------------------

async def test_leaving_messages_moves_the_heard_ones_and_deleting_keeps_the_numbering(rig: Rig) -> None:
    rig.seed("abcd")
    service = rig.service
    visit = await service.open_folder(rig.mailbox, "INBOX")
    assert len(visit) == 4
    first = await service.message_at(visit, 0)
    assert first is not None and service.message_sound(first) == f"sound:{first.wav.with_suffix('')}"
    service.mark_heard(visit, 0)
    assert rig.where()["a"] == ("INBOX", 0)  # still on it: not moved yet
    await service.leave_message(visit, 0)
    assert rig.where()["a"] == ("Old", 0)
    second = await service.message_at(visit, 1)
    assert second is not None and (second.envelope.msg_id, second.number) == ("b", 0)
    service.mark_heard(visit, 1)
    await service.delete_message(visit, 1)
    third = await service.message_at(visit, 1)  # the next one, where the deleted one was
    assert third is not None and third.envelope.msg_id == "c" and third.wav.exists()
    service.mark_heard(visit, 1)
    await service.close_folder(visit)  # back to the main menu
    assert rig.where() == {"d": ("INBOX", 0), "a": ("Old", 0), "c": ("Old", 1)}


# --- the event loop stays free --------------------------------------------------------------------

async def test_a_locked_mailbox_is_waited_for_off_the_event_loop(rig: Rig) -> None:
    rig.seed("a")
    visit = await rig.service.open_folder(rig.mailbox, "INBOX")
    # Another process holds the mailbox lock.
    fd = os.open(rig.store.mailbox_dir(CTX, BOX) / ".vipbx.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        deleting = asyncio.create_task(rig.service.delete_message(visit, 0))
        for _ in range(20):  # the loop goes round while the delete waits for the lock
            await asyncio.sleep(0)
        assert not deleting.done()
    finally:
        os.close(fd)
    await deleting
    assert rig.where() == {}


async def test_spool_and_call_state_work_runs_in_worker_threads(rig: Rig, state: CallStateService,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rig.seed("ab")
    loop_thread = threading.current_thread()
    on_loop: list[str] = []

    def watch(owner: Any, attr: str) -> None:
        real = getattr(owner, attr)

        def watched(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is loop_thread:
                on_loop.append(attr)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, attr, watched)

    for attr in ("voicemail_settings", "pin_status", "check_pin"):
        watch(state, attr)
    for attr in ("mailbox_lock", "asterisk_path_lock"):
        watch(store_module, attr)
    for attr in ("list", "counts", "greeting", "current"):
        watch(rig.store, attr)

    service = rig.service
    pins = service.pins()
    assert not (await pins.pin_status(CTX, ANNA.id)).locked
    assert (await pins.check_pin(CTX, ANNA.id, PIN, source="ivr", actor="+358501234567")).ok
    assert not (await service.voicemail_settings(rig.mailbox)).always_ask_pin
    assert await service.counts(rig.mailbox) == (2, 0)
    assert await service.greeting_sound(rig.mailbox) is None
    visit = await service.open_folder(rig.mailbox, "INBOX")
    assert await service.message_at(visit, 0) is not None
    service.mark_heard(visit, 0)
    await service.delete_message(visit, 1)
    await service.close_folder(visit)
    name = await service.start_greeting()
    make_wav(rig.recordings / f"{name}.wav", 2)
    assert await service.recorded_greeting(name) is not None
    await service.save_greeting(rig.mailbox, name)
    assert await service.greeting_sound(rig.mailbox) is not None
    await service.delete_greeting(rig.mailbox)
    assert on_loop == []
    assert rig.where() == {"a": ("Old", 0)}
