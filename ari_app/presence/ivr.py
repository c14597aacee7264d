"""The activity-change number: `Stasis(app,activity)`.

The caller is known by their own number or device (the PIN is asked anyway when the user wants it
always, as for voicemail); from any other number the user's number and PIN are asked, with the same
lockout as voicemail. Then: the current activity and its end time; the menu of the tenant's
activities by digit (`0` repeats, `*` ends, other keys are answered); for an activity other than
Available an end time (today HHMM, or a number of days, or `#` for none); a confirmation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from ari_app.session import CallSession
from ari_app.voice import Voice
from base.model import AVAILABLE, Tenant, User
from callstate import Presence, SettingsError, StorageError
from prompts import speech

from .services import PresenceService

log = logging.getLogger(__name__)

KEY_TIMEOUT = 6.0  # seconds to wait for a key after a menu
MENU_REPEATS = 3  # unanswered menus before we say goodbye
LOGIN_TRIES = 3
TIME_TRIES = 3
MAX_DAYS = 365
SOURCE = "ivr"


@dataclass(frozen=True)
class Caller:
    tenant: Tenant
    user: User
    actor: str  # who, for the audit trail: the calling number or device


class ActivityIvr:
    def __init__(self, service: PresenceService, voice: Voice) -> None:
        self.service = service
        self.voice = voice

    async def __call__(self, call: CallSession) -> None:
        await call.answer()
        lang = self.service.config.platform.default_language
        try:
            caller = await self._login(call, lang)
            if caller is not None:
                await self._session(call, caller)
                lang = caller.user.language
        except StorageError:
            log.exception("%r: call state not available", call)
            await call.play(self.voice.media(lang, ["fc-refused-error"]), barge_in=False)
        await call.play(self.voice.media(lang, ["vm-goodbye"]), barge_in=False)
        await call.hangup()

    # --- who is calling ------------------------------------------------------------------

    async def _login(self, call: CallSession, lang: str) -> Caller | None:
        config = self.service.config
        tenant_id, user_id = call.vars.get("VIPBX_TENANT"), call.vars.get("VIPBX_USER")
        own = config.find_user(tenant_id, user_id) if tenant_id and user_id else None
        if own is None and call.caller_number:
            own = config.find_caller(call.caller_number)
        if own is not None:
            tenant, user = own
            always = self.service.state.voicemail_settings(tenant.id, user.id).always_ask_pin \
                if user.has_voicemail else False
            if not always:
                log.info("%r: %s/%s known by caller number", call, tenant.id, user.id)
                return Caller(tenant, user, call.caller_number or user.number)
            return await self._pin(call, tenant, user, user.language)
        for _ in range(LOGIN_TRIES):
            typed = await call.read(self.voice.media(lang, ["act-enter-number"]), max_digits=16,
                                    timeout=KEY_TIMEOUT)
            if not typed:
                continue
            target = config.find_caller(typed)
            if target is not None:
                return await self._pin(call, *target, lang)
            # An unknown number: ask a PIN anyway, so that probing reveals nothing.
            await call.read(self.voice.media(lang, ["vm-enter-pin"]), max_digits=10, timeout=KEY_TIMEOUT)
            await call.play(self.voice.media(lang, ["vm-pin-wrong"]), barge_in=False)
        return None

    async def _pin(self, call: CallSession, tenant: Tenant, user: User, lang: str) -> Caller | None:
        for _ in range(LOGIN_TRIES):
            typed = await call.read(self.voice.media(lang, ["vm-enter-pin"]), max_digits=10, timeout=KEY_TIMEOUT)
            check = self.service.state.check_pin(tenant.id, user.id, typed, source=SOURCE,
                                                 actor=call.caller_number or "unknown")
            if check.ok:
                return Caller(tenant, user, call.caller_number or user.number)
            if check.locked:
                await call.play(self.voice.media(lang, ["vm-locked"]), barge_in=False)
                return None
            await call.play(self.voice.media(lang, ["vm-pin-wrong"]), barge_in=False)
        return None

    # --- the menu ------------------------------------------------------------------------

    async def _session(self, call: CallSession, caller: Caller) -> None:
        lang = caller.user.language
        current = await self.service.presence(caller.tenant, caller.user)
        # A key pressed while the current activity is said already answers the menu.
        early = await call.play(self.voice.media(lang, self._current(lang, current)))
        by_digit = {a.digit: a.key for a in caller.tenant.activities}
        unanswered = 0
        while unanswered < MENU_REPEATS:
            key, early = early or await call.read(self.voice.media(lang, self._menu(lang, caller.tenant)),
                                                  max_digits=1, timeout=KEY_TIMEOUT, terminator=""), None
            if not key:
                unanswered += 1
                continue
            unanswered = 0
            if key == "*":
                return
            if key == "0":
                continue
            if key not in by_digit:
                await call.play(self.voice.media(lang, ["vm-invalid-key"]))
                continue
            changed = await self._choose(call, caller, by_digit[key])
            if changed:
                return

    async def _choose(self, call: CallSession, caller: Caller, activity: str) -> bool:
        lang = caller.user.language
        until = None
        if activity != AVAILABLE:
            found, until = await self._end_time(call, lang)
            if not found:
                return False
        try:
            presence = await self.service.change(caller.tenant, caller.user, activity, until,
                                                 actor=caller.actor, source=SOURCE)
        except SettingsError as exc:
            log.info("%r: %s/%s activity refused: %s", call, caller.tenant.id, caller.user.id, exc)
            await call.play(self.voice.media(lang, ["fc-refused"]))
            return False
        await call.play(self.voice.media(lang, ["act-changed", *self._current(lang, presence)]), barge_in=False)
        return True

    async def _end_time(self, call: CallSession, lang: str) -> tuple[bool, datetime | None]:
        """(True, end time or None) once the caller has entered one or skipped with '#'."""
        for _ in range(TIME_TRIES):
            # Room for the '#' after HHMM: left queued, it would cut the next prompt short.
            typed = await call.read(self.voice.media(lang, ["act-enter-until"]), max_digits=5,
                                    timeout=KEY_TIMEOUT * 2)
            if typed == "" and call.last_terminator == "#":
                return True, None
            until = parse_end_time(typed, self.voice.now())
            if until is not None:
                return True, until
            await call.play(self.voice.media(lang, ["act-invalid-time"]))
        return False, None

    # --- what is said --------------------------------------------------------------------

    def _current(self, lang: str, presence: Presence) -> list[str]:
        names = ["act-current-is", f"act-{presence.activity}"]
        if presence.until is not None:
            now = self.voice.now()
            names += speech.until_phrase(lang, presence.until.astimezone(now.tzinfo), now)
        return names

    @staticmethod
    def _menu(lang: str, tenant: Tenant) -> list[str]:
        names = ["act-choose"]
        for activity in tenant.activities:
            names += [f"act-{activity.key}", "press", f"digit-{activity.digit}"]
        return [*names, "act-menu-tail"]


def parse_end_time(typed: str, now: datetime) -> datetime | None:
    """What the caller typed → the end time (aware, in `now`'s zone), or None if it is no time.

    Four digits: HHMM today (tomorrow when that time has passed). One to three digits: that many
    days, ending at midnight, so 1 means "back tomorrow morning".
    """
    if not typed.isdigit():
        return None
    if len(typed) == 4:
        hour, minute = int(typed[:2]), int(typed[2:])
        if hour > 23 or minute > 59:
            return None
        moment = datetime.combine(now.date(), time(hour, minute), now.tzinfo)
        return moment if moment > now else moment + timedelta(days=1)
    days = int(typed)
    if not 1 <= days <= MAX_DAYS:
        return None
    return datetime.combine(now.date() + timedelta(days=days), time(0, 0), now.tzinfo)
