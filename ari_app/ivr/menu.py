"""A menu as a table of key → action, with the repeat key, the answer to an invalid key, and a
goodbye after menus left unanswered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .talk import KEY_TIMEOUT, Ivr

MENU_REPEATS = 3  # menus in a row with no key before we say goodbye

# An action: None to hear the menu again, any other value leaves `Menu.run` with that value.
Action = Callable[[], Awaitable[Any]]


class Goodbye(Exception):
    """The caller is done: they chose to end, or left the menu unanswered too often."""


async def leave() -> Any:
    """The action of an "end" key."""
    raise Goodbye


@dataclass(frozen=True)
class Menu:
    actions: Mapping[str, Action]
    repeat_key: str | None = "0"  # hear the menu again (without its intro); None: no such key
    invalid: str = "vm-invalid-key"  # said for a key with no action, then the menu again
    timeout: float = KEY_TIMEOUT
    repeats: int = MENU_REPEATS

    async def choose(self, ivr: Ivr, prompt: Sequence[str]) -> str:
        """Play `prompt` until the caller presses a key of the table or the repeat key, and return
        it. Every key counts (`#` too); Goodbye after `repeats` silent menus in a row."""
        silent = 0
        while True:
            key = await ivr.call.read(prompt, 1, self.timeout, terminator="")
            if not key:
                silent += 1
                if silent >= self.repeats:
                    raise Goodbye
                continue
            if key in self.actions or key == self.repeat_key:
                return key
            silent = 0
            await ivr.say(self.invalid)

    async def run(self, ivr: Ivr, prompt: Sequence[str], *, intro: Sequence[str] = ()) -> Any:
        """The menu until an action returns something other than None, which is returned.

        `intro` is said in the same playback before the menu (e.g. the message counts) until the
        caller's first choice: after the repeat key or an action the menu comes alone."""
        first: Sequence[str] = [*intro, *prompt]
        while True:
            key = await self.choose(ivr, first)
            first = prompt
            if key not in self.actions:  # the repeat key
                continue
            result = await self.actions[key]()
            if result is not None:
                return result
