"""AriClient against a fake ARI: REST over httpx.MockTransport, events over a real websocket."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from ari_app import client as client_module
from ari_app.client import AriClient, AriError, encode_params
from ari_app.lanes import EventLanes
from ari_app.testing import FakeAri


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    fake = FakeAri()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def client(fake: FakeAri) -> AsyncIterator[AriClient]:
    async with AriClient(fake.base_url, fake.user, fake.password, fake.app, transport=fake.transport) as client:
        yield client


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(client_module, "BACKOFF_MAX", 0.05)


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until `check()` is true; fails after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def record_pauses(client: AriClient) -> list[float]:
    """The backoff pauses `client.run()` takes from now on (each after a lost or refused attempt)."""
    pauses: list[float] = []
    pause = client._pause

    async def recorded(delay: float) -> None:
        pauses.append(delay)
        await pause(delay)

    client._pause = recorded  # type: ignore[method-assign]
    return pauses


async def start(client: AriClient) -> asyncio.Task[None]:
    task = asyncio.create_task(client.run())
    await client.wait_connected(5)
    return task


def test_encode_params() -> None:
    assert encode_params({"a": True, "b": False, "c": ["x", "y"], "d": 3, "e": None}) == {
        "a": "true",
        "b": "false",
        "c": "x,y",
        "d": "3",
    }


async def test_request_decodes_json_and_sends_basic_auth(fake: FakeAri, client: AriClient) -> None:
    fake.route("GET", "/asterisk/info", lambda request, m: httpx.Response(200, json={"system": {"version": "22"}}))
    assert await client.get("/asterisk/info", only=["system", "build"]) == {"system": {"version": "22"}}
    request = fake.requests[-1]
    assert request.url.path == "/ari/asterisk/info"
    assert request.url.params["only"] == "system,build"
    token = base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {token}"


async def test_empty_answer_is_none(client: AriClient) -> None:
    assert await client.post("/channels/c1/answer") is None


async def test_error_status_raises_ari_error(fake: FakeAri, client: AriClient) -> None:
    fake.route("POST", "/channels/c1/answer", lambda r, m: httpx.Response(404, json={"message": "Channel not found"}))
    with pytest.raises(AriError) as caught:
        await client.post("/channels/c1/answer")
    assert caught.value.status == 404
    assert "Channel not found" in caught.value.body


async def test_json_body(fake: FakeAri, client: AriClient) -> None:
    await client.request("POST", "/channels", params={"endpoint": "Local/1@x"}, json={"variables": {"A": "1"}})
    assert json.loads(fake.requests[-1].content) == {"variables": {"A": "1"}}


async def test_events_url_and_auth(fake: FakeAri, client: AriClient) -> None:
    task = await start(client)
    await fake.wait_connections(1)
    ws_request = fake.ws_requests[-1]
    assert ws_request.path == "/ari/events?app=vipbx&subscribeAll=false"
    await client.close()
    await asyncio.wait_for(task, 2)


async def test_wrong_password_keeps_retrying(fake: FakeAri, fast_backoff: None) -> None:
    async with AriClient(fake.base_url, fake.user, "wrong", fake.app, transport=fake.transport) as client:
        task = asyncio.create_task(client.run())
        await until(lambda: len(fake.ws_requests) >= 2)  # refused, backed off, tried again
        assert not client.connected
    await asyncio.wait_for(task, 2)


async def test_events_reach_every_handler(fake: FakeAri, client: AriClient) -> None:
    got: list[tuple[str, str]] = []
    done = asyncio.Event()

    async def first(event: dict) -> None:
        got.append(("first", event["type"]))

    async def second(event: dict) -> None:
        got.append(("second", event["type"]))
        if event["type"] == "B":
            done.set()

    client.on_event(first)
    client.on_event(second)
    task = await start(client)
    await fake.wait_connections(1)
    await fake.send({"type": "A"})
    await fake.send({"type": "B"})
    await asyncio.wait_for(done.wait(), 2)
    assert got == [("first", "A"), ("second", "A"), ("first", "B"), ("second", "B")]
    await client.close()
    await task


async def test_slow_or_failing_handler_blocks_nothing(
    fake: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    fast_seen = asyncio.Event()

    async def slow(event: dict) -> None:
        if event["type"] == "Slow":
            await release.wait()

    async def failing(event: dict) -> None:
        if event["type"] == "Boom":
            raise RuntimeError("handler bug")

    async def fast(event: dict) -> None:
        if event["type"] == "Fast":
            fast_seen.set()

    for handler in (slow, failing, fast):
        client.on_event(handler)
    task = await start(client)
    await fake.wait_connections(1)
    await fake.send({"type": "Slow"})
    await fake.send({"type": "Boom"})
    await fake.send({"type": "Fast"})
    await asyncio.wait_for(fast_seen.wait(), 2)  # while "Slow" still waits
    assert "handler bug" in caplog.text
    assert client.connected and not task.done()
    release.set()
    await client.close()
    await task


async def test_reconnects_after_socket_drop(fake: FakeAri, client: AriClient, fast_backoff: None) -> None:
    connects = 0
    got = asyncio.Event()

    async def on_connect() -> None:
        nonlocal connects
        connects += 1

    async def on_event(event: dict) -> None:
        got.set()

    client.on_connect(on_connect)
    client.on_event(on_event)
    task = await start(client)
    await fake.wait_connections(1)
    await fake.drop()
    await fake.wait_connections(2)
    await client.wait_connected(2)
    await fake.send({"type": "AfterDrop"})
    await asyncio.wait_for(got.wait(), 2)
    assert connects == 2
    await client.close()
    await task


async def test_reconnects_after_asterisk_restart(fake: FakeAri, client: AriClient, fast_backoff: None) -> None:
    task = await start(client)
    pauses = record_pauses(client)
    await fake.stop()  # Asterisk gone: connections refused for a while
    await until(lambda: len(pauses) >= 2)  # the drop, then at least one refused attempt
    assert not client.connected
    await fake.start()  # back on the same port
    await fake.wait_connections(2)
    await client.wait_connected(2)
    await client.close()
    await asyncio.wait_for(task, 2)


async def test_backoff_is_capped_exponential() -> None:
    # Nothing listens on port 1: record the pauses run() takes between attempts.
    client = AriClient("http://127.0.0.1:1/ari", "u", "p", "vipbx")
    delays: list[float] = []

    async def pause(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 8:
            await client.close()

    client._pause = pause  # type: ignore[method-assign]
    await asyncio.wait_for(client.run(), 5)
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


async def test_close_wakes_backoff_sleep(fake: FakeAri, monkeypatch: pytest.MonkeyPatch) -> None:
    # An hour's backoff: run() can only end within the bound below if close() cuts the sleep short.
    monkeypatch.setattr(client_module, "BACKOFF_FIRST", 3600.0)
    monkeypatch.setattr(client_module, "BACKOFF_MAX", 3600.0)
    await fake.stop()
    client = AriClient(fake.base_url, fake.user, fake.password, fake.app)
    pauses = record_pauses(client)
    task = asyncio.create_task(client.run())
    await until(lambda: pauses)  # refused, now in the backoff sleep
    assert pauses == [3600.0] and not task.done()
    await client.close()
    await asyncio.wait_for(task, 5)  # far below the hour: close() woke it


async def test_password_never_logged(
    fake: FakeAri, client: AriClient, caplog: pytest.LogCaptureFixture, fast_backoff: None
) -> None:
    caplog.set_level(logging.DEBUG)
    task = await start(client)
    await client.get("/channels")
    await fake.drop()
    await fake.wait_connections(2)
    await client.close()
    await task
    token = base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
    client_records = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert client_records, "expected some client logging"
    assert not any(fake.password in m or token in m for m in client_records)
    assert fake.password not in repr(client)


async def test_a_flood_for_one_channel_is_bounded_in_order_and_others_still_flow(
        fake: FakeAri, client: AriClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Handlers of channel A hang while A sends thousands of keys: the tasks and the events held
    stay bounded, channel B's events are handled meanwhile, and A's are seen in order, its end too."""
    client._lanes.runs, client._lanes.queue = 4, 20
    release = asyncio.Event()
    seen_a: list[int] = []
    seen_b = asyncio.Event()
    ended = asyncio.Event()
    most_tasks = 0

    async def handler(event: dict) -> None:
        nonlocal most_tasks
        most_tasks = max(most_tasks, len(client._tasks))
        channel_id = event.get("channel", {}).get("id")
        if channel_id == "B":
            seen_b.set()
        elif event["type"] == "StasisEnd":
            ended.set()
        elif channel_id == "A":
            seen_a.append(event["n"])
            await release.wait()

    client.on_event(handler)
    task = await start(client)
    await fake.wait_connections(1)
    for n in range(3000):
        await fake.send({"type": "ChannelDtmfReceived", "digit": "1", "n": n, "channel": {"id": "A"}})
    await fake.send({"type": "StasisEnd", "channel": {"id": "A"}})
    await fake.send({"type": "ChannelDtmfReceived", "digit": "5", "channel": {"id": "B"}})
    await asyncio.wait_for(seen_b.wait(), 5)  # while A's handlers still hang
    assert len(client._tasks) <= 4 + 1 and most_tasks <= 4 + 1
    assert client._lanes.waiting("A") <= 20 + 1  # the queue, and A's end, which is never dropped
    assert client._lanes.held <= 4 + 21
    release.set()
    await asyncio.wait_for(ended.wait(), 5)
    assert seen_a == sorted(seen_a) and seen_a[:4] == [0, 1, 2, 3]
    assert len(seen_a) <= 4 + 20
    await client.close()
    await task


async def test_the_reader_waits_when_too_many_events_are_held(fake: FakeAri, client: AriClient) -> None:
    client._lanes = EventLanes(client._start_handlers, runs=2, queue=10, total=6)
    release = asyncio.Event()
    calls = 0

    async def handler(event: dict) -> None:
        nonlocal calls
        calls += 1
        await release.wait()

    client.on_event(handler)
    task = await start(client)
    await fake.wait_connections(1)
    for n in range(10):  # ten channels, two lanes' worth each at most: the total binds first
        await fake.send({"type": "StasisEnd", "channel": {"id": f"c{n}"}})
    await until(lambda: client._lanes.stalls == 1 and calls == 6)  # the 7th event waits for room
    assert calls == 6 and client._lanes.held == 6
    release.set()
    await until(lambda: calls == 10)
    await client.close()
    await task
