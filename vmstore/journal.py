"""Crash-safe handoff of ARI recordings into mailboxes.

Before a recording starts, the app writes `<recordings_dir>/<name>.json` beside the coming
`<name>.wav` (ARI records to `<astspooldir>/recording/<name>.wav`; a name may hold a subfolder,
e.g. `vipbx/<uuid>`). It removes the sidecar once the message is in the mailbox. If the app dies
in between, Asterisk still finishes the file; at the next start (and now and then) a sidecar whose
audio has not changed for a while is an orphan, delivered from what the sidecar says.

Sidecar keys (JSON): name, msg_id (added by `begin`), tenant, user, context (the voicemail
context), mailbox, caller_number, caller_name, called_number, channel, started (ISO 8601, aware),
language.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from base.durable import fsync_dir

from . import wav as wavfile
from .envelope import Envelope, new_msg_id
from .locks import FILE_MODE
from .recordings import checked, is_name
from .store import Message, VoicemailStore

log = logging.getLogger(__name__)

CLOSED_KEPT = 1024  # closed entries remembered per process: only calls taken up at a start ask
MIN_SECONDS = 1.0  # shorter recordings are hang-ups, not messages


class RecordingJournal:
    def __init__(self, recordings_dir: Path) -> None:
        self.dir = Path(recordings_dir)
        # Recordings this process is still handling: never orphans, however quiet their file.
        self._active: set[str] = set()
        # Entries another process began and this one took over (see `adopt`), or that this
        # process's orphan scan is delivering: never taken by the other of the two.
        self._adopted: set[str] = set()
        self._claims = threading.Lock()  # adopt (event loop's threads) and the scan (its thread)
        # Entries this process closed, by channel id: a call taken up after the scan delivered its
        # message is told it was saved, not asked to record again.
        self._closed_channels: dict[str, dict[str, Any]] = {}
        self._reported: set[str] = set()  # bad entries already logged

    def audio(self, name: str) -> Path:
        return self.dir / f"{checked(name)}.wav"

    def sidecar(self, name: str) -> Path:
        return self.dir / f"{checked(name)}.json"

    def begin(self, name: str, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Record `meta` durably before the recording starts; returns what was written."""
        path = self.sidecar(name)
        data = {"msg_id": new_msg_id(), **meta, "name": name}
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, sort_keys=True)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.rename(temp, path)
        fsync_dir(path.parent)
        self._active.add(name)
        return data

    def release(self, name: str) -> None:
        """This process stops handling the entry without closing it (its delivery failed): the
        next orphan scan tries it again."""
        self._active.discard(name)
        self._adopted.discard(name)

    def adopt(self, channel_id: str, channel: str = "", live_within: float = 10.0) -> str | None:
        """Take over the open entry of the recording on the channel `channel_id` (Asterisk's
        unique id, never reused) that an earlier process began and left to Asterisk; its name, or
        None when there is none. An entry of an older version, without the id, is matched by the
        channel's name while its audio is being written (names repeat after Asterisk restarts)."""
        with self._claims:
            for name, _ in self._entries():
                if name in self._active or name in self._adopted:
                    continue
                try:
                    meta = self.read(name)
                except (OSError, ValueError):
                    continue
                if meta is None:
                    continue
                if (channel_id and meta.get("channel_id") == channel_id) or (
                        channel and "channel_id" not in meta and meta.get("channel") == channel
                        and 0 <= _age(self.audio(name)) <= live_within):
                    self._adopted.add(name)
                    return name
            return None

    def closed_for(self, channel_id: str) -> dict[str, Any] | None:
        """The meta of the entry of `channel_id` that this process closed (delivered), if any."""
        with self._claims:
            return self._closed_channels.get(channel_id) if channel_id else None

    def claim_orphan(self, name: str) -> bool:
        """For the orphan scan: the entry is its to deliver, unless a call took it up first."""
        with self._claims:
            if name in self._active or name in self._adopted:
                return False
            self._adopted.add(name)
            return True

    def began_here(self, name: str) -> bool:
        """Whether this process began the entry and has not closed it yet."""
        return name in self._active

    def read(self, name: str) -> dict[str, Any] | None:
        """The entry's meta; None if there is none, ValueError if its sidecar is unreadable."""
        try:
            data = json.loads(self.sidecar(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"recording {name}: the sidecar holds no JSON object")  # noqa: TRY004 -- bad data, not a bad argument
        return data

    def finish(self, name: str) -> dict[str, Any] | None:
        """Close the entry once the recording is delivered (or discarded); its meta, if any."""
        try:
            meta = self.read(name)
        except ValueError:  # unreadable: still closed
            meta = None
        self.sidecar(name).unlink(missing_ok=True)
        self._active.discard(name)
        self._adopted.discard(name)
        if meta is not None and meta.get("channel_id"):
            with self._claims:
                self._closed_channels[str(meta["channel_id"])] = meta
                while len(self._closed_channels) > CLOSED_KEPT:  # the oldest first: a dict keeps order
                    del self._closed_channels[next(iter(self._closed_channels))]
        return meta

    def orphans(self, older_than: float) -> list[tuple[Path, dict[str, Any]]]:
        """Recordings with a sidecar whose audio nobody has written for `older_than` seconds. A bad
        sidecar is reported (once per process) and skipped: it stays for someone to look at."""
        found: list[tuple[Path, dict[str, Any]]] = []
        for name, _ in self._entries():
            audio = self.audio(name)
            if name in self._active or name in self._adopted or _age(audio) <= older_than:
                continue
            try:
                meta = self.read(name)
            except (OSError, ValueError) as exc:
                self.report_bad(name, exc)
                continue
            if meta is not None:
                found.append((audio, meta))
        return found

    def report_bad(self, name: str, problem: Exception) -> None:
        """Log an entry that cannot be delivered as it is; the scan comes by every minute, the
        log line only once."""
        if name not in self._reported:
            self._reported.add(name)
            log.error("recording %s left undelivered (%s): see %s", name, problem, self.sidecar(name))

    def stale(self, older_than: float) -> list[str]:
        """Entries whose recording never started (no audio) for `older_than` seconds."""
        return [name for name, sidecar in self._entries()
                if name not in self._active and name not in self._adopted and not self.audio(name).exists()
                and _age(sidecar) > older_than]

    def _entries(self) -> list[tuple[str, Path]]:
        if not self.dir.is_dir():
            return []
        entries = []
        for sidecar in sorted(self.dir.rglob("*.json")):
            name = sidecar.relative_to(self.dir).with_suffix("").as_posix()
            if is_name(name):
                entries.append((name, sidecar))
        return entries


def envelope_from_meta(meta: Mapping[str, Any], seconds: float, *, fallback_time: datetime) -> Envelope:
    try:
        started = datetime.fromisoformat(str(meta["started"]))
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
    except (KeyError, ValueError):
        started = fallback_time
    mailbox = str(meta.get("mailbox") or "")
    return Envelope(
        caller_number=meta.get("caller_number") or None,
        caller_name=meta.get("caller_name") or None,
        called_number=meta.get("called_number") or ("+" + mailbox if mailbox.isdigit() else mailbox),
        orig_time=started,
        duration=max(1, round(seconds)),
        msg_id=str(meta.get("msg_id") or new_msg_id()),
        caller_channel=str(meta.get("channel") or ""),
    )


class BadEntry(ValueError):
    """A journal entry that cannot be delivered as written (it names no mailbox)."""


Accept = Callable[[Mapping[str, Any]], bool]


def deliver_recording(journal: RecordingJournal, store: VoicemailStore, name: str,
                      meta: Mapping[str, Any] | None = None, *, min_seconds: float = MIN_SECONDS,
                      accept: Accept | None = None) -> Message | None:
    """Move a finished recording into the mailbox its journal entry names, then close the entry.

    The message keeps the entry's `msg_id`, so delivering the same entry again (the app died
    before closing it) finds the message already there and stores nothing twice. None when the
    recording is too short or missing, was already delivered, or `accept` refuses its meta (a
    mailbox that no longer exists): each of those closes the entry and removes the audio.
    LookupError without an entry, BadEntry when it names no mailbox (both left as they are)."""
    meta = meta if meta is not None else journal.read(name)
    if meta is None:
        raise LookupError(f"recording {name}: no journal entry")
    context, mailbox = str(meta.get("context") or ""), str(meta.get("mailbox") or "")
    if not context or not mailbox:
        raise BadEntry(f"recording {name}: the journal entry names no mailbox")
    audio = journal.audio(name)
    msg_id = str(meta.get("msg_id") or "")
    # Only an entry this process did not begin can have been delivered before (by a process that
    # died before closing it); checked first, as the audio may already be renamed into the mailbox.
    delivered = store.find(context, mailbox, msg_id) if msg_id and not journal.began_here(name) else None
    if delivered is not None:
        log.info("recording %s: already in %s@%s as %s", name, mailbox, context, msg_id)
        _close(journal, name, audio)
        return None
    if accept is not None and not accept(meta):
        log.info("recording %s: %s@%s is no mailbox now, discarded", name, mailbox, context)
        _close(journal, name, audio)
        return None
    seconds = recorded_seconds(audio)
    if seconds < min_seconds:
        log.info("recording %s: %.1f s for %s@%s, discarded", name, seconds, mailbox, context)
        _close(journal, name, audio)
        return None
    mtime = datetime.fromtimestamp(audio.stat().st_mtime, UTC)
    envelope = envelope_from_meta(meta, seconds, fallback_time=mtime - timedelta(seconds=seconds))
    try:
        message = store.add(context, mailbox, audio, envelope)
    except BaseException:
        journal.release(name)  # e.g. a full disk: the next orphan scan tries again
        raise
    journal.finish(name)
    log.info("message %s (%d s) from %s stored for %s@%s",
             envelope.msg_id, envelope.duration, envelope.caller_number, mailbox, context)
    return message


def deliver_orphans(journal: RecordingJournal, store: VoicemailStore, *, older_than: float = 5.0,
                    min_seconds: float = MIN_SECONDS, accept: Accept | None = None) -> list[Message]:
    """Deliver every orphan (see `RecordingJournal.orphans`) as `deliver_recording` does; drop
    entries whose recording never started. One bad entry never stops the others: it is logged and
    left for the next scan. The caller refreshes MWI for the mailboxes of what is returned."""
    delivered: list[Message] = []
    for audio, meta in journal.orphans(older_than):
        name = audio.relative_to(journal.dir).with_suffix("").as_posix()  # the file's, not what it says
        if not journal.claim_orphan(name):
            continue  # a call taken up after a restart delivers it
        try:
            message = deliver_recording(journal, store, name, meta, min_seconds=min_seconds, accept=accept)
        except (LookupError, ValueError) as exc:
            journal.release(name)
            journal.report_bad(name, exc)
            continue
        except Exception:  # the spool or a lock: tried again at the next scan
            journal.release(name)
            log.exception("orphaned recording %s not delivered", name)
            continue
        if message is not None:
            log.warning("orphaned recording %s delivered to %s@%s as msg%04d",
                        name, message.mailbox, message.context, message.number)
            delivered.append(message)
    for name in journal.stale(older_than):
        # Never started, or delivered by a process that died before closing the entry.
        log.warning("recording %s: no audio (never recorded or already delivered), journal entry dropped", name)
        journal.finish(name)
    return delivered


def _close(journal: RecordingJournal, name: str, audio: Path) -> None:
    audio.unlink(missing_ok=True)
    journal.finish(name)


def recorded_seconds(audio: Path) -> float:
    """Seconds of a finished recording, its WAV header first made to match the file: Asterisk
    writes the sizes only when it closes a recording, so one cut short by a crash claims no
    audio and would play as silence. The one measure for live and orphaned recordings."""
    try:
        before = audio.stat()
    except FileNotFoundError:
        return 0.0
    if wavfile.repair_header(audio):
        # The file's age is how orphans are told from live recordings: a repair must not renew it.
        os.utime(audio, ns=(before.st_atime_ns, before.st_mtime_ns))
    return wavfile.duration(audio)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return -1.0
