"""One caller's side of an IVR: prompts by name in the caller's language, any key interrupts any
prompt, and a key that cut a prompt short is the caller's next answer.

Only the last words before hanging up (`announce`, `goodbye`) let keys pass: nothing is asked
after them, so there is no answer a key could be.
"""

from __future__ import annotations

from collections.abc import Sequence

from ari_app.session import CallSession
from ari_app.voice import Voice

KEY_TIMEOUT = 6.0  # seconds to wait for a key after a prompt


class Ivr:
    def __init__(self, call: CallSession, voice: Voice, lang: str) -> None:
        self.call = call
        self.voice = voice
        self.lang = lang

    def in_language(self, lang: str) -> Ivr:
        """The same call spoken to in `lang` (e.g. a known user's language during their login)."""
        return Ivr(self.call, self.voice, lang)

    def prompt(self, *names: str) -> list[str]:
        """The media of prompts from the catalogue, in this conversation's language."""
        return self.voice.media(self.lang, list(names))

    async def say(self, *names: str) -> None:
        """Prompts that any key interrupts; see `play`."""
        await self.play(self.prompt(*names))

    async def play(self, media: Sequence[str]) -> None:
        """Any key interrupts; it is put back, so the next read or menu takes it as its answer
        (and skips its own prompt): a key pressed during "deleted" is the next menu choice."""
        key = await self.call.play(media)
        if key is not None:
            self.call.push_back(key)

    async def ask(self, name: str, *, max_digits: int, timeout: float = KEY_TIMEOUT, terminator: str = "#") -> str:
        """A prompt the caller may type over, then the rest of an answer of up to `max_digits`
        keys; "" when nothing was typed (`call.last_terminator` tells whether the terminator was)."""
        return await self.call.read(self.prompt(name), max_digits, timeout, terminator)

    async def announce(self, *names: str) -> None:
        """Said to the end whatever is pressed: only for the last words before hanging up."""
        await self.call.play(self.prompt(*names), barge_in=False)

    async def goodbye(self) -> None:
        await self.announce("vm-goodbye")
        await self.call.hangup()
