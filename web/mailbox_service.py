"""The Mailbox page's view of the voicemail spool: rows of messages (caller, local time,
duration) and the bytes of one message's audio. The messages themselves are read and changed
only through the voicemail service (`ari_app.voicemail.services.VoicemailService`), the same one
the phone's menu uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from base.model import Config, TenantUser
from vmstore import Message

# What a spool msg_id looks like (ours and app_voicemail's): anything else names no message.
MSG_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class MailboxRow:
    id: str
    new: bool
    caller_number: str  # "" when the caller was anonymous
    caller_name: str | None  # only a user of the viewer's own tenant is named
    received: datetime  # in the tenant's time zone
    duration: int  # seconds

    @property
    def addressable(self) -> bool:
        """Whether the message can be named (played, deleted) here: an envelope without a usable
        msg_id (written by hand, or by a very old Asterisk) is listed, and handled by phone."""
        return valid_id(self.id)

    @property
    def when(self) -> str:
        return self.received.strftime("%Y-%m-%d %H:%M")

    @property
    def length(self) -> str:
        minutes, seconds = divmod(max(0, self.duration), 60)
        return f"{minutes}:{seconds:02d}"


def valid_id(msg_id: str) -> bool:
    return bool(MSG_ID.fullmatch(msg_id))


def time_zone(config: Config) -> ZoneInfo:
    return ZoneInfo(config.platform.notifications.timezone)  # checked when the YAML is loaded


def caller_name(config: Config, mailbox: TenantUser, number: str) -> str | None:
    """The name of the user of the mailbox's own tenant who called from `number` (their number,
    the tenant's number they answer, or their extension); None for anyone else. The name the
    caller sent is never shown: outside callers choose it."""
    if not number:
        return None
    owner = config.find_caller(number, mailbox.tenant.country_code)
    if owner is not None:
        return owner.user.name if owner.tenant.id == mailbox.tenant.id else None
    return next((user.name for user in mailbox.tenant.users if user.extension == number), None)


def rows(config: Config, mailbox: TenantUser, messages: list[Message]) -> list[MailboxRow]:
    zone = time_zone(config)
    out = []
    for message in messages:
        envelope = message.envelope
        number = envelope.caller_number or ""
        out.append(MailboxRow(
            id=envelope.msg_id, new=message.folder == "INBOX", caller_number=number,
            caller_name=caller_name(config, mailbox, number),
            received=envelope.orig_time.astimezone(zone), duration=envelope.duration))
    return out


class BadRange(ValueError):
    """A Range header that names no part of the file (answered 416)."""


def read_audio(wav: Path) -> bytes:
    """A message's or greeting's WAV, read whole at once (a few hundred kilobytes a minute): the
    folder may be renumbered by the phone while the browser reads, and the bytes must stay this
    message's."""
    return Path(wav).read_bytes()


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `Range: bytes=...` request, None for the whole file (no
    header, or one this server does not split, such as several ranges); BadRange when it lies
    outside the file."""
    if not header:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    start, end = found.groups()
    if not start and not end:
        return None
    if not start:  # the last N bytes
        suffix = int(end)
        if suffix == 0 or size == 0:
            raise BadRange(header)
        return max(0, size - suffix), size - 1
    first = int(start)
    last = min(int(end), size - 1) if end else size - 1
    if first >= size or last < first:
        raise BadRange(header)
    return first, last
