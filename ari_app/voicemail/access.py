"""Listening: `Stasis(app,access)` on the shared voicemail number, built from the IVR toolkit.

The login is the toolkit's (`ari_app.ivr.Login`): from the user's own number or softphone straight
into the mailbox, unless the user wants the PIN always; from any other number the mailbox number,
then the PIN; a locked mailbox is refused before any PIN is taken. Then the menus of SPEC as tables
of key → action (`Menu`). Any key interrupts any prompt, short confirmations ("deleted", "invalid
key", ...) included, and is acted on as the caller's next choice; only the last words before
hanging up ("locked", the goodbye) are said to the end.
"""

from __future__ import annotations

import functools

from ari_app.ivr import Goodbye, Ivr, Login, LoginPrompts, Menu, leave
from ari_app.session import CallSession
from ari_app.voice import Voice
from base.model import TenantUser
from vmstore import FolderVisit, Message

from .services import VoicemailService

KEY_TIMEOUT = 6.0  # seconds to wait for a key after a prompt or menu
GREETING_MAX_SECONDS = 60
GREETING_MAX_SILENCE = 5
LOGIN_PROMPTS = LoginPrompts(number="vm-enter-mailbox")
NO_MESSAGES = {"INBOX": "vm-no-new-messages", "Old": "vm-no-old-messages"}


class Access:
    def __init__(self, service: VoicemailService, voice: Voice) -> None:
        self.service = service
        self.voice = voice

    async def __call__(self, call: CallSession) -> None:
        await call.answer()
        ivr = Ivr(call, self.voice, self.service.config.platform.default_language)
        # Built per call: a reloaded configuration applies to the next login.
        login = Login(self.service.config, self.service.pins(), LOGIN_PROMPTS,
                      eligible=lambda user: user.has_voicemail, key_timeout=KEY_TIMEOUT)
        caller = await login(ivr)
        if caller is not None:
            try:
                await MainMenu(ivr, self.service, caller.who).run()
            except Goodbye:
                pass
        await ivr.goodbye()


class MainMenu:
    """1 new, 2 old, 4 play greeting, 5 record greeting, 6 delete greeting, * end, 0 repeat."""

    def __init__(self, ivr: Ivr, service: VoicemailService, mailbox: TenantUser) -> None:
        self.ivr = ivr
        self.service = service
        self.mailbox = mailbox
        self.menu = Menu({
            "1": functools.partial(self.listen, "INBOX"),
            "2": functools.partial(self.listen, "Old"),
            "4": self.play_greeting,
            "5": self.record_greeting,
            "6": self.delete_greeting,
            "*": leave,
        }, repeat_key="0", timeout=KEY_TIMEOUT)

    async def run(self) -> None:
        """Until the caller ends (Goodbye) or hangs up. The counts come once, before the first menu."""
        new, old = await self.service.counts(self.mailbox)
        counts = self.ivr.prompt(*self.ivr.voice.count(self.ivr.lang, new, old))
        await self.menu.run(self.ivr, self.ivr.prompt("vm-main-menu"), intro=counts)

    async def listen(self, folder: str) -> None:
        visit = await self.service.open_folder(self.mailbox, folder)  # listed once per visit
        if not len(visit):
            await self.ivr.say(NO_MESSAGES[folder])
            return
        try:
            await Listening(self.ivr, self.service, visit).run()
        finally:
            # Also on `*` and on hang-up: what was heard becomes old, and phones learn of it.
            await self.service.close_folder(visit)

    async def play_greeting(self) -> None:
        own = await self.service.greeting_sound(self.mailbox)
        if own is None:
            await self.ivr.say("vm-no-greeting")
        else:
            await self.ivr.play([own])

    async def record_greeting(self) -> None:
        call = self.ivr.call
        # A key during the instruction only skips it: the caller wants the beep, and a key queued
        # for later could not end a recording anyway.
        await call.play(self.ivr.prompt("vm-greeting-record-after-beep"))
        name = await self.service.start_greeting()
        finished = await call.record(name, max_seconds=GREETING_MAX_SECONDS, max_silence=GREETING_MAX_SILENCE,
                                     terminate_on="#")
        if finished is None:  # hung up while recording: keep the old greeting
            await self.service.discard_recording(name)
            return
        # Keys pressed while recording, the ending # included, are queued too (their events come
        # before RecordingFinished): drop them, or they would cut the playback below short.
        await call.get_digits(max_digits=100, timeout=0.05, terminator="")
        recorded = await self.service.recorded_greeting(name)
        if recorded is None:
            await self.ivr.say("vm-greeting-too-short")
            return
        await self.ivr.play([recorded])
        await self.service.save_greeting(self.mailbox, name)
        await self.ivr.say("vm-greeting-saved")

    async def delete_greeting(self) -> None:
        await self.service.delete_greeting(self.mailbox)
        await self.ivr.say("vm-greeting-deleted")


class Listening:
    """One pass through a folder: each message after its envelope (caller, date and time), then the
    message menu: 1 previous, 2 replay, 3 next, 7 delete, * end, 0 back to the main menu. A key
    pressed while the message plays is the menu's answer. Each action says whether the caller
    stays in the folder (True) or goes back to the main menu (False)."""

    def __init__(self, ivr: Ivr, service: VoicemailService, visit: FolderVisit) -> None:
        self.ivr = ivr
        self.service = service
        self.visit = visit
        self.index = 0
        self.menu = Menu({
            "1": self.previous,
            "2": self.replay,
            "3": self.next,
            "7": self.delete,
            "*": leave,
            "0": self.back,
        }, repeat_key=None, timeout=KEY_TIMEOUT)

    async def run(self) -> None:
        while 0 <= self.index < len(self.visit):
            message = await self.service.message_at(self.visit, self.index)
            if message is None:  # deleted meanwhile (another session, the CLI): the next one
                continue
            # A key still waiting (pressed during "deleted", say) answers for this message before
            # it plays: it was not heard, so it stays new.
            if not self.ivr.call.keys_waiting:
                await self.ivr.play(self._media(message))
                self.service.mark_heard(self.visit, self.index)  # new → old once the caller leaves it
            key = await self.menu.choose(self.ivr, self.ivr.prompt("vm-message-menu"))
            if not await self.menu.actions[key]():
                return

    def _media(self, message: Message) -> list[str]:
        envelope = message.envelope
        names = self.ivr.voice.envelope(self.ivr.lang, envelope.caller_number, envelope.orig_time)
        return [*self.ivr.prompt(*names), self.service.message_sound(message)]

    async def previous(self) -> bool:
        if self.index == 0:
            await self.ivr.say("vm-first-message")  # then the first one again
            return True
        await self.service.leave_message(self.visit, self.index)
        self.index -= 1
        return True

    async def replay(self) -> bool:
        return True

    async def next(self) -> bool:
        if self.index + 1 >= len(self.visit):
            await self.ivr.say("vm-no-more-messages")
            return False
        await self.service.leave_message(self.visit, self.index)
        self.index += 1
        return True

    async def delete(self) -> bool:
        await self.service.delete_message(self.visit, self.index)  # the index names the next one now
        await self.ivr.say("vm-deleted")
        if self.index >= len(self.visit):
            await self.ivr.say("vm-no-more-messages")
            return False
        return True

    async def back(self) -> bool:
        return False
