"""Users for unit-test configurations."""

from __future__ import annotations

from base.model import NO_VOICEMAIL_GROUP, Carrier, Trunk, User

PIN = "480264"
# The trusted carrier of the unit-test platforms, and an untrusted interconnect in Sweden.
CARRIER = Carrier(host="192.0.2.1", match=("192.0.2.1",))
INTERCONNECT = Trunk("ic", "192.0.2.2", match=("192.0.2.2",), trusted=False, country_code="46")
TRUNKS = (CARRIER, INTERCONNECT)


def via(trunk: str | None) -> dict[str, str]:
    """The channel variables of a call that came in on `trunk` (None: of no known origin)."""
    return {"VIPBX_TRUNK": trunk} if trunk else {}


def user(uid: str, number: str, ext: str, lang: str = "fi", *, no_voicemail: bool = False,
         pin: str = PIN) -> User:
    """A user named after `uid`, without e-mail or devices; in "No voicemail" if asked."""
    return User(id=uid, name=uid.title(), number=number, extension=ext, email=None, pin=pin, language=lang,
                groups=(NO_VOICEMAIL_GROUP,) if no_voicemail else ())
