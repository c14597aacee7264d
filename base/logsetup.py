"""Logging for the `vipbx` commands: one stderr handler whose output never holds a secret.

Libraries log URLs and requests at INFO and DEBUG (httpx logs every request's URL, and Kannel's
sendsms URL carries the gateway password). Rather than trust every library at every verbosity,
the handler masks each value of secrets.json in every line, exception text included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TextIO

MASK = "********"
MIN_SECRET = 8  # shorter values would mask ordinary words; generated secrets are 24 characters
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_installed: logging.Handler | None = None


class RedactSecrets(logging.Filter):
    """Replaces every secret in a record's message, exception and stack text by ********."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets
        self._formatter = logging.Formatter()

    def _mask(self, text: str, values: list[str]) -> str:
        for value in values:
            text = text.replace(value, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        values = sorted({v for v in self._secrets() if len(v) >= MIN_SECRET}, key=len, reverse=True)
        message = record.getMessage()
        masked = self._mask(message, values)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text, values)
        if record.stack_info:
            record.stack_info = self._mask(record.stack_info, values)
        return True


def configure(verbose: bool, secrets: Callable[[], Iterable[str]],
              stream: TextIO | None = None) -> logging.Handler:
    """The root logger at DEBUG (`verbose`) or INFO, writing to `stream` (default stderr) through
    the secret filter. Called again (e.g. once per command in tests), it replaces its handler."""
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every ARI request at INFO: that would bury what happens to calls.
    logging.getLogger("httpx").setLevel(logging.NOTSET if verbose else logging.WARNING)
    _installed = handler
    return handler
