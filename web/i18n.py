"""The page texts in Finnish, Swedish and English.

Each page keeps its texts in `locale/<page>.yaml`, `key: {fi: ..., sv: ..., en: ...}`, so pages
never edit one shared file. A key missing a language is a bug that `tests/unit/test_web_i18n.py`
finds; at run time the English text stands in rather than the page failing.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

LANGUAGES = ("fi", "sv", "en")
FALLBACK = "en"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
# Tests set this: a missing key then fails the page instead of showing the key.
STRICT = False


@cache
def catalogue() -> dict[str, dict[str, str]]:
    """Every key of every page file: key → language → text. Two files may not share a key."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(LOCALE_DIR.glob("*.yaml")):
        entries = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, texts in entries.items():
            if key in merged:
                raise ValueError(f"{path.name}: the key {key!r} is also in another locale file")
            merged[str(key)] = {str(lang): str(text) for lang, text in texts.items()}
    return merged


def language_of(preferred: str | None) -> str:
    return preferred if preferred in LANGUAGES else FALLBACK


class Translator:
    """`t("key", name=...)`: the text in this language, with `{name}` fields filled in."""

    def __init__(self, lang: str) -> None:
        self.lang = language_of(lang)
        self._texts = catalogue()

    def __call__(self, key: str, /, **fields: object) -> str:
        texts = self._texts.get(key)
        if texts is None:
            if STRICT:
                raise KeyError(f"no text {key!r} in web/locale")
            return key
        text = texts.get(self.lang) or texts.get(FALLBACK, key)
        return text.format(**fields) if fields else text
