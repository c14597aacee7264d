"""Who is calling: the caller's own device or number logs in at once, unless the user wants the
PIN always; from any other number the caller types the user's number, then the PIN. Wrong PINs
count towards the call-state service's lockout, across calls and IVRs.

A typed number is answered the same way whether it is a mailbox, an unknown number, or a locked
mailbox: the same prompts in the same order (up to three PINs, "wrong PIN" after each), and the
verdict never sooner than `VERDICT_SECONDS` after the PIN, so neither the words nor the time of the
database's answer tell a prober which numbers exist or which are locked. Only a caller known by
their own number or device hears "locked": that path already presumes the mailbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ari_app.caller import Caller
from ari_app.origin import Origin
from base import logcontext
from base.model import Config, Tenant, TenantUser, User

from .pins import PinGate
from .talk import KEY_TIMEOUT, Ivr

log = logging.getLogger(__name__)

LOGIN_TRIES = 3  # numbers, then PINs, per call; the lockout across calls is the call state's
SOURCE = "ivr"  # the audit trail's source of PIN attempts
# A typed PIN's verdict comes no sooner than this after the PIN: longer than a normal database
# answer, so a checked PIN and an unknown number's sound alike.
VERDICT_SECONDS = 0.5


@dataclass(frozen=True)
class LoginPrompts:
    number: str  # asks for the user's number: "vm-enter-mailbox", "act-enter-number"
    pin: str = "vm-enter-pin"
    wrong: str = "vm-pin-wrong"
    locked: str = "vm-locked"


class Login:
    def __init__(
        self,
        config: Config,
        pins: PinGate,
        prompts: LoginPrompts,
        *,
        eligible: Callable[[User], bool] = lambda user: True,
        lock_first: bool = True,
        key_timeout: float = KEY_TIMEOUT,
        verdict_seconds: float = VERDICT_SECONDS,
    ) -> None:
        """`eligible`: who may log in here (e.g. voicemail users only; anyone else is treated as
        an unknown number). `lock_first`: a locked user hears "locked" before being asked a PIN
        (voicemail); otherwise after typing one (the activity number, as it always did)."""
        self.config = config
        self.pins = pins
        self.prompts = prompts
        self.eligible = eligible
        self.lock_first = lock_first
        self.key_timeout = key_timeout
        self.verdict_seconds = verdict_seconds

    async def __call__(self, ivr: Ivr) -> Caller | None:
        """The logged-in user, `ivr` then speaking their language; None when the login failed (the
        caller has heard why, and only the goodbye is left)."""
        caller = await self._identify(ivr)
        if caller is not None:  # the call's log lines name whose mailbox or activity it is now
            logcontext.bind(tenant=caller.who.tenant.id, user=caller.who.user.id)
        return caller

    async def _identify(self, ivr: Ivr) -> Caller | None:
        own = self._own(ivr)
        if own is not None:
            tenant, user = own
            if not await self._always_pin(tenant, user):
                log.info("%r: %s/%s known by caller number", ivr.call, tenant.id, user.id)
                ivr.lang = user.language
                return Caller(TenantUser(tenant, user), ivr.call.caller_number or user.number)
            return await self._pin(ivr, tenant, user, ivr.in_language(user.language))
        for _ in range(LOGIN_TRIES):
            typed = await ivr.ask(self.prompts.number, max_digits=16, timeout=self.key_timeout)
            if typed:
                return await self._typed(ivr, typed)
        return None

    def _own(self, ivr: Ivr) -> tuple[Tenant, User] | None:
        """The user whose device is calling, or whose number is calling through a trusted trunk
        (see `Origin`), if they may log in. Any other caller ID proves nothing."""
        call = ivr.call
        own = Origin.of(self.config, call.vars).caller(self.config, call.caller_number)
        return own if own is not None and self.eligible(own[1]) else None

    async def _always_pin(self, tenant: Tenant, user: User) -> bool:
        if not user.has_voicemail:  # the setting lives in the voicemail settings
            return False
        return (await self.pins.voicemail_settings(tenant.id, user.id)).always_ask_pin

    async def _pin(self, ivr: Ivr, tenant: Tenant, user: User, spoken: Ivr) -> Caller | None:
        """Up to LOGIN_TRIES PINs in `spoken`'s language; on success `ivr` speaks the user's."""
        actor = ivr.call.caller_number or "unknown"
        for _ in range(LOGIN_TRIES):
            if self.lock_first and (await self.pins.pin_status(tenant.id, user.id)).locked:
                log.warning("%r: %s/%s is locked", ivr.call, tenant.id, user.id)
                await spoken.announce(self.prompts.locked)
                return None
            pin = await spoken.ask(self.prompts.pin, max_digits=10, timeout=self.key_timeout)
            check = await self.pins.check_pin(tenant.id, user.id, pin, source=SOURCE, actor=actor)
            if check.ok:
                ivr.lang = user.language
                return Caller(TenantUser(tenant, user), actor, by_pin=True)
            if check.locked:
                await spoken.announce(self.prompts.locked)
                return None
            # A key typed over it is the next PIN's first digit: kept, never lost.
            await spoken.say(self.prompts.wrong)
        return None

    async def _typed(self, ivr: Ivr, typed: str) -> Caller | None:
        """Up to LOGIN_TRIES PINs for a typed number, in the platform's language, whatever the
        number is: a mailbox, an unknown one or a locked one sound the same (see the module)."""
        target = Origin.of(self.config, ivr.call.vars).find(self.config, typed)
        if target is not None and not self.eligible(target[1]):
            target = None
        actor = ivr.call.caller_number or "unknown"
        loop = asyncio.get_running_loop()
        for _ in range(LOGIN_TRIES):
            pin = await ivr.ask(self.prompts.pin, max_digits=10, timeout=self.key_timeout)
            asked = loop.time()
            if target is None:
                log.info("%r: login to unknown number %r", ivr.call, typed)
            else:
                tenant, user = target
                check = await self.pins.check_pin(tenant.id, user.id, pin, source=SOURCE, actor=actor)
                if check.ok:
                    ivr.lang = user.language
                    return Caller(TenantUser(tenant, user), actor, by_pin=True)
                if check.locked:
                    log.warning("%r: %s/%s is locked", ivr.call, tenant.id, user.id)
            await asyncio.sleep(max(0.0, asked + self.verdict_seconds - loop.time()))
            # A key typed over it is the next PIN's first digit: kept, never lost.
            await ivr.say(self.prompts.wrong)
        return None
