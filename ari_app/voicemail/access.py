"""Listening: `Stasis(app,access)` on the shared voicemail number.

From the user's own number (or own softphone) straight into the mailbox, unless the user wants
the PIN always; from any other number the mailbox number and the PIN are asked. Then the menus of
SPEC, as tables of key → action. A key interrupts a prompt; an invalid key is answered.
"""

from __future__ import annotations

import logging

from ari_app.session import CallSession
from ari_app.voice import Voice
from base.model import TenantUser
from vmstore import FolderVisit, Message

from .services import VoicemailService

log = logging.getLogger(__name__)

MAIN_MENU = {
    "1": "listen_new",
    "2": "listen_old",
    "4": "play_greeting",
    "5": "record_greeting",
    "6": "delete_greeting",
    "*": "end",
    "0": "repeat",
}
MESSAGE_MENU = {"1": "previous", "2": "replay", "3": "next", "7": "delete", "*": "end", "0": "main"}

KEY_TIMEOUT = 6.0  # seconds to wait for a key after a menu
MENU_REPEATS = 3  # unanswered menus before we say goodbye
LOGIN_TRIES = 3  # per call; the lockout across calls is the call-state service's
GREETING_MAX_SECONDS = 60


class Hangup(Exception):
    """The caller chose to end the call (or never answered a menu)."""


class Access:
    def __init__(self, service: VoicemailService, voice: Voice) -> None:
        self.service = service
        self.voice = voice

    async def __call__(self, call: CallSession) -> None:
        await call.answer()
        lang = self.service.config.platform.default_language
        mailbox = await self._login(call, lang)
        if mailbox is None:
            await call.play(self.voice.media(lang, ["vm-goodbye"]), barge_in=False)
            await call.hangup()
            return
        menus = Menus(call, self.service, self.voice, mailbox)
        try:
            await menus.run()
        except Hangup:
            await call.play(self.voice.media(mailbox.user.language, ["vm-goodbye"]), barge_in=False)
            await call.hangup()

    # --- login -----------------------------------------------------------------------

    async def _login(self, call: CallSession, lang: str) -> TenantUser | None:
        tenant_id, user_id = call.vars.get("VIPBX_TENANT"), call.vars.get("VIPBX_USER")
        own = self.service.by_ids(tenant_id, user_id) if tenant_id and user_id else self.service.by_number(call.caller_number)
        if own is not None and own.user.has_voicemail:
            settings = await self.service.voicemail_settings(own)
            if not settings.always_ask_pin:
                log.info("%r: login to %s/%s by caller number", call, own.tenant.id, own.user.id)
                return own
            return await self._pin_login(call, own, own.user.language)
        for _ in range(LOGIN_TRIES):
            typed = await call.read(self.voice.media(lang, ["vm-enter-mailbox"]), max_digits=16, timeout=KEY_TIMEOUT)
            if not typed:
                continue
            target = self.service.by_number(typed)
            if target is not None and target.user.has_voicemail:
                return await self._pin_login(call, target, lang)
            # Unknown mailbox: ask the PIN anyway, so probing reveals nothing.
            await call.read(self.voice.media(lang, ["vm-enter-pin"]), max_digits=10, timeout=KEY_TIMEOUT)
            log.info("%r: login to unknown mailbox %r", call, typed)
            # Not interruptible: keys typed over it are the next answer (see _pin_login).
            await call.play(self.voice.media(lang, ["vm-pin-wrong"]), barge_in=False)
        return None

    async def _pin_login(self, call: CallSession, mailbox: TenantUser, lang: str) -> TenantUser | None:
        for _ in range(LOGIN_TRIES):
            if await self.service.pin_locked(mailbox):
                log.warning("%r: mailbox %s/%s is locked", call, mailbox.tenant.id, mailbox.user.id)
                await call.play(self.voice.media(lang, ["vm-locked"]), barge_in=False)
                return None
            pin = await call.read(self.voice.media(lang, ["vm-enter-pin"]), max_digits=10, timeout=KEY_TIMEOUT)
            check = await self.service.check_pin(mailbox, pin, actor=call.caller_number or "unknown")
            if check.ok:
                return mailbox
            if check.status.locked_until is not None:
                await call.play(self.voice.media(lang, ["vm-locked"]), barge_in=False)
                return None
            # Not interruptible: a barge-in key would be swallowed here, and a caller typing the
            # PIN again over this prompt would lose its first digit (one more failure to the lock).
            # Kept queued, the keys are the next PIN.
            await call.play(self.voice.media(lang, ["vm-pin-wrong"]), barge_in=False)
        return None


class Menus:
    """One logged-in caller's walk through the main menu and the message menu."""

    def __init__(self, call: CallSession, service: VoicemailService, voice: Voice, mailbox: TenantUser) -> None:
        self.call = call
        self.service = service
        self.voice = voice
        self.mailbox = mailbox
        self.lang = mailbox.user.language

    def say(self, *names: str) -> list[str]:
        return self.voice.media(self.lang, list(names))

    async def choose(self, prompt: list[str], table: dict[str, str]) -> str:
        """Play the menu until a valid key; the action name. Hangup after silent repeats."""
        silent = 0
        while True:
            key = await self.call.play(prompt) or await self.call.get_digits(1, KEY_TIMEOUT)
            if not key:
                silent += 1
                if silent >= MENU_REPEATS:
                    raise Hangup
                continue
            if key in table:
                return table[key]
            await self.call.play(self.say("vm-invalid-key"))

    async def run(self) -> None:
        new, old = await self.service.counts(self.mailbox)
        first = self.voice.media(self.lang, self.voice.count(self.lang, new, old))
        menu = self.say("vm-main-menu")
        prompt = first + menu
        while True:
            action = await self.choose(prompt, MAIN_MENU)
            prompt = menu
            if action == "end":
                raise Hangup
            if action == "listen_new":
                await self.listen("INBOX")
            elif action == "listen_old":
                await self.listen("Old")
            elif action == "play_greeting":
                await self.play_greeting()
            elif action == "record_greeting":
                await self.record_greeting()
            elif action == "delete_greeting":
                await self.service.delete_greeting(self.mailbox)
                await self.call.play(self.say("vm-greeting-deleted"))

    # --- messages --------------------------------------------------------------------

    async def listen(self, folder: str) -> None:
        visit = await self.service.open_folder(self.mailbox, folder)  # listed once per visit
        if not len(visit):
            await self.call.play(self.say("vm-no-new-messages" if folder == "INBOX" else "vm-no-old-messages"))
            return
        try:
            await self._walk(visit)
        finally:
            # Also on hang-up: what was heard becomes old, and phones learn of every change.
            await self.service.close_folder(visit)

    async def _walk(self, visit: FolderVisit) -> None:
        index = 0
        while 0 <= index < len(visit):
            message = await self.service.message_at(visit, index)
            if message is None:  # deleted meanwhile (another session, the CLI)
                continue
            key = await self.call.play(self._message_media(message))
            self.service.mark_heard(visit, index)  # a new message becomes old once left
            action = MESSAGE_MENU.get(key or "") or await self.choose(self.say("vm-message-menu"), MESSAGE_MENU)
            if action == "end":
                raise Hangup
            if action == "main":
                break
            if action == "replay":
                continue
            if action == "previous":
                if index == 0:
                    await self.call.play(self.say("vm-first-message"))
                else:
                    await self.service.leave_message(visit, index)
                    index -= 1
            elif action == "next":
                if index + 1 >= len(visit):
                    await self.call.play(self.say("vm-no-more-messages"))
                    break
                await self.service.leave_message(visit, index)
                index += 1
            elif action == "delete":
                await self.service.delete_message(visit, index)
                await self.call.play(self.say("vm-deleted"))
                if index >= len(visit):
                    await self.call.play(self.say("vm-no-more-messages"))
                    break

    def _message_media(self, message: Message) -> list[str]:
        envelope = message.envelope
        names = self.voice.envelope(self.lang, envelope.caller_number, envelope.orig_time)
        return self.say(*names) + [self.service.message_sound(message)]

    # --- greeting --------------------------------------------------------------------

    async def play_greeting(self) -> None:
        own = await self.service.greeting_sound(self.mailbox)
        if own is None:
            await self.call.play(self.say("vm-no-greeting"))
            return
        await self.call.play([own])

    async def record_greeting(self) -> None:
        await self.call.play(self.say("vm-greeting-record-after-beep"))
        name = await self.service.start_greeting()
        finished = await self.call.record(name, max_seconds=GREETING_MAX_SECONDS, max_silence=5, terminate_on="#")
        if finished is None:  # hung up while recording: keep the old greeting
            await self.service.discard_recording(name)
            return
        # Keys pressed while recording, the ending # included, are queued too (their events come
        # before RecordingFinished): drop them, or they would barge in on the playback below.
        await self.call.get_digits(max_digits=100, timeout=0.05, terminator="")
        recorded = await self.service.recorded_greeting(name)
        if recorded is None:
            await self.call.play(self.say("vm-greeting-too-short"))
            return
        await self.call.play([recorded])
        await self.service.save_greeting(self.mailbox, name)
        await self.call.play(self.say("vm-greeting-saved"))
