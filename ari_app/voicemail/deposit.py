"""Leaving a message: `Stasis(app,deposit)` for calls the network diverted to the voicemail number
(the user is in REDIRECTING(from-num)), `Stasis(app,deposit,TENANT,USER,REASON)` for calls the
PBX's own routing sends to voicemail.

Greeting (own, else the default that says the number) → optional activity sentence → optional
"press 1 for customer service" → beep → record until hang-up, #, silence or the maximum length.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ari_app.client import AriError
from ari_app.connect import connect
from ari_app.origin import Origin
from ari_app.session import CallSession, ChannelGone
from ari_app.voice import Voice
from base import logcontext
from base.model import TenantUser

from .services import NotSaved, VoicemailService

log = logging.getLogger(__name__)

MAX_SILENCE_SECONDS = 5

NOT_SAVED = object()  # finish_message failed: the journal keeps the recording for a later scan

# The presence feature's sentence for the greeting: (mailbox, language) -> prompt names, or None.
ActivitySentence = Callable[[TenantUser, str], Awaitable[list[str] | None]]


class Deposit:
    def __init__(self, service: VoicemailService, voice: Voice, activity_sentence: ActivitySentence | None = None) -> None:
        self.service = service
        self.voice = voice
        # Hook for the presence feature: (mailbox, language) -> prompt names, or None.
        self.activity_sentence = activity_sentence

    async def __call__(self, call: CallSession) -> None:
        mailbox, called = await self._mailbox(call)
        if mailbox is None:
            log.warning("%r: voicemail for %r, which is no user's number", call, called)
            await call.answer()
            await call.play(self.voice.media(self.service.config.platform.default_language, ["vm-unknown-number-apology"]), barge_in=False)
            await call.hangup()
            return
        logcontext.bind(tenant=mailbox.tenant.id, user=mailbox.user.id)  # the mailbox's owner
        if not mailbox.user.has_voicemail:
            # "No voicemail": the caller gets busy treatment, never a greeting.
            await call.hangup(reason="busy")
            return
        await call.answer()
        lang = mailbox.user.language
        settings = await self.service.voicemail_settings(mailbox)
        own = await self.service.greeting_sound(mailbox)
        # Checked again now: the policy may have changed since the number was stored.
        press1 = self.service.press1_target(mailbox, settings.press1_number)
        key = await call.play(await self._greeting(mailbox, lang, settings.play_activity, press1, own))
        if key == "1" and press1:
            log.info("%r: caller pressed 1, connecting to %s", call, press1)
            await connect(call, press1, mailbox.tenant.id, mailbox.user.id)
            return
        await self._record(call, mailbox, called)

    async def resume(self, call: CallSession) -> None:
        """A deposit an earlier app left recording (a restart, an upgrade): wait for the caller to
        finish, deliver, and say goodbye as `_record` would. Without such a recording (the caller
        was hearing the greeting) the call goes on in the dialplan's fallback."""
        name = await self.service.adopt_recording(call.id, str(call.channel.get("name", "")))
        if name is None:
            delivered = await self.service.delivered_for(call.id)
            if delivered is not None:  # the caller ended (#) while no app ran; the scan delivered it
                lang = str(delivered.get("language") or self.service.config.platform.default_language)
                await self._last_words(call, lang, ["vm-message-saved", "vm-goodbye"])
                return
            await call.continue_in_dialplan()
            return
        log.info("%r: taking up recording %s left by the last start", call, name)
        try:
            finished = await call.wait_recording(name)
        except BaseException:
            self.service.leave_to_scan(name)
            raise
        await self._deliver(call, name, finished, await self.service.recording_language(name))

    async def _mailbox(self, call: CallSession) -> tuple[TenantUser | None, str]:
        if len(call.args) >= 2 and call.args[0]:
            return self.service.by_ids(call.args[0], call.args[1]), f"{call.args[0]}/{call.args[1]}"
        diverted = await call.get_var("REDIRECTING(from-num)") or ""
        # A national number is read in the country of the trunk the call came in on.
        country = Origin.of(self.service.config, call.vars).country_code
        return self.service.by_number(diverted, country), diverted

    async def _greeting(self, mailbox: TenantUser, lang: str, play_activity: bool, press1: str | None,
                  own: str | None = None) -> list[str]:
        """What the caller hears before the beep; `own` is the user's own greeting, if any."""
        if own is not None:
            media = [own]
        else:
            media = self.voice.media(lang, self.voice.greeting(lang, mailbox.user.number))
        if play_activity and self.activity_sentence is not None:
            sentence = await self.activity_sentence(mailbox, lang)
            if sentence:
                media += self.voice.media(lang, sentence)
        if press1:
            media += self.voice.media(lang, ["vm-press-1-customer-service"])
        return media

    async def _record(self, call: CallSession, mailbox: TenantUser, called: str) -> None:
        caller = call.channel.get("caller", {})
        lang = mailbox.user.language
        try:
            name = await self.service.start_message(mailbox, caller_number=caller.get("number", ""),
                                                    caller_name=caller.get("name", ""),
                                                    channel=call.channel.get("name", ""), channel_id=call.id)
        except NotSaved:
            await self._last_words(call, lang, ["vm-message-not-saved"])
            return
        finished = None
        try:
            finished = await call.record(
                name, max_seconds=mailbox.tenant.max_message_seconds, max_silence=MAX_SILENCE_SECONDS, terminate_on="#"
            )
        except ChannelGone:
            pass
        except AriError as exc:  # Asterisk could not record (e.g. a full disk)
            log.error("%r: recording %s refused: %s", call, name, exc)
            finished = {"name": name, "state": "failed"}
        except BaseException:
            # Stopped (e.g. shut down) while Asterisk may still be recording: the next start
            # takes the call up (`resume`), else the orphan scan delivers it once the file has
            # gone quiet.
            self.service.leave_to_scan(name)
            raise
        await self._deliver(call, name, finished, lang)

    async def _deliver(self, call: CallSession, name: str, finished: dict[str, Any] | None, lang: str) -> None:
        try:
            message = await self.service.finish_message(name)
        except NotSaved:
            message = NOT_SAVED
        if finished is None or call.gone:
            return  # hung up: the message is saved (or kept for the next scan), nobody to talk to
        if message is NOT_SAVED or (message is None and finished.get("state") == "failed"):
            await self._last_words(call, lang, ["vm-message-not-saved"])
            return
        await self._last_words(call, lang, ["vm-message-saved", "vm-goodbye"] if message else ["vm-goodbye"])

    async def _last_words(self, call: CallSession, lang: str, names: list[str]) -> None:
        try:
            await call.play(self.voice.media(lang, names), barge_in=False)
            await call.hangup()
        except ChannelGone:
            pass
