"""A new-voicemail notice and its texts (SMS, e-mail subject and body) in Finnish, Swedish, English.

Times are shown in the timezone `received` carries: the notifier converts it to the platform's
zone before the notice is stored, so every text of one notice agrees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

LANGUAGES = ("fi", "sv", "en")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class VoicemailNotice:
    tenant_id: str
    user_id: str
    user_name: str
    user_number: str  # E.164: where the SMS goes
    email: str | None
    language: str  # 'fi' | 'sv' | 'en'
    caller_number: str | None  # None: withheld or unknown
    received: datetime  # aware
    duration: int  # seconds
    msg_id: str
    wav: Path  # the recording in the mailbox

    def __post_init__(self) -> None:
        if self.received.tzinfo is None or self.received.utcoffset() is None:
            raise ValueError("received must be timezone-aware")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {self.language!r}")
        if not _E164.match(self.user_number):
            raise ValueError(f"user_number must be E.164, not {self.user_number!r}")
        if self.duration < 0:
            raise ValueError("duration must not be negative")


class Attachment(Enum):
    """What became of the recording in an e-mail (the body says so)."""

    ATTACHED = "attached"
    MISSING = "missing"  # deleted from the mailbox before it could be copied
    TOO_LARGE = "too_large"


def duration_text(seconds: int) -> str:
    """0:12, 3:05, 1:02:03."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _when(at: datetime, language: str, *, year: bool) -> str:
    # Finnish and Finland-Swedish write 26.11. klo 14.05 / kl. 14.05 (hour not zero-padded).
    y = f"{at.year}" if year else ""
    if language == "fi":
        return f"{at.day}.{at.month}.{y} klo {at.hour}.{at.minute:02d}"
    if language == "sv":
        return f"{at.day}.{at.month}.{y} kl. {at.hour}.{at.minute:02d}"
    date = f"{at.day} {_MONTHS_EN[at.month - 1]}" + (f" {at.year}" if year else "")
    return f"{date} at {at.hour:02d}:{at.minute:02d}"


def _from(notice: VoicemailNotice) -> str:
    caller = notice.caller_number
    return {
        "fi": f"numerosta {caller}" if caller else "tuntemattomasta numerosta",
        "sv": f"från {caller}" if caller else "från okänt nummer",
        "en": f"from {caller}" if caller else "from an unknown number",
    }[notice.language]


_NEW = {"fi": "Uusi vastaajaviesti", "sv": "Nytt röstmeddelande", "en": "New voicemail"}


def sms_text(notice: VoicemailNotice) -> str:
    """'Uusi vastaajaviesti numerosta +358401234567 (0:12) 26.11. klo 14.05'. GSM-7 in fi/sv/en."""
    when = _when(notice.received, notice.language, year=False)
    return f"{_NEW[notice.language]} {_from(notice)} ({duration_text(notice.duration)}) {when}"


def email_subject(notice: VoicemailNotice) -> str:
    return f"{_NEW[notice.language]} {_from(notice)} ({duration_text(notice.duration)})"


def attachment_name(notice: VoicemailNotice) -> str:
    stem = {"fi": "viesti", "sv": "meddelande", "en": "message"}[notice.language]
    return f"{stem}-{_UNSAFE.sub('_', notice.msg_id)}.wav"


_BODY = {
    "fi": ("Hei {name},\n\nsinulle on uusi vastaajaviesti.\n\n"
           "Soittaja: {caller}\nAika: {when}\nKesto: {duration}\n\n{attachment}\n"),
    "sv": ("Hej {name},\n\ndu har ett nytt röstmeddelande.\n\n"
           "Från: {caller}\nTid: {when}\nLängd: {duration}\n\n{attachment}\n"),
    "en": ("Hello {name},\n\nyou have a new voicemail message.\n\n"
           "From: {caller}\nTime: {when}\nLength: {duration}\n\n{attachment}\n"),
}
_UNKNOWN = {"fi": "tuntematon", "sv": "okänt nummer", "en": "unknown"}
_ATTACHMENT = {
    ("fi", Attachment.ATTACHED): "Viesti on liitteenä ({file}).",
    ("fi", Attachment.MISSING): "Äänitettä ei voitu liittää, koska viesti oli jo poistettu vastaajasta.",
    ("fi", Attachment.TOO_LARGE): "Äänite on liian suuri liitettäväksi. Kuuntele se vastaajasta.",
    ("sv", Attachment.ATTACHED): "Meddelandet finns som bilaga ({file}).",
    ("sv", Attachment.MISSING):
        "Inspelningen kunde inte bifogas eftersom meddelandet redan hade raderats ur röstbrevlådan.",
    ("sv", Attachment.TOO_LARGE): "Inspelningen är för stor för att bifogas. Lyssna på den i röstbrevlådan.",
    ("en", Attachment.ATTACHED): "The recording is attached ({file}).",
    ("en", Attachment.MISSING):
        "The recording could not be attached: the message had already been deleted from your mailbox.",
    ("en", Attachment.TOO_LARGE): "The recording is too large to attach. Please listen to it in your mailbox.",
}


def email_body(notice: VoicemailNotice, attachment: Attachment = Attachment.ATTACHED) -> str:
    lang = notice.language
    return _BODY[lang].format(
        name=notice.user_name,
        caller=notice.caller_number or _UNKNOWN[lang],
        when=_when(notice.received, lang, year=True),
        duration=duration_text(notice.duration),
        attachment=_ATTACHMENT[lang, attachment].format(file=attachment_name(notice)),
    )
