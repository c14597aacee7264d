"""The PIN locks as the native fallback sees them, in Asterisk's own database (astdb).

When the application is down, `[vipbx-vm-fallback-login]` in extensions.conf checks PINs itself.
It refuses, without asking a PIN, a user whose `vipbx-pinlock/TENANT+USER` holds an end (epoch
seconds) still ahead, and counts each wrong PIN in `vipbx-pinfail/TENANT+USER`; the series that
reaches the call state's attempts sets a lock with no end (`HELD_EPOCH`), since no clock-based
escalation runs there.

The application keeps that picture true (`FallbackLocks`): it writes a user's lock when the call
state locks them, and each time it connects to Asterisk it folds the fallback's failures into the
call state (audited with source "fallback"; they escalate like any other) and rewrites every lock
from the call state, removing the ones it no longer holds. An operator's unlock clears both keys.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from base.ami import AmiError, AmiSession, AmiSettings, ami_session
from base.model import Config
from callstate import AsyncCallState, PinStatus

log = logging.getLogger(__name__)

LOCK_FAMILY = "vipbx-pinlock"
FAIL_FAMILY = "vipbx-pinfail"
HELD_EPOCH = 4102444800  # 2100-01-01T00:00:00Z: "until unlocked", for the dialplan's comparison
SEPARATOR = "+"  # in neither tenant nor user ids
FALLBACK_SOURCE = "fallback"  # the audit trail's source of failures counted by the fallback
TIMEOUT = 10.0  # seconds for one whole exchange with Asterisk


def astdb_key(tenant_id: str, user_id: str) -> str:
    return f"{tenant_id}{SEPARATOR}{user_id}"


def lock_value(status: PinStatus) -> str | None:
    """What the fallback compares with ${EPOCH}; None: no lock to mirror."""
    if status.held:
        return str(HELD_EPOCH)
    if status.locked_until is not None:
        return str(int(status.locked_until.timestamp()))
    return None


async def _tree(session: AmiSession, family: str) -> dict[str, str]:
    """key → value of one astdb family; an empty or missing family is {}."""
    try:
        events = await session.listing("DBGetTree", Family=family)
    except AmiError as exc:
        if "not found" in str(exc).lower():
            return {}
        raise
    # The key comes back as "/family/key" or as "key", depending on the version: keep the last part.
    return {str(e.get("Key", "")).rsplit("/", 1)[-1]: str(e.get("Val", "")) for e in events if e.get("Key")}


async def _delete(session: AmiSession, family: str, key: str) -> None:
    try:
        await session.action("DBDel", Family=family, Key=key)
    except AmiError as exc:
        if "not found" not in str(exc).lower():
            raise


async def clear(ami: AmiSettings, tenant_id: str, user_id: str) -> None:
    """An operator's unlock, in astdb: the lock and the fallback's uncounted failures. Raises
    AmiError or OSError when Asterisk cannot be told."""
    key = astdb_key(tenant_id, user_id)
    async with asyncio.timeout(TIMEOUT):
        async with ami_session(ami) as session:
            for family in (LOCK_FAMILY, FAIL_FAMILY):
                await _delete(session, family, key)


async def pending_failures(ami: AmiSettings, tenant_id: str, user_id: str) -> int:
    """Wrong PINs the fallback counted for the user and the application has not folded in yet."""
    async with asyncio.timeout(TIMEOUT):
        async with ami_session(ami) as session:
            value = (await _tree(session, FAIL_FAMILY)).get(astdb_key(tenant_id, user_id), "0")
    return int(value) if value.isdigit() else 0


class FallbackLocks:
    """The application's side: mirrors locks as they happen, and syncs when it connects. Never
    raises into a call: a lock not mirrored now is written by the next sync."""

    def __init__(self, ami: AmiSettings, state: AsyncCallState, config: Callable[[], Config]) -> None:
        self._ami = ami
        self._state = state
        self._config = config
        self._written: dict[str, str] = {}  # key → value last written, so a locked user hammering costs nothing
        self._tasks: set[asyncio.Task[None]] = set()

    def locked(self, tenant_id: str, user_id: str, status: PinStatus) -> None:
        """The call state has locked the user: tell the fallback, in the background."""
        key, value = astdb_key(tenant_id, user_id), lock_value(status)
        if value is None or self._written.get(key) == value:
            return
        self._written[key] = value
        task = asyncio.create_task(self._put(key, value), name=f"fallback-lock {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put(self, key: str, value: str) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                async with ami_session(self._ami) as session:
                    await session.action("DBPut", Family=LOCK_FAMILY, Key=key, Val=value)
        except Exception as exc:  # noqa: BLE001 -- AmiError, OSError, timeout: the next sync writes it
            self._written.pop(key, None)
            log.warning("fallback lock of %s not written: %s", key, exc or type(exc).__name__)

    async def sync(self) -> None:
        """Fold the fallback's failures into the call state, then make astdb's locks the call
        state's. Logged, never raised."""
        try:
            async with asyncio.timeout(TIMEOUT):
                async with ami_session(self._ami) as session:
                    await self._fold(session)
                    await self._mirror(session)
        except Exception as exc:  # noqa: BLE001 -- Asterisk or the database unreachable: next connect
            log.warning("fallback PIN locks not synchronised: %s", exc or type(exc).__name__)

    async def _fold(self, session: AmiSession) -> None:
        config = self._config()
        for key, value in (await _tree(session, FAIL_FAMILY)).items():
            tenant_id, _, user_id = key.partition(SEPARATOR)
            count = int(value) if value.isdigit() else 0
            if count > 0 and config.find_user(tenant_id, user_id) is not None:
                status = await self._state.count_pin_failures(tenant_id, user_id, min(count, 1000),
                                                              actor=FALLBACK_SOURCE, source=FALLBACK_SOURCE)
                log.warning("%d wrong PIN(s) in the native fallback counted for %s/%s: %s", count,
                            tenant_id, user_id, status.describe())
            await _delete(session, FAIL_FAMILY, key)

    async def _mirror(self, session: AmiSession) -> None:
        present = await _tree(session, LOCK_FAMILY)
        wanted = {astdb_key(t, u): value for t, u, status in await self._state.pin_locks()
                  if (value := lock_value(status)) is not None}
        for key, value in wanted.items():
            if present.get(key) != value:
                await session.action("DBPut", Family=LOCK_FAMILY, Key=key, Val=value)
        for key in present.keys() - wanted.keys():
            await _delete(session, LOCK_FAMILY, key)
        self._written = dict(wanted)
