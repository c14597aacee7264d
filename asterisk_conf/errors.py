"""Problems found in the YAML configuration, and the exception that carries all of them.

A run of the validator collects every problem instead of stopping at the first, so that an
operator fixes a file in one go. Each problem names the file, the line and the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    # Dotted path such as "tenants[acme].users[anna.virtanen].pin"; ids in brackets where the
    # item has a usable id, else its index. Empty for problems of the whole file.
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.key:
            return f"{where}: {self.key}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is not valid; `problems` lists every reason, in file and line order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
