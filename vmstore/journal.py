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
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import wav as wavfile
from .envelope import Envelope, new_msg_id
from .locks import FILE_MODE, fsync_dir
from .store import Message, VoicemailStore

log = logging.getLogger(__name__)

MIN_SECONDS = 1.0  # shorter recordings are hang-ups, not messages
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class RecordingJournal:
    def __init__(self, recordings_dir: Path) -> None:
        self.dir = Path(recordings_dir)
        # Recordings this process is still handling: never orphans, however quiet their file.
        self._active: set[str] = set()

    def audio(self, name: str) -> Path:
        return self.dir / f"{_checked(name)}.wav"

    def sidecar(self, name: str) -> Path:
        return self.dir / f"{_checked(name)}.json"

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

    def read(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.sidecar(name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def finish(self, name: str) -> dict[str, Any] | None:
        """Close the entry once the recording is delivered (or discarded); its meta, if any."""
        try:
            meta = self.read(name)
        except ValueError:  # unreadable: still closed
            meta = None
        self.sidecar(name).unlink(missing_ok=True)
        self._active.discard(name)
        return meta

    def orphans(self, older_than: float) -> list[tuple[Path, dict[str, Any]]]:
        """Recordings with a sidecar whose audio nobody has written for `older_than` seconds;
        their WAV header is repaired (a crash leaves it claiming no audio)."""
        found: list[tuple[Path, dict[str, Any]]] = []
        for name, _ in self._entries():
            audio = self.audio(name)
            if name in self._active or _age(audio) <= older_than:
                continue
            try:
                meta = self.read(name)
            except ValueError:
                log.error("recording %s: unreadable sidecar %s", name, self.sidecar(name))
                continue
            if meta is None:
                continue
            _repair_keeping_age(audio)
            found.append((audio, meta))
        return found

    def stale(self, older_than: float) -> list[str]:
        """Entries whose recording never started (no audio) for `older_than` seconds."""
        return [name for name, sidecar in self._entries()
                if name not in self._active and not self.audio(name).exists() and _age(sidecar) > older_than]

    def _entries(self) -> list[tuple[str, Path]]:
        if not self.dir.is_dir():
            return []
        entries = []
        for sidecar in sorted(self.dir.rglob("*.json")):
            name = sidecar.relative_to(self.dir).with_suffix("").as_posix()
            if all(_PART.fullmatch(part) for part in name.split("/")):
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


def deliver_recording(journal: RecordingJournal, store: VoicemailStore, name: str,
                      meta: Mapping[str, Any] | None = None, *, min_seconds: float = MIN_SECONDS) -> Message | None:
    """Move a finished recording into the mailbox its sidecar names, then close the entry.
    None when it is too short (discarded) or was already delivered before a crash."""
    meta = meta if meta is not None else journal.read(name)
    if meta is None:
        raise LookupError(f"recording {name}: no journal entry")
    context, mailbox = meta.get("context") or meta.get("tenant"), meta.get("mailbox")
    if not context or not mailbox:
        raise ValueError(f"recording {name}: the journal entry names no mailbox")
    audio = journal.audio(name)
    seconds = wavfile.duration(audio)
    if seconds < min_seconds:
        log.info("recording %s: %.1f s for %s@%s, discarded", name, seconds, mailbox, context)
        audio.unlink(missing_ok=True)
        journal.finish(name)
        return None
    msg_id = str(meta.get("msg_id") or "")
    if msg_id and store.find(str(context), str(mailbox), msg_id) is not None:
        # Copied in across file systems, then a crash before the source went: not twice.
        log.info("recording %s: already in %s@%s as %s", name, mailbox, context, msg_id)
        audio.unlink(missing_ok=True)
        journal.finish(name)
        return None
    mtime = datetime.fromtimestamp(audio.stat().st_mtime, UTC)
    envelope = envelope_from_meta(meta, seconds, fallback_time=mtime - timedelta(seconds=seconds))
    message = store.add(str(context), str(mailbox), audio, envelope)
    journal.finish(name)
    return message


def deliver_orphans(journal: RecordingJournal, store: VoicemailStore, *, older_than: float = 5.0,
                    min_seconds: float = MIN_SECONDS) -> list[Message]:
    """Deliver every orphan (see `RecordingJournal.orphans`); drop entries whose recording never
    started. The caller refreshes MWI for the mailboxes of what is returned."""
    delivered: list[Message] = []
    for audio, meta in journal.orphans(older_than):
        name = str(meta.get("name") or audio.relative_to(journal.dir).with_suffix("").as_posix())
        try:
            message = deliver_recording(journal, store, name, meta, min_seconds=min_seconds)
        except Exception:  # one bad entry must not stop the others; it is retried next time
            log.exception("orphaned recording %s not delivered", name)
            continue
        if message is not None:
            log.warning("orphaned recording %s delivered to %s@%s as msg%04d",
                        name, message.mailbox, message.context, message.number)
            delivered.append(message)
    for name in journal.stale(older_than):
        log.warning("recording %s never started: journal entry dropped", name)
        journal.finish(name)
    return delivered


def _checked(name: str) -> str:
    parts = name.split("/")
    if not all(_PART.fullmatch(part) for part in parts):
        raise ValueError(f"not a recording name: {name!r}")
    return name


def _repair_keeping_age(audio: Path) -> None:
    # The file's age is how orphans are told from live recordings: a repair must not renew it.
    before = audio.stat()
    if wavfile.repair_header(audio):
        os.utime(audio, ns=(before.st_atime_ns, before.st_mtime_ns))


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return -1.0
