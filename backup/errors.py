"""What a backup or a restore reports when it cannot do its work, and the counting words of its
messages."""

from __future__ import annotations


class BackupError(Exception):
    """The backup or restore failed; the message says why and what was left as it was."""


class Refused(BackupError):
    """A restore refused before anything was changed (a damaged archive, a newer schema, a target
    that already holds messages or call state)."""


def plural(number: int, noun: str) -> str:
    """"1 message", "2 messages", "3 mailboxes"."""
    return f"{number} {noun}" + ("" if number == 1 else "es" if noun.endswith("x") else "s")
