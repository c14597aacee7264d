"""Voicemail logic shared by the deposit and access handlers: who a number belongs to, delivering
a recorded message (store, MWI, notification), greetings.

Handlers stay thin: they talk to the caller; this module decides and writes.
"""

from __future__ import annotations

import logging
import wave
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from base.ami import AmiSettings
from base.model import Config, Tenant, User
from callstate import CallStateService
from notify import VoicemailNotice
from vmstore import (
    Envelope,
    Message,
    RecordingJournal,
    VoicemailStore,
    new_msg_id,
    refresh_mwi,
)

log = logging.getLogger(__name__)

MIN_MESSAGE_SECONDS = 1.0  # shorter recordings are hang-ups, not messages


class Notifier(Protocol):
    async def notify(self, notice: VoicemailNotice, *, sms: bool, email: bool) -> None: ...


@dataclass(frozen=True)
class Mailbox:
    tenant: Tenant
    user: User

    @property
    def context(self) -> str:
        return self.tenant.id

    @property
    def box(self) -> str:
        return self.user.mailbox


def wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path)) as wav:
            return wav.getnframes() / float(wav.getframerate() or 8000)
    except (OSError, EOFError, wave.Error):
        return 0.0


class VoicemailService:
    def __init__(
        self,
        config: Config,
        store: VoicemailStore,
        callstate: CallStateService,
        notifier: Notifier | None,
        ami: AmiSettings | None,
        recordings_dir: Path,
    ) -> None:
        self.config = config
        self.store = store
        self.callstate = callstate
        self.notifier = notifier
        self.ami = ami
        self.recordings_dir = recordings_dir
        self.journal = RecordingJournal(recordings_dir)

    # --- who -------------------------------------------------------------------------

    def by_ids(self, tenant_id: str, user_id: str) -> Mailbox | None:
        for tenant in self.config.tenants:
            if tenant.id == tenant_id:
                try:
                    return Mailbox(tenant, tenant.user(user_id))
                except KeyError:
                    return None
        return None

    def by_number(self, raw: str) -> Mailbox | None:
        """The user a number (as a carrier or caller writes it) belongs to, in any tenant."""
        found = self.config.find_caller(raw)
        return Mailbox(*found) if found is not None else None

    # --- messages --------------------------------------------------------------------

    def recording_path(self, name: str) -> Path:
        return self.recordings_dir / f"{name}.wav"

    async def deliver(self, name: str, meta: dict[str, Any]) -> Message | None:
        """Move a finished recording into the mailbox named in `meta`, then MWI and notification.
        Recordings under a second are discarded. The journal entry is closed either way."""
        wav = self.recording_path(name)
        seconds = wav_seconds(wav)
        mailbox = self.by_ids(meta["tenant"], meta["user"])
        if mailbox is None or seconds < MIN_MESSAGE_SECONDS:
            log.info("recording %s: %.1f s for %s/%s discarded", name, seconds, meta.get("tenant"), meta.get("user"))
            wav.unlink(missing_ok=True)
            self.journal.finish(name)
            return None
        envelope = Envelope(
            caller_number=meta.get("caller_number") or None,
            caller_name=meta.get("caller_name") or None,
            called_number=meta.get("called_number") or mailbox.user.number,
            orig_time=datetime.fromisoformat(meta["started"]) if meta.get("started") else datetime.now(timezone.utc),
            duration=max(1, round(seconds)),
            msg_id=new_msg_id(),
            caller_channel=meta.get("channel", ""),
        )
        message = self.store.add(mailbox.context, mailbox.box, wav, envelope)
        self.journal.finish(name)
        log.info("message %s (%d s) from %s stored for %s/%s",
                 envelope.msg_id, envelope.duration, envelope.caller_number, mailbox.context, mailbox.user.id)
        await self.after_change(mailbox)
        await self._notify(mailbox, message)
        return message

    async def after_change(self, mailbox: Mailbox) -> None:
        """Tell subscribed phones (MWI) that the mailbox changed."""
        if self.ami is not None:
            await refresh_mwi(self.ami, mailbox.context, mailbox.box)

    async def _notify(self, mailbox: Mailbox, message: Message) -> None:
        if self.notifier is None:
            return
        settings = self.callstate.voicemail_settings(mailbox.tenant.id, mailbox.user.id)
        if not (settings.notify_sms or settings.notify_email):
            return
        envelope = message.envelope
        notice = VoicemailNotice(
            tenant_id=mailbox.tenant.id,
            user_id=mailbox.user.id,
            user_name=mailbox.user.name,
            user_number=mailbox.user.number,
            email=mailbox.user.email,
            language=mailbox.user.language,
            caller_number=envelope.caller_number,
            received=envelope.orig_time,
            duration=envelope.duration,
            msg_id=envelope.msg_id,
            wav=message.wav,
        )
        try:
            await self.notifier.notify(notice, sms=settings.notify_sms, email=settings.notify_email and bool(mailbox.user.email))
        except Exception:  # a notification problem must never lose or block the message
            log.exception("notification of %s failed to queue", envelope.msg_id)

    async def recover_orphans(self, older_than: float = 5.0) -> list[Message]:
        """Deliver recordings left behind by an app that died mid-recording."""
        delivered: list[Message] = []
        for wav, meta in self.journal.orphans(older_than):
            name = meta.get("name") or wav.relative_to(self.recordings_dir).with_suffix("").as_posix()
            log.warning("recovering orphaned recording %s for %s/%s", name, meta.get("tenant"), meta.get("user"))
            message = await self.deliver(name, meta)
            if message is not None:
                delivered.append(message)
        return delivered
