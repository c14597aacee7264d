"""Users for unit-test configurations."""

from __future__ import annotations

from base.model import NO_VOICEMAIL_GROUP, User

PIN = "480264"


def user(uid: str, number: str, ext: str, lang: str = "fi", *, no_voicemail: bool = False,
         pin: str = PIN) -> User:
    """A user named after `uid`, without e-mail or devices; in "No voicemail" if asked."""
    return User(id=uid, name=uid.title(), number=number, extension=ext, email=None, pin=pin, language=lang,
                groups=(NO_VOICEMAIL_GROUP,) if no_voicemail else ())
