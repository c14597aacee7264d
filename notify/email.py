"""E-mail notices over SMTP, with the recording attached as audio/wav.

stdlib `smtplib` in a worker thread rather than an async SMTP client: one short session per
voicemail needs no extra runtime dependency, and the thread keeps the event loop free.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Protocol

from .errors import DeliveryError
from .notice import Attachment, VoicemailNotice, attachment_name, email_body, email_subject

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")


class EmailGateway(Protocol):
    async def send(self, notice: VoicemailNotice, wav: Path | None) -> None:
        """Mail `notice` to `notice.email` with `wav` attached (None: it is gone, say so); raise
        (ideally `DeliveryError`) if the server did not take it."""
        ...


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str  # From: header and envelope sender, e.g. "Vastaaja <voicemail@example.com>"
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    cafile: str | None = None  # CA bundle for STARTTLS to a relay with a private CA; None: system's
    # Larger recordings are not attached (relays refuse big mails, which would fail forever).
    max_attachment_bytes: int = 10 * 1024 * 1024


def compose(notice: VoicemailNotice, sender: str, wav: Path | None,
            max_attachment_bytes: int = 10 * 1024 * 1024) -> EmailMessage:
    """The whole message. Reads `wav` (blocking)."""
    data: bytes | None = None
    state = Attachment.MISSING
    try:
        if wav is not None:
            if wav.stat().st_size > max_attachment_bytes:
                state = Attachment.TOO_LARGE
            else:
                data = wav.read_bytes()
                state = Attachment.ATTACHED
    except FileNotFoundError:
        pass
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = notice.email or ""
    msg["Subject"] = email_subject(notice)
    msg["Date"] = formatdate(localtime=True)
    # Stable across retries, so a duplicate after a lost server reply can be recognised.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    ident = _ID_UNSAFE.sub("_", f"vipbx-vm.{notice.tenant_id}.{notice.user_id}.{notice.msg_id}")
    msg["Message-ID"] = f"<{ident}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    msg.set_content(email_body(notice, state))
    if data is not None:
        msg.add_attachment(data, maintype="audio", subtype="wav", filename=attachment_name(notice))
    return msg


class SmtpSender:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, notice: VoicemailNotice, wav: Path | None) -> None:
        if not notice.email:
            raise DeliveryError("the user has no e-mail address", permanent=True)
        await asyncio.to_thread(self._send_blocking, notice, wav)

    async def send_message(self, msg: EmailMessage) -> None:
        """Any other message (a login code, a received fax): From and Date are filled in here."""
        if not msg["To"]:
            raise DeliveryError("the message has no recipient", permanent=True)
        if not msg["From"]:
            msg["From"] = self.settings.sender
        if not msg["Date"]:
            msg["Date"] = formatdate(localtime=True)
        if not msg["Auto-Submitted"]:
            msg["Auto-Submitted"] = "auto-generated"
        await asyncio.to_thread(self._deliver, msg, str(msg["To"]))

    def _send_blocking(self, notice: VoicemailNotice, wav: Path | None) -> None:
        s = self.settings
        self._deliver(compose(notice, s.sender, wav, s.max_attachment_bytes), notice.email or "")

    def _deliver(self, msg: EmailMessage, recipient: str) -> None:
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=s.cafile))
                if s.username:
                    smtp.login(s.username, s.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"SMTP {s.host}:{s.port} refused {recipient}: {exc.recipients}",
                                permanent=all(code >= 500 for code in codes)) from None
        except smtplib.SMTPDataError as exc:
            # 5xx to the message itself (too big, content refused) will be refused again.
            raise DeliveryError(f"SMTP {s.host}:{s.port}: {exc.smtp_code} {exc.smtp_error!r}",
                                permanent=exc.smtp_code >= 500) from None
        except smtplib.SMTPResponseException as exc:
            # Login, sender or greeting refused: our configuration or the relay's state, which
            # ops can fix while we retry.
            raise DeliveryError(f"SMTP {s.host}:{s.port}: {exc.smtp_code} {exc.smtp_error!r}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None
