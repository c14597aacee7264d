"""Prompt names → ARI media URIs (`sound:/abs/dir/<lang>/<name>`, no extension)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from .catalogue import DEFAULT_LANGUAGE

log = logging.getLogger(__name__)

# Names end up in file paths: refuse anything that could leave the sounds folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class PromptLibrary:
    """The built prompts in SOUNDS_DIR (see `prompts.build`).

    A prompt missing in the caller's language falls back to DEFAULT_LANGUAGE (the platform's
    default language). Existence is checked on every call (a stat), so a recording an operator
    installs is used at once without restarting the app.
    """

    def __init__(self, sounds_dir: Path, default_language: str = DEFAULT_LANGUAGE) -> None:
        self.sounds_dir = Path(sounds_dir).absolute()
        self.default_language = default_language
        self._warned: set[tuple[str, str]] = set()

    def path(self, lang: str, name: str) -> Path | None:
        """The file played for NAME in LANG (after fallback), or None when there is none."""
        if not _NAME.fullmatch(name) or not _NAME.fullmatch(lang):
            raise ValueError(f"not a prompt name: {lang!r}/{name!r}")
        for candidate in dict.fromkeys((lang, self.default_language)):
            file = self.sounds_dir / candidate / f"{name}.wav"
            if file.is_file():
                return file
        return None

    def media(self, lang: str, name: str) -> str:
        """The ARI media URI for NAME in LANG, e.g. `sound:/var/lib/vipbx/sounds/fi/vm-goodbye`."""
        file = self.path(lang, name)
        if file is None:
            # Still return a URI: Asterisk logs the missing file and skips it; the call goes on.
            if (lang, name) not in self._warned:
                self._warned.add((lang, name))
                log.warning("prompt %s/%s missing in %s (run `vipbx prompts build`)", lang, name, self.sounds_dir)
            file = self.sounds_dir / lang / f"{name}.wav"
        return f"sound:{file.with_suffix('')}"

    def compose(self, lang: str, names: Iterable[str]) -> list[str]:
        """Media URIs for NAMES, in order (e.g. the output of a `prompts.speech` function)."""
        return [self.media(lang, name) for name in names]
