"""New-voicemail notifications: SMS through a gateway (Kannel), e-mail through SMTP, both sent
from a durable SQLite outbox with retries. See docs/notifications.md."""

from .email import EmailGateway, SmtpSender, SmtpSettings, compose
from .errors import DeliveryError
from .messenger import Attachment as MessageAttachment
from .messenger import Messenger, NoGateway
from .notice import (
    LANGUAGES,
    Attachment,
    VoicemailNotice,
    attachment_name,
    duration_text,
    email_body,
    email_subject,
    sms_text,
)
from .notifier import Notifier, RetryPolicy
from .outbox import Entry, Outbox
from .sms import KannelGateway, KannelSettings, SmsGateway, is_gsm7

__all__ = [
    "LANGUAGES",
    "Attachment",
    "DeliveryError",
    "EmailGateway",
    "Entry",
    "KannelGateway",
    "KannelSettings",
    "MessageAttachment",
    "Messenger",
    "NoGateway",
    "Notifier",
    "Outbox",
    "RetryPolicy",
    "SmsGateway",
    "SmtpSender",
    "SmtpSettings",
    "VoicemailNotice",
    "attachment_name",
    "compose",
    "duration_text",
    "email_body",
    "email_subject",
    "is_gsm7",
    "sms_text",
]
