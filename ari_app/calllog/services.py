"""CallLogRecorder: every call record Asterisk's cdr_manager sends over AMI ("Cdr" events) goes
to the call-state service (`CallStateService.call_log.record_cdr`), which classifies it per user
(callstate/calllog.py). The running service is the database's only writer, for SQLite and
PostgreSQL alike. It also drops calls older than `platform.web.call_log_days` now and then.

A record sent while AMI is disconnected (vipbx restarting, Asterisk restarting) is lost: AMI
keeps no backlog. The calls themselves are not affected; docs/web.md says so.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from base.ami import AmiEvents, AmiSettings
from base.offload import run_blocking
from callstate import CallStateService, StorageError

log = logging.getLogger(__name__)

PRUNE_EVERY = 6 * 3600.0
STORE_TRIES = 5
STORE_RETRY_SECONDS = 2.0


class CallLogRecorder:
    def __init__(self, state: CallStateService, ami: AmiSettings | None) -> None:
        self._state = state
        self._queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.events = AmiEvents(ami, {"Cdr": self._queue.put_nowait}) if ami is not None else None

    async def run(self) -> None:
        """Until cancelled: read the records, store them, prune old ones."""
        if self.events is None:
            return  # Asterisk is not reachable over AMI: nothing to read
        async with asyncio.TaskGroup() as group:
            group.create_task(self.events.run(), name="calllog-ami")
            group.create_task(self._prune_loop(), name="calllog-prune")
            while True:
                await self.store(await self._queue.get())

    async def store(self, event: dict[str, str]) -> None:
        for attempt in range(1, STORE_TRIES + 1):
            try:
                await run_blocking(self._state.call_log.record_cdr, event)
                return
            except StorageError as exc:
                if attempt == STORE_TRIES:
                    log.error("call log: record %s of call %s lost: %s", event.get("UniqueID"),
                              event.get("LinkedID"), exc)
                    return
                await asyncio.sleep(STORE_RETRY_SECONDS)

    async def prune(self) -> int:
        return await run_blocking(self._state.call_log.prune, self._state.config.platform.web.call_log_days)

    async def _prune_loop(self) -> None:
        while True:
            with suppress(StorageError):
                await self.prune()
            await asyncio.sleep(PRUNE_EVERY)
