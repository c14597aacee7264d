"""Messages that are not voicemail notices: a login code, the Home page's SMS, a received fax.

Sent at once through the same gateways as the notices (Kannel, SMTP), not queued: a login code
that arrives an hour later is no use, so a failure is the caller's to show ("try again").
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

from .email import SmtpSender
from .errors import DeliveryError
from .sms import SmsGateway


class NoGateway(DeliveryError):
    """The platform has no SMS gateway (or no SMTP relay) configured."""

    def __init__(self, what: str) -> None:
        super().__init__(f"no {what} is configured (platform.notifications)", permanent=True)


@dataclass(frozen=True)
class Attachment:
    filename: str
    maintype: str  # "application"
    subtype: str  # "pdf"
    data: bytes


class Messenger:
    def __init__(self, sms: SmsGateway | None, email: SmtpSender | None) -> None:
        self._sms = sms
        self._email = email

    @property
    def can_sms(self) -> bool:
        return self._sms is not None

    @property
    def can_email(self) -> bool:
        return self._email is not None

    async def sms(self, to: str, text: str, *, sender: str | None = None) -> None:
        """`to` in E.164; `sender` a user's own number, else the platform's sender (a login code).
        Raises `NoGateway` or `DeliveryError`."""
        if self._sms is None:
            raise NoGateway("SMS gateway")
        if sender:
            await self._sms.send(to, text, sender=sender)
        else:
            await self._sms.send(to, text)

    async def email(self, to: str, subject: str, body: str, attachments: tuple[Attachment, ...] = ()) -> None:
        """Raises `NoGateway` or `DeliveryError`."""
        if self._email is None:
            raise NoGateway("SMTP relay")
        msg = EmailMessage()
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        for item in attachments:
            msg.add_attachment(item.data, maintype=item.maintype, subtype=item.subtype, filename=item.filename)
        await self._email.send_message(msg)
