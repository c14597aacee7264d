"""The one way from the voicemail handlers to voicemail data: who a number belongs to, settings
and PIN, greetings, messages, recording and delivering a message (store, MWI, notification).

Handlers stay thin: they talk to the caller; this module decides and writes. Everything that
touches the spool, a mailbox lock or the database runs in the shared worker pool
(`base.offload.run_blocking`), so a slow disk or database never holds up another call's keys.
Mailbox locks are therefore taken and waited for inside a worker thread (see vmstore.locks): the
lock only guards a few renames, and they must happen in that same thread under it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

from ari_app.ivr import PinGate, pin_gate
from ari_app.pinlocks import FallbackLocks
from base import metrics
from base.ami import AmiSettings
from base.model import LANGUAGES, Config, TenantUser
from base.offload import run_blocking
from callstate import (
    AsyncCallState,
    CallStateService,
    SettingsError,
    VoicemailSettings,
    check_press1,
)
from notify import VoicemailNotice
from vmstore import (
    FolderVisit,
    Message,
    MessageNotFound,
    RecordingJournal,
    Recordings,
    VoicemailStore,
    deliver_orphans,
    deliver_recording,
    playback_name,
    refresh_mwi,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

MIN_MESSAGE_SECONDS = 1.0  # shorter recordings are hang-ups, not messages
MIN_GREETING_SECONDS = 1.0
MIN_FREE_BYTES = 64 * 1024  # less room than this for recordings: the disk counts as full
ORPHAN_AGE_SECONDS = 5.0  # a recording nobody wrote to for this long belongs to a dead process


class NotSaved(RuntimeError):
    """The message could not be stored now (e.g. a full disk). Whatever was recorded stays in the
    recording journal, and the next orphan scan delivers it once the store works again."""


class Notifier(Protocol):
    async def notify(self, notice: VoicemailNotice, *, sms: bool, email: bool) -> None: ...


class VoicemailService:
    def __init__(
        self,
        config: Config,
        store: VoicemailStore,
        callstate: CallStateService,
        notifier: Notifier | None,
        ami: AmiSettings | None,
        recordings_dir: Path,
        locks: FallbackLocks | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._callstate = AsyncCallState(callstate)  # off the event loop
        self._notifier = notifier
        self._ami = ami
        self._pins = pin_gate(self._callstate, locks)
        self._recordings = Recordings(recordings_dir)
        self._journal = RecordingJournal(recordings_dir)

    # --- who (the configuration, in memory) ------------------------------------------------

    def by_ids(self, tenant_id: str, user_id: str) -> TenantUser | None:
        return self.config.find_user(tenant_id, user_id)

    def by_number(self, raw: str, country_code: str | None) -> TenantUser | None:
        """The user a number (as a trunk or caller writes it) belongs to; a national number is
        read in `country_code` (the trunk's country; None: national numbers name nobody)."""
        return self.config.find_caller(raw, country_code)

    def _by_box(self, context: str, box: str) -> TenantUser | None:
        # A mailbox id is the user's own number without its '+' (User.mailbox), in the tenant's context.
        owner = self.config.find_number("+" + box)
        return owner if owner is not None and owner.context == context and owner.mailbox == box else None

    # --- settings and PIN (the call-state service) -----------------------------------------

    async def voicemail_settings(self, mailbox: TenantUser) -> VoicemailSettings:
        return await self._callstate.voicemail_settings(mailbox.tenant.id, mailbox.user.id)

    def press1_target(self, mailbox: TenantUser, number: str | None) -> str | None:
        """The stored "press 1" number if the rules still allow it (the outbound policy may have
        been tightened since it was set), else None: the greeting does not offer it."""
        if number is None:
            return None
        try:
            check_press1(self.config, mailbox.tenant, mailbox.user, number)
        except SettingsError as exc:
            log.warning("%s: press 1 number not offered: %s", mailbox.label, exc)
            return None
        return number

    def pins(self) -> PinGate:
        """What the login (`ari_app.ivr.Login`) asks of the call state: the PIN check with its
        lockout and the "always ask PIN" setting, run off the event loop; locks are mirrored for
        the native fallback."""
        return self._pins

    # --- greetings -------------------------------------------------------------------------

    async def greeting_sound(self, mailbox: TenantUser) -> str | None:
        """The user's own greeting as a media URI, or None for the default one."""
        own = await self.greeting_file(mailbox)
        return None if own is None else f"sound:{playback_name(own)}"

    async def greeting_file(self, mailbox: TenantUser) -> Path | None:
        """The user's own greeting (a WAV) to hand out as a file (the home page), or None."""
        return await run_blocking(self._store.greeting, mailbox.context, mailbox.mailbox)

    async def delete_greeting(self, mailbox: TenantUser) -> None:
        await run_blocking(self._store.delete_greeting, mailbox.context, mailbox.mailbox)

    async def start_greeting(self) -> str:
        """A recording name to record a new greeting under."""
        return await run_blocking(self._recordings.new_name, "greeting-")

    async def recorded_greeting(self, name: str) -> str | None:
        """The finished greeting recording as a media URI to play back; None when it is too
        short to be a greeting (it is then discarded)."""
        if await run_blocking(self._recordings.seconds, name) < MIN_GREETING_SECONDS:
            await self.discard_recording(name)
            return None
        return f"sound:{self._recordings.sound(name)}"

    async def save_greeting(self, mailbox: TenantUser, name: str) -> None:
        """The recording becomes the user's greeting."""
        await run_blocking(self._store.set_greeting, mailbox.context, mailbox.mailbox, self._recordings.audio(name))

    async def discard_recording(self, name: str) -> None:
        await run_blocking(self._recordings.discard, name)

    # --- listening ---------------------------------------------------------------------------

    async def counts(self, mailbox: TenantUser) -> tuple[int, int]:
        """(new, old) messages."""
        return await run_blocking(self._store.counts, mailbox.context, mailbox.mailbox)

    async def open_folder(self, mailbox: TenantUser, folder: str) -> FolderVisit:
        """Start a pass through INBOX or Old; the folder is listed here, once."""
        return await run_blocking(FolderVisit, self._store, mailbox.context, mailbox.mailbox, folder)

    async def message_at(self, visit: FolderVisit, index: int) -> Message | None:
        """The message at `index` of the visit; None if it was deleted elsewhere meanwhile (it then
        leaves the visit, and `index` names the next one)."""
        return await run_blocking(visit.message, index)

    def message_sound(self, message: Message) -> str:
        return f"sound:{message.sound}"

    def mark_heard(self, visit: FolderVisit, index: int) -> None:
        """The caller heard the message; it moves to Old when they leave it (in memory only)."""
        visit.heard(index)

    async def leave_message(self, visit: FolderVisit, index: int) -> None:
        """The caller moves on from the message at `index` (a heard new message becomes old)."""
        await run_blocking(visit.leave, index)

    async def delete_message(self, visit: FolderVisit, index: int) -> None:
        """Delete the message at `index`; `index` then names the message after it."""
        await run_blocking(visit.delete, index)

    async def close_folder(self, visit: FolderVisit) -> None:
        """The caller left the folder (or hung up): heard messages go to Old, phones are told."""
        if await run_blocking(visit.close):
            await self._refresh_mwi(visit.context, visit.mailbox)

    # --- the home page: messages named by their stable msg_id -----------------------------------

    async def messages(self, mailbox: TenantUser) -> tuple[list[Message], list[Message]]:
        """(new, old) messages, oldest first in each, as the phone lists them."""
        return await run_blocking(self._both_folders, mailbox)

    def _both_folders(self, mailbox: TenantUser) -> tuple[list[Message], list[Message]]:
        new, old = (self._store.list(mailbox.context, mailbox.mailbox, folder) for folder in ("INBOX", "Old"))
        return new, old

    async def message(self, mailbox: TenantUser, msg_id: str) -> Message | None:
        """The message with this id in this mailbox (INBOX or Old), else None. An empty id names
        nothing: envelopes written without one are listed but cannot be picked."""
        if not msg_id:
            return None
        return await run_blocking(self._store.find, mailbox.context, mailbox.mailbox, msg_id)

    async def mark_old(self, mailbox: TenantUser, msg_id: str) -> Message | None:
        """Heard elsewhere than on the phone (the home page): a new message becomes old, as when
        the caller leaves it after listening; phones are told. None if it is not in the mailbox."""
        message = await self.message(mailbox, msg_id)
        if message is None:
            return None
        if message.folder != "INBOX":
            return message
        try:
            moved = await run_blocking(self._store.mark_old, message)
        except MessageNotFound:  # deleted meanwhile (the phone)
            return None
        await self._refresh_mwi(mailbox.context, mailbox.mailbox)
        return moved

    async def delete_messages(self, mailbox: TenantUser, msg_ids: Collection[str]) -> int:
        """Delete these messages of the mailbox (one refresh of the phones afterwards); how many
        were removed now. The caller has checked that every id is in this mailbox; one removed
        meanwhile (by the phone) is simply gone already."""
        deleted = await run_blocking(self._delete_all, mailbox, list(msg_ids))
        if deleted:
            await self._refresh_mwi(mailbox.context, mailbox.mailbox)
        return deleted

    def _delete_all(self, mailbox: TenantUser, msg_ids: list[str]) -> int:
        deleted = 0
        for msg_id in filter(None, msg_ids):
            # Twice: the phone may move it from INBOX to Old between the look-up and the lock.
            for _ in range(2):
                message = self._store.find(mailbox.context, mailbox.mailbox, msg_id)
                if message is None:
                    break
                if self._store.delete(message) is not None:
                    deleted += 1
                    break
        return deleted

    # --- leaving a message -------------------------------------------------------------------

    async def start_message(self, mailbox: TenantUser, *, caller_number: str, caller_name: str,
                            channel: str, channel_id: str = "") -> str:
        """Open the recording journal entry for a new message; the recording name to record
        under. Written before the recording starts: if the app dies, the next start delivers it.
        NotSaved when the entry cannot be written (nothing would keep the message)."""
        meta = {
            "tenant": mailbox.tenant.id,
            "user": mailbox.user.id,
            "context": mailbox.context,
            "mailbox": mailbox.mailbox,
            "caller_number": caller_number,
            "caller_name": caller_name,
            "called_number": mailbox.user.number,
            "channel": channel,
            "channel_id": channel_id,  # what a restarted app finds the call by (never reused)
            "started": datetime.now(UTC).isoformat(),
            "language": mailbox.user.language,
        }
        if await self._disk_full():
            raise NotSaved("the disk is full")
        try:
            return await run_blocking(self._begin, meta)
        except OSError as exc:
            log.error("no message can be recorded for %s@%s: %s", mailbox.mailbox, mailbox.context, exc)
            raise NotSaved(str(exc)) from exc

    async def _disk_full(self) -> bool:
        left = await run_blocking(self._recordings.space_left)
        if left < MIN_FREE_BYTES:
            log.error("the recordings' disk is full (%d bytes left): no message can be kept", left)
            return True
        return False

    def _begin(self, meta: dict[str, Any]) -> str:
        name = self._recordings.new_name()
        self._journal.begin(name, meta)
        return name

    async def finish_message(self, name: str) -> Message | None:
        """Deliver the finished recording (see vmstore.journal), then MWI and notification.
        None when it was too short to be a message (discarded); NotSaved when the store failed
        (the entry is left for the next orphan scan to deliver), or when nothing worth keeping
        reached a disk that is full now (Asterisk reports a recording it could not write as
        finished, with the length of what it wrote)."""
        try:
            message = await run_blocking(deliver_recording, self._journal, self._store, name,
                                         min_seconds=MIN_MESSAGE_SECONDS, accept=self._known)
        except Exception as exc:
            log.exception("recording %s not delivered now; the next scan tries again", name)
            metrics.deposits.labels("failed").inc()
            raise NotSaved(str(exc)) from exc
        if message is None and await self._disk_full():
            metrics.deposits.labels("failed").inc()
            raise NotSaved(f"recording {name}: the disk is full")
        metrics.deposits.labels("saved" if message is not None else "too_short").inc()
        if message is not None:
            await self._announce(message)
        return message

    async def adopt_recording(self, channel_id: str, channel: str) -> str | None:
        """The recording an earlier app left to Asterisk on this channel (its id, and its name for
        entries of older versions), now this app's to deliver; None when there is none."""
        return await run_blocking(self._journal.adopt, channel_id, channel)

    async def delivered_for(self, channel_id: str) -> dict[str, Any] | None:
        """The journal entry of this channel's message if this process already delivered it (the
        orphan scan came first)."""
        return await run_blocking(self._journal.closed_for, channel_id)

    async def recording_language(self, name: str) -> str:
        """The language of the mailbox a recording is for (from its journal entry)."""
        try:
            meta = await run_blocking(self._journal.read, name)
        except (OSError, ValueError):
            meta = None
        language = str((meta or {}).get("language") or "")
        return language if language in LANGUAGES else self.config.platform.default_language

    def leave_to_scan(self, name: str) -> None:
        """This process will not deliver the recording itself: the next orphan scan does."""
        self._journal.release(name)

    async def recover_orphans(self, older_than: float = ORPHAN_AGE_SECONDS) -> list[Message]:
        """Deliver recordings left behind by an app that died mid-recording."""
        delivered = await run_blocking(deliver_orphans, self._journal, self._store, older_than=older_than,
                                       min_seconds=MIN_MESSAGE_SECONDS, accept=self._known)
        for message in delivered:
            metrics.deposits.labels("saved").inc()
            await self._announce(message)
        return delivered

    def _known(self, meta: Mapping[str, Any]) -> bool:
        # A recording for a mailbox that left the configuration meanwhile is not kept.
        return self._by_box(str(meta.get("context")), str(meta.get("mailbox"))) is not None

    async def _announce(self, message: Message) -> None:
        await self._refresh_mwi(message.context, message.mailbox)
        mailbox = self._by_box(message.context, message.mailbox)
        if mailbox is not None:
            await self._notify(mailbox, message)

    async def _refresh_mwi(self, context: str, box: str) -> None:
        """Tell subscribed phones (MWI) that the mailbox changed."""
        if self._ami is not None:
            await refresh_mwi(self._ami, context, box)

    async def _notify(self, mailbox: TenantUser, message: Message) -> None:
        if self._notifier is None:
            return
        settings = await self.voicemail_settings(mailbox)
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
            await self._notifier.notify(notice, sms=settings.notify_sms,
                                        email=settings.notify_email and bool(mailbox.user.email))
        except Exception:  # a notification problem must never lose or block the message
            log.exception("notification of %s failed to queue", envelope.msg_id)
