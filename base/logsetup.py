"""Logging for the `vipbx` commands: one handler (stderr, or a rotated file) whose output never
holds a secret, one line per event, as text or JSON lines.

Libraries log URLs and requests at INFO and DEBUG (httpx logs every request's URL, and Kannel's
sendsms URL carries the gateway password). Rather than trust every library at every verbosity,
the handler masks each value of secrets.json in every line, exception text included.

Each line carries the call it is about (call id, tenant, user; see logcontext.py). A traceback
stays inside its line: JSON escapes it, and text indents it under the line, so a log shipper that
splits on newlines keeps it with its event only in JSON (the format for shipping).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from .logcontext import FIELDS, AddCallContext

MASK = "********"
MIN_SECRET = 8  # shorter values would mask ordinary words; generated secrets are 24 characters
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(call)s"
FORMATS = ("text", "json")
# A rotated file: this size, and this many old files kept (serve.log.1 ... .5).
ROTATE_BYTES = 50 * 2**20
ROTATE_KEEP = 5


class PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """Rotated by size; every file it opens, the fresh one after a rotation too, is owner-only
    (the log names callers and mailboxes), whatever the umask."""

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # also a file an older version left open
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


class TextLines(logging.Formatter):
    """The classic line, with ` [call=... tenant=... user=...]` when the line is about a call."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        bound = [f"{name.removesuffix('_id')}={value}" for name in FIELDS if (value := getattr(record, name, ""))]
        record.call = f" [{' '.join(bound)}]" if bound else ""
        return super().format(record)


class JsonLines(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, msg, the call's fields when
    bound, exc (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            if value := getattr(record, name, ""):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)

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
              stream: TextIO | None = None, *, fmt: str = "text", file: Path | None = None,
              rotate_bytes: int = ROTATE_BYTES, keep: int = ROTATE_KEEP) -> logging.Handler:
    """The root logger at DEBUG (`verbose`) or INFO, writing to `file` (rotated at `rotate_bytes`,
    `keep` old files) or else `stream` (default stderr), as `fmt` ("text" or "json" lines), through
    the secret filter. Called again (e.g. once per command in tests), it replaces its handler."""
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = PrivateRotatingFile(file, maxBytes=rotate_bytes, backupCount=keep, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines() if fmt == "json" else TextLines())
    handler.addFilter(AddCallContext())
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every ARI request at INFO: that would bury what happens to calls.
    logging.getLogger("httpx").setLevel(logging.NOTSET if verbose else logging.WARNING)
    _installed = handler
    return handler
