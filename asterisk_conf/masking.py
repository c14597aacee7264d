"""Secrets out of what `vipbx diff` prints: generated secrets by value, and by place every value
that is a password or a PIN (a voicemail.conf mailbox line starts with the PIN), whatever its origin.

A changed secret still shows as a changed line, with both sides masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "********"
# `password=...`, `secret=...` and the like, in any file, with a diff's leading -, + or space.
_KEYED = re.compile(
    r"^(?P<head>[-+ ]?\s*(?:password|secret|md5_cred|pin|auth_password)\s*=>?\s*)(?P<value>\S.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# A voicemail.conf mailbox: `MAILBOX => PIN,Name,...`.
_MAILBOX = re.compile(r"^(?P<head>[-+ ]?\s*[^;\[\s=][^=]*=>\s*)(?P<value>[^,\s]*)", re.MULTILINE)
_FILE_HEADER = re.compile(r"^(?:---|\+\+\+) \S*?([^/\s]+)(?:\s|$)", re.MULTILINE)
_MIN_SECRET = 8  # shorter "secrets" would mask ordinary words; generated ones are 24 characters


def mask_diff(text: str, secrets: Iterable[str]) -> str:
    """`text` (a unified diff of rendered files, or one file) with every secret masked."""
    for value in sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _KEYED.sub(lambda m: m["head"] + MASK, text)
    return _mask_mailboxes(text)


def _mask_mailboxes(text: str) -> str:
    """Mask the PIN field of mailbox lines, only inside voicemail.conf parts of the diff."""
    parts: list[str] = []
    position, in_voicemail = 0, False
    for header in _FILE_HEADER.finditer(text):
        chunk = text[position:header.start()]
        parts.append(_MAILBOX.sub(lambda m: m["head"] + MASK, chunk) if in_voicemail else chunk)
        parts.append(header.group(0))
        in_voicemail = header.group(1) == "voicemail.conf"
        position = header.end()
    rest = text[position:]
    parts.append(_MAILBOX.sub(lambda m: m["head"] + MASK, rest) if in_voicemail else rest)
    return "".join(parts)
