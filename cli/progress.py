"""Progress on a terminal (a bar on stderr per stage); nothing when stderr is not a terminal, so
scripts and cron see only each command's one-line result."""

from __future__ import annotations

import sys
from typing import Any

import click

from base.progress import SILENT, Progress


class TerminalProgress:
    """click's progress bar on stderr, one per stage."""

    def __init__(self) -> None:
        self._bar: Any = None

    def begin(self, label: str, total: int) -> None:
        self.end()
        self._bar = click.progressbar(length=max(total, 1), label=label, file=click.get_text_stream("stderr"),
                                      show_pos=True)
        self._bar.__enter__()

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def progress() -> Progress:
    return TerminalProgress() if sys.stderr.isatty() else SILENT
