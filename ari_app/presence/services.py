"""What the presence features do over the call-state service: read and change a user's activity
and tell Asterisk, end activities whose time is up, compose the greeting's activity sentence."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from base.ami import AmiSettings
from base.model import Config, Tenant, User
from base.offload import run_blocking
from callstate import AsyncCallState, CallStateService, Presence
from prompts import speech

from .asterisk import presence_id, presence_value, publish

log = logging.getLogger(__name__)

TIMER_MAX_SLEEP = 30.0  # seconds: also how late an end time set by another node is noticed


class PresenceService:
    def __init__(self, config: Config, state: CallStateService, ami: AmiSettings | None) -> None:
        self.config = config
        self.state = state
        self.async_state = AsyncCallState(state)  # for calls from the event loop
        self.ami = ami
        # One publisher at a time, each reading the state inside the lock: a slow full publish
        # can never overwrite a newer change with the older state it read.
        self._publishing = asyncio.Lock()
        self._changed = asyncio.Event()  # wakes the timer: a new end time may be the next one
        self._connections = 0

    async def presence(self, tenant: Tenant, user: User) -> Presence:
        return await self.async_state.presence(tenant.id, user.id)

    async def change(self, tenant: Tenant, user: User, activity: str, until: datetime | None, *,
                     actor: str, source: str, note: str | None = None) -> Presence:
        """SettingsError when refused (nothing changed); Asterisk is told after the commit.
        `note` None keeps the user's note (the phone cannot type one; the home page can)."""
        presence = await self.async_state.set_presence(tenant.id, user.id, activity, until=until, actor=actor,
                                                       source=source, note=note)
        await self.tell_asterisk([(tenant, user)])
        self._changed.set()
        return presence

    async def tell_asterisk(self, users: list[tuple[Tenant, User]]) -> None:
        """Publishes the users' presence as stored when the lock is ours."""
        if self.ami is None or not users:
            return
        async with self._publishing:
            states = await run_blocking(self._states, users)  # one pool thread for all reads
            await publish(self.ami, states)

    def _states(self, users: list[tuple[Tenant, User]]) -> list[tuple[str, str]]:
        return [(presence_id(t.id, u.id), presence_value(t, self.state.presence(t.id, u.id))) for t, u in users]

    async def publish_all(self) -> None:
        """Every user's presence, as stored: at start, and so after any outage."""
        users = [(tenant, user) for tenant in self.config.tenants for user in tenant.users]
        await self.tell_asterisk(users)
        log.info("presence: published %d user(s)", len(users))

    async def on_ari_connect(self) -> None:
        """After a reconnection to Asterisk (not the first connection: `run_timer` publishes at
        start): Asterisk may have restarted without its presence database."""
        if self._connections:
            await self.publish_all()
        self._connections += 1

    async def end_due(self) -> int:
        """Ends the activities whose time is up (database, audit, Asterisk)."""
        ended = await self.async_state.end_presences()
        users = [found for t, u in ended if (found := self.config.find_user(t, u)) is not None]
        await self.tell_asterisk(users)
        return len(ended)

    async def run_timer(self) -> None:
        """Publishes everything once, then ends activities as their end times come."""
        try:
            await self.publish_all()
        except Exception:
            # The database may be down at start: the end times must still be kept after it.
            log.exception("presence: publishing at start")
        while True:
            self._changed.clear()  # before reading: a change from now on wakes the wait below
            try:
                await self.end_due()
                upcoming = await self.async_state.next_presence_end()
            except Exception:
                log.exception("presence timer")
                upcoming = None
            pause = TIMER_MAX_SLEEP
            if upcoming is not None:
                pause = min(pause, max(0.2, (upcoming - datetime.now(UTC)).total_seconds() + 0.05))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for may swallow a cancel that
            # arrives as the wait ends, and this loop would then outlive its service.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._changed.wait()

    async def greeting_sentence(self, tenant: Tenant, user: User, lang: str, now: datetime) -> list[str] | None:
        """ "… is on vacation until Friday 12 August", or None when the user is Available."""
        presence = await self.async_state.presence(tenant.id, user.id)
        if presence.available:
            return None
        until = presence.until.astimezone(now.tzinfo) if presence.until is not None else None
        try:
            return speech.activity_sentence(lang, presence.activity, until, now)
        except ValueError:
            log.warning("no prompts for the activity %r of %s/%s", presence.activity, tenant.id, user.id)
            return None
