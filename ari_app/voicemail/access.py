"""Listening: `Stasis(app,access)` on the shared voicemail number.

From the user's own number (or own softphone) straight into the mailbox, unless the user wants
the PIN always; from any other number the mailbox number and the PIN are asked. Then the menus of
SPEC, as tables of key → action. A key interrupts a prompt; an invalid key is answered.
"""

from __future__ import annotations

import logging
import uuid

from ari_app.session import CallSession
from ari_app.voice import Voice
from vmstore import Message

from .services import Mailbox, VoicemailService, wav_seconds

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

    async def _login(self, call: CallSession, lang: str) -> Mailbox | None:
        tenant_id, user_id = call.vars.get("VIPBX_TENANT"), call.vars.get("VIPBX_USER")
        own = self.service.by_ids(tenant_id, user_id) if tenant_id and user_id else self.service.by_number(call.caller_number)
        if own is not None and own.user.has_voicemail:
            settings = self.service.callstate.voicemail_settings(own.tenant.id, own.user.id)
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

    async def _pin_login(self, call: CallSession, mailbox: Mailbox, lang: str) -> Mailbox | None:
        callstate = self.service.callstate
        for _ in range(LOGIN_TRIES):
            if callstate.pin_status(mailbox.tenant.id, mailbox.user.id).locked_until is not None:
                log.warning("%r: mailbox %s/%s is locked", call, mailbox.tenant.id, mailbox.user.id)
                await call.play(self.voice.media(lang, ["vm-locked"]), barge_in=False)
                return None
            pin = await call.read(self.voice.media(lang, ["vm-enter-pin"]), max_digits=10, timeout=KEY_TIMEOUT)
            check = callstate.check_pin(
                mailbox.tenant.id, mailbox.user.id, pin, source="ivr", actor=call.caller_number or "unknown"
            )
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

    def __init__(self, call: CallSession, service: VoicemailService, voice: Voice, mailbox: Mailbox) -> None:
        self.call = call
        self.service = service
        self.store = service.store
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
        new, old = self.store.counts(self.mailbox.context, self.mailbox.box)
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
                self.store.delete_greeting(self.mailbox.context, self.mailbox.box)
                await self.call.play(self.say("vm-greeting-deleted"))

    # --- messages --------------------------------------------------------------------

    def _find(self, msg_id: str) -> Message | None:
        # Numbers shift as messages move and go; the msg_id is stable.
        for folder in ("INBOX", "Old"):
            for message in self.store.list(self.mailbox.context, self.mailbox.box, folder):
                if message.envelope.msg_id == msg_id:
                    return message
        return None

    async def listen(self, folder: str) -> None:
        ids = [m.envelope.msg_id for m in self.store.list(self.mailbox.context, self.mailbox.box, folder)]
        if not ids:
            await self.call.play(self.say("vm-no-new-messages" if folder == "INBOX" else "vm-no-old-messages"))
            return
        index, changed = 0, False
        while 0 <= index < len(ids):
            message = self._find(ids[index])
            if message is None:  # deleted meanwhile (another session, the CLI)
                del ids[index]
                continue
            key = await self.call.play(self._message_media(message))
            if message.folder == "INBOX":
                self.store.mark_old(message)  # heard: a new message becomes old
                changed = True
            action = MESSAGE_MENU.get(key or "") or await self.choose(self.say("vm-message-menu"), MESSAGE_MENU)
            if action == "end":
                await self._refresh(changed)
                raise Hangup
            if action == "main":
                break
            if action == "replay":
                continue
            if action == "previous":
                if index == 0:
                    await self.call.play(self.say("vm-first-message"))
                else:
                    index -= 1
            elif action == "next":
                if index + 1 >= len(ids):
                    await self.call.play(self.say("vm-no-more-messages"))
                    break
                index += 1
            elif action == "delete":
                current = self._find(ids[index])
                if current is not None:
                    self.store.delete(current)
                    changed = True
                del ids[index]
                await self.call.play(self.say("vm-deleted"))
                if index >= len(ids):
                    await self.call.play(self.say("vm-no-more-messages"))
                    break
        await self._refresh(changed)

    def _message_media(self, message: Message) -> list[str]:
        envelope = message.envelope
        names = self.voice.envelope(self.lang, envelope.caller_number, envelope.orig_time)
        return self.say(*names) + [f"sound:{message.wav.with_suffix('')}"]

    async def _refresh(self, changed: bool) -> None:
        if changed:
            await self.service.after_change(self.mailbox)

    # --- greeting --------------------------------------------------------------------

    async def play_greeting(self) -> None:
        own = self.store.greeting(self.mailbox.context, self.mailbox.box)
        if own is None:
            await self.call.play(self.say("vm-no-greeting"))
            return
        await self.call.play([f"sound:{own.with_suffix('')}"])

    async def record_greeting(self) -> None:
        await self.call.play(self.say("vm-greeting-record-after-beep"))
        name = f"vipbx/greeting-{uuid.uuid4()}"
        wav = self.service.recording_path(name)
        # Asterisk makes subfolders of <spool>/recording but not that folder itself, which a fresh
        # install lacks until a first message: without it ARI refuses the recording (HTTP 500).
        wav.parent.mkdir(parents=True, exist_ok=True)
        finished = await self.call.record(name, max_seconds=GREETING_MAX_SECONDS, max_silence=5, terminate_on="#")
        if finished is None:  # hung up while recording: keep the old greeting
            wav.unlink(missing_ok=True)
            return
        # Keys pressed while recording, the ending # included, are queued too (their events come
        # before RecordingFinished): drop them, or they would barge in on the playback below.
        await self.call.get_digits(max_digits=100, timeout=0.05, terminator="")
        if wav_seconds(wav) < 1.0:
            wav.unlink(missing_ok=True)
            await self.call.play(self.say("vm-greeting-too-short"))
            return
        await self.call.play([f"sound:{wav.with_suffix('')}"])
        self.store.set_greeting(self.mailbox.context, self.mailbox.box, wav)
        await self.call.play(self.say("vm-greeting-saved"))
