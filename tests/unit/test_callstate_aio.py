"""AsyncCallState: the call-state service awaited from asyncio code, its work off the event loop."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from people import PIN as ANNA_PIN
from people import user

from base.model import Config, Platform, Tenant
from callstate import CallStateService, UnknownUserError
from callstate.aio import AsyncCallState
from callstate.db import Backend, Database, Tx

CONFIG = Config(platform=Platform(), tenants=(
    Tenant(id="acme", name="Acme", domain="acme.example",
           users=(user("anna", "+358401110001", "101"),)),))

T = TypeVar("T")

STALL_GUARD = 5.0  # seconds; only reached when the work wrongly runs on the loop (and blocks it)


class StalledDatabase:
    """A real SQLite backend whose transactions wait until the test releases them; it tells the
    loop when one has started and remembers the threads they ran on."""

    def __init__(self, inner: Backend, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.schema_version = inner.schema_version
        self.loop = loop
        self.entered = asyncio.Event()
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def _stall(self) -> None:
        self.threads.append(threading.current_thread())
        self.loop.call_soon_threadsafe(self.entered.set)
        if not self.release.wait(STALL_GUARD):
            raise RuntimeError("the transaction held the event loop: nothing could release it")

    def read(self, work: Callable[[Tx], T]) -> T:
        self._stall()
        return self.inner.read(work)

    def write(self, work: Callable[[Tx], T]) -> T:
        self._stall()
        return self.inner.write(work)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def sqlite(tmp_path: Path) -> Database:
    return Database(tmp_path / "state.sqlite3")


async def test_a_stalled_database_leaves_the_loop_free(sqlite: Database) -> None:
    db = StalledDatabase(sqlite, asyncio.get_running_loop())
    with CallStateService(db, CONFIG) as service:
        state = AsyncCallState(service)
        login = asyncio.create_task(state.check_pin("acme", "anna", ANNA_PIN, source="ivr"))
        await db.entered.wait()  # the PIN check is inside its transaction, stalled

        async def another_calls_key() -> str:
            await asyncio.sleep(0)
            return "answered"

        assert await another_calls_key() == "answered"
        assert not login.done()
        db.release.set()
        check = await login
    assert check.ok
    assert db.threads and threading.main_thread() not in db.threads


async def test_results_and_refusals_are_the_services(sqlite: Database) -> None:
    with CallStateService(sqlite, CONFIG) as service:
        state = AsyncCallState(service)
        routing = await state.set_call_waiting("acme", "anna", False, actor="+358401110001", source="code")
        assert routing == service.routing("acme", "anna")
        assert routing.call_waiting is False
        assert [e.field for e in await state.audit("acme", "anna")] == ["call_waiting"]
        with pytest.raises(UnknownUserError):
            await state.check_pin("acme", "nobody", ANNA_PIN, source="ivr")


SYNC_ONLY = {"close", "reload", "config", "schema_version"}  # life cycle: no database work


def _public(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def test_every_service_call_has_an_awaitable_twin_with_the_same_signature() -> None:
    sync = {name: member for name, member in _public(CallStateService).items() if name not in SYNC_ONLY}
    mirrored = {name: member for name, member in _public(AsyncCallState).items()
                if inspect.iscoroutinefunction(member)}
    assert sorted(mirrored) == sorted(sync)
    for name, member in mirrored.items():
        assert inspect.signature(member) == inspect.signature(sync[name]), name
