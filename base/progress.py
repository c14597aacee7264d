"""How long work reports its progress (prompt building, deploys, backups): a terminal shows a
bar, a script nothing. The work calls a Progress; the command line picks which one."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, label: str, total: int) -> None:
        """A new stage of `total` steps (files, prompts, modules, bytes)."""

    def advance(self, steps: int = 1) -> None: ...

    def end(self) -> None: ...


class _Silent:
    def begin(self, label: str, total: int) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def end(self) -> None:
        pass


SILENT: Progress = _Silent()
