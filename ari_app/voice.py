"""What the caller hears, by prompt name: the catalogue's files as ARI media, and the sentences
(numbers, counts, dates) composed per language."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from prompts import PromptLibrary, speech

# Times are stored in UTC and said in the service's local time.
SPOKEN_TIME_ZONE = ZoneInfo("Europe/Helsinki")


class Voice:
    def __init__(self, sounds_dir: Path, default_language: str, zone: ZoneInfo = SPOKEN_TIME_ZONE) -> None:
        self.library = PromptLibrary(sounds_dir, default_language=default_language)
        self.zone = zone

    def now(self) -> datetime:
        return datetime.now(self.zone)

    def media(self, lang: str, names: list[str]) -> list[str]:
        return self.library.compose(lang, names)

    def greeting(self, lang: str, number: str) -> list[str]:
        return speech.default_greeting(lang, number)

    def count(self, lang: str, new: int, old: int) -> list[str]:
        return speech.count_messages(lang, new, old)

    def envelope(self, lang: str, caller: str | None, when: datetime) -> list[str]:
        return speech.envelope(lang, caller, when, self.now())
