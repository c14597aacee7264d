"""The activity-change number: `Stasis(app,activity)`.

The caller is known by their own number or device (the PIN is asked anyway when the user wants it
always, as for voicemail); from any other number the user's number and PIN are asked, with the same
lockout as voicemail. Then: the current activity and its end time; the menu of the tenant's
activities by digit (`0` repeats, `*` ends, other keys are answered); for an activity other than
Available an end time (today HHMM, or a number of days, or `#` for none); a confirmation.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, time, timedelta

from ari_app.caller import Caller
from ari_app.pinlocks import FallbackLocks
from ari_app.ivr import Goodbye, Ivr, Login, LoginPrompts, Menu, leave, pin_gate
from ari_app.session import CallSession
from ari_app.voice import Voice
from base.model import AVAILABLE, Tenant
from callstate import Presence, SettingsError, StorageError
from prompts import speech

from .services import PresenceService

log = logging.getLogger(__name__)

KEY_TIMEOUT = 6.0  # seconds to wait for a key after a menu
TIME_TRIES = 3
MAX_DAYS = 365
SOURCE = "ivr"
LOGIN_PROMPTS = LoginPrompts(number="act-enter-number")


class ActivityIvr:
    def __init__(self, service: PresenceService, voice: Voice, locks: FallbackLocks | None = None) -> None:
        self.service = service
        self.voice = voice
        self.pins = pin_gate(service.state, locks)

    async def __call__(self, call: CallSession) -> None:
        await call.answer()
        ivr = Ivr(call, self.voice, self.service.config.platform.default_language)
        # A locked user is asked a PIN all the same, and hears "locked" after it.
        login = Login(self.service.config, self.pins, LOGIN_PROMPTS, lock_first=False, key_timeout=KEY_TIMEOUT)
        try:
            known = await login(ivr)
            if known is not None:
                await self._session(ivr, known)
        except StorageError:
            log.exception("%r: call state not available", call)
            await ivr.announce("fc-refused-error")
        await ivr.goodbye()

    # --- the menu ------------------------------------------------------------------------

    async def _session(self, ivr: Ivr, caller: Caller) -> None:
        current = await self.service.presence(caller.tenant, caller.user)
        # A key pressed while the current activity is said already answers the menu.
        await ivr.play(self.voice.media(ivr.lang, self._current(ivr.lang, current)))
        actions = {a.digit: functools.partial(self._choose, ivr, caller, a.key) for a in caller.tenant.activities}
        menu = Menu({**actions, "*": leave}, repeat_key="0", timeout=KEY_TIMEOUT)
        try:
            await menu.run(ivr, self._menu(ivr, caller.tenant))
        except Goodbye:
            pass

    async def _choose(self, ivr: Ivr, caller: Caller, activity: str) -> bool | None:
        """True once changed (the call ends); None: back to the menu."""
        until = None
        if activity != AVAILABLE:
            found, until = await self._end_time(ivr)
            if not found:
                return None
        try:
            presence = await self.service.change(caller.tenant, caller.user, activity, until,
                                                 actor=caller.actor, source=SOURCE)
        except SettingsError as exc:
            log.info("%r: %s/%s activity refused: %s", ivr.call, caller.tenant.id, caller.user.id, exc)
            await ivr.say("fc-refused")
            return None
        await ivr.announce("act-changed", *self._current(ivr.lang, presence))
        return True

    async def _end_time(self, ivr: Ivr) -> tuple[bool, datetime | None]:
        """(True, end time or None) once the caller has entered one or skipped with '#'."""
        for _ in range(TIME_TRIES):
            # Room for the '#' after HHMM: left queued, it would cut the next prompt short.
            typed = await ivr.ask("act-enter-until", max_digits=5, timeout=KEY_TIMEOUT * 2)
            if typed == "" and ivr.call.last_terminator == "#":
                return True, None
            until = parse_end_time(typed, self.voice.now())
            if until is not None:
                return True, until
            await ivr.say("act-invalid-time")
        return False, None

    # --- what is said --------------------------------------------------------------------

    def _current(self, lang: str, presence: Presence) -> list[str]:
        names = ["act-current-is", f"act-{presence.activity}"]
        if presence.until is not None:
            now = self.voice.now()
            names += speech.until_phrase(lang, presence.until.astimezone(now.tzinfo), now)
        return names

    @staticmethod
    def _menu(ivr: Ivr, tenant: Tenant) -> list[str]:
        names = ["act-choose"]
        for activity in tenant.activities:
            names += [f"act-{activity.key}", "press", f"digit-{activity.digit}"]
        return ivr.prompt(*names, "act-menu-tail")


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
