"""Spoken prompts in Finnish (default), Swedish and English.

- `catalogue`: every prompt NAME → text per language (a data table).
- `speech`: sentences as lists of prompt names (counts, numbers, phone numbers, dates, envelopes).
- `build`: generates `<sounds_dir>/<lang>/<name>.wav` with espeak-ng + sox (8 kHz mono), only what
  changed; an operator's recording in `<sounds_dir>/custom/<lang>/<name>.wav` replaces a prompt.
- `media`: `PromptLibrary` turns names into ARI `sound:` URIs, falling back to the default language.
- `cli`: `vipbx prompts build|say`.
"""

from .catalogue import DEFAULT_LANGUAGE, LANGUAGES
from .media import PromptLibrary

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "PromptLibrary"]
