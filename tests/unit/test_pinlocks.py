"""The native fallback's view of PIN locks (`ari_app.pinlocks`), against an in-memory astdb behind
a fake AMI session: locks mirrored as they happen, the fallback's failures folded back on connect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from callstate_support import T0, FakeClock
from people import PIN, user

from ari_app import pinlocks
from ari_app.ivr import pin_gate
from ari_app.pinlocks import FAIL_FAMILY, HELD_EPOCH, LOCK_FAMILY, FallbackLocks
from base.ami import AmiError, AmiSettings
from base.model import Config, Platform, Tenant
from callstate import AsyncCallState, CallStateService, PinStatus

CONFIG = Config(platform=Platform(), tenants=(Tenant(id="acme", name="Acme", domain="acme.example", users=(
    user("anna", "+358401110001", "101"), user("mikko", "+358401110002", "102"))),))
AMI = AmiSettings("127.0.0.1", 5038, "vipbx", "secret")


class FakeAstdb:
    """astdb and the AMI actions the mirror uses; every action is recorded."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}
        self.actions: list[tuple[str, str, str]] = []

    async def action(self, action: str, **fields: str) -> dict[str, str]:
        key = (fields["Family"], fields["Key"])
        self.actions.append((action, *key))
        if action == "DBPut":
            self.data[key] = fields["Val"]
        elif action == "DBDel" and self.data.pop(key, None) is None:
            raise AmiError("DBDel: Database entry not found")
        return {"Response": "Success"}

    async def listing(self, action: str, **fields: str) -> list[dict[str, str]]:
        assert action == "DBGetTree"
        found = [{"Key": f"/{f}/{k}", "Val": v} for (f, k), v in self.data.items() if f == fields["Family"]]
        if not found:
            raise AmiError("DBGetTree: Database entry not found")
        return found


@pytest.fixture
def astdb(monkeypatch: pytest.MonkeyPatch) -> FakeAstdb:
    db = FakeAstdb()

    @asynccontextmanager
    async def session(settings: AmiSettings, timeout: float = 5.0) -> AsyncIterator[FakeAstdb]:
        yield db

    monkeypatch.setattr(pinlocks, "ami_session", session)
    return db


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(tmp_path: Path, clock: FakeClock) -> Iterator[CallStateService]:
    with CallStateService(tmp_path / "state.sqlite3", CONFIG, clock=clock) as service:
        yield service


def mirror(state: CallStateService) -> FallbackLocks:
    return FallbackLocks(AMI, AsyncCallState(state), lambda: state.config)


def epoch(minutes: int) -> str:
    return str(int((T0 + timedelta(minutes=minutes)).timestamp()))


async def test_a_lock_from_a_login_is_written_once(state: CallStateService, astdb: FakeAstdb) -> None:
    gate = pin_gate(state, mirror(state))
    for _ in range(7):  # five lock, two more are refused: the same lock, not written again
        await gate.check_pin("acme", "anna", "000000", source="ivr", actor="+358451234567")
    await asyncio.sleep(0.05)  # the background write
    assert astdb.data == {(LOCK_FAMILY, "acme+anna"): epoch(15)}
    assert [a for a in astdb.actions if a[0] == "DBPut"] == [("DBPut", LOCK_FAMILY, "acme+anna")]


async def test_sync_folds_the_fallbacks_failures_and_rewrites_every_lock(
        state: CallStateService, astdb: FakeAstdb) -> None:
    astdb.data = {
        (FAIL_FAMILY, "acme+anna"): "5",  # the fallback's five wrong PINs ...
        (LOCK_FAMILY, "acme+anna"): str(HELD_EPOCH),  # ... and the lock it set
        (LOCK_FAMILY, "acme+mikko"): epoch(60),  # a lock the call state no longer holds
        (FAIL_FAMILY, "gone+user"): "2",  # a user no longer in the configuration
    }
    await mirror(state).sync()
    status = state.pin_status("acme", "anna")
    assert status == PinStatus(5, T0 + timedelta(minutes=15), level=1)
    assert astdb.data == {(LOCK_FAMILY, "acme+anna"): epoch(15)}
    trail = [(e.event, e.source) for e in reversed(state.audit("acme", "anna"))]
    assert trail == [("pin_failed", "fallback")] * 5 + [("pin_locked", "fallback")]
    assert state.pin_status("acme", "mikko") == PinStatus()


async def test_a_held_lock_is_mirrored_as_the_far_future(state: CallStateService, astdb: FakeAstdb,
                                                         clock: FakeClock) -> None:
    for minutes in (15, 60, 24 * 60):
        state.count_pin_failures("acme", "anna", 5, actor="t", source="test")
        clock.advance(minutes=minutes)
    state.count_pin_failures("acme", "anna", 5, actor="t", source="test")
    await mirror(state).sync()
    assert astdb.data == {(LOCK_FAMILY, "acme+anna"): str(HELD_EPOCH)}
    # An operator's unlock clears it in astdb too.
    state.reset_pin_lockout("acme", "anna", actor="ops", source="cli")
    await pinlocks.clear(AMI, "acme", "anna")
    assert astdb.data == {}
    assert state.check_pin("acme", "anna", PIN, source="ivr").ok


async def test_asterisk_down_never_reaches_the_caller(state: CallStateService, monkeypatch: pytest.MonkeyPatch) -> None:
    @asynccontextmanager
    async def refused(settings: AmiSettings, timeout: float = 5.0) -> AsyncIterator[FakeAstdb]:
        raise AmiError("connection refused")
        yield  # pragma: no cover

    monkeypatch.setattr(pinlocks, "ami_session", refused)
    locks = mirror(state)
    gate = pin_gate(state, locks)
    for _ in range(5):
        check = await gate.check_pin("acme", "anna", "000000", source="ivr", actor="x")
    assert check.locked
    await asyncio.sleep(0.05)
    await locks.sync()  # logged, not raised
