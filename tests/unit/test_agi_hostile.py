"""Hostile input to the FastAGI server over a real socket: malformed environments, missing, huge
and binary arguments, a peer that sends nothing or never answers, garbage answers, and a flood of
connections. After each, the server is up and answers the next good request at once; every
connection it accepts ends within a bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from test_agi_routing import CONFIG, KEY, agi_env, converse

from agi import server as server_module
from agi.server import AgiApplication, start_agi_server

PONG = ['SET VARIABLE VIPBX_PONG "1"']
BOUND = 3.0  # seconds: every hostile connection here is closed by the server within this


@pytest.fixture
async def agi(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[AgiApplication, int]]:
    monkeypatch.setattr(server_module, "ENV_TIMEOUT", 0.3)
    monkeypatch.setattr(server_module, "REQUEST_TIMEOUT", 0.5)
    server, app = await start_agi_server(CONFIG, "127.0.0.1", 0, key=KEY)
    yield app, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def still_serves(port: int) -> None:
    assert await asyncio.wait_for(converse(port, agi_env("ping")), 2) == PONG


async def send_and_wait_close(port: int, data: bytes, reply: bytes | None = None) -> bytes:
    """Sends `data`, answers every command with `reply` (if given), and returns what the server
    sent before it closed the connection (which must happen within BOUND)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    received = b""

    async def until_closed() -> None:
        nonlocal received
        while line := await reader.readline():
            received += line
            if reply is not None:
                writer.write(reply)
                await writer.drain()

    try:
        await asyncio.wait_for(until_closed(), BOUND)
    except ConnectionResetError:
        pass  # closed with our data unread: closed all the same
    finally:
        writer.close()
    return received


GARBAGE = {
    "no script": b"agi_network: yes\nagi_channel: PJSIP/x\n\n",
    "empty environment": b"\n\n",
    "no separators": b"garbage garbage\nmore\n\n",
    "binary": bytes(range(256)).replace(b"\n", b"") + b"\n\n",
    "invalid utf-8": b"agi_network_script: \xff\xfe\xfd\nagi_arg_1: \xc3\x28\n\n",
    "route without arguments": agi_env("route"),
    "route with one argument": agi_env("route", "acme"),
    "route with garbage": agi_env("route", "acme,beta", "${SHELL}", "\x00\x01", "+,|;)", "9" * 5000),
    "route with huge arguments": agi_env("route", "a" * 20000, "b" * 20000),
    "route with negative redirects": agi_env("route", "acme", "anna", "INUSE", "", "-99999999999"),
    "route with thousands of hops": agi_env("route", "acme", "anna", "", "|".join(["+358401111112"] * 3000), "1"),
    "unknown user": agi_env("route", "acme", "nobody", "NOT_INUSE", "", "0"),
    "path traversal script": agi_env("../../etc/passwd"),
    "script with query only": agi_env("?route"),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
async def test_garbage_environment_is_answered_or_closed_and_the_server_goes_on(
        agi: tuple[AgiApplication, int], name: str) -> None:
    _, port = agi
    await send_and_wait_close(port, GARBAGE[name], reply=b"200 result=1\n")
    await still_serves(port)


async def test_an_environment_larger_than_the_limit_is_refused(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    await send_and_wait_close(port, b"agi_arg_1: " + b"x" * 300_000 + b"\n\n")
    await still_serves(port)


async def test_a_silent_connection_is_closed(agi: tuple[AgiApplication, int]) -> None:
    """Slowloris: connected, nothing sent; or one byte now and then, never a whole environment."""
    _, port = agi
    assert await send_and_wait_close(port, b"") == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def drip() -> None:
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.05)

    dripping = asyncio.ensure_future(drip())
    try:
        assert await asyncio.wait_for(reader.read(), BOUND) == b""
    finally:
        dripping.cancel()
        writer.close()
    await still_serves(port)


@pytest.mark.parametrize("reply", [b"", b"garbage\n", b"\x00\xff\n", b"500 result=-1\n", b"200 result=1 " + b"x" * 200_000 + b"\n"])
async def test_a_peer_that_answers_garbage_or_never_is_dropped(agi: tuple[AgiApplication, int], reply: bytes) -> None:
    _, port = agi
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(agi_env("route", "acme", "anna", "NOT_INUSE", "", "0"))
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"SET VARIABLE VIPBX_ROUTE")
    if reply:
        writer.write(reply)
        await writer.drain()
    assert await asyncio.wait_for(reader.read(), BOUND) == b""  # closed: REQUEST_TIMEOUT or error
    writer.close()
    await still_serves(port)


async def test_a_flood_of_idle_connections_leaves_room_for_asterisk(
        agi: tuple[AgiApplication, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """More idle connections than the server holds at once: the extra ones are closed at once, and
    once the idle ones time out a good request is answered again; nothing piles up."""
    monkeypatch.setattr(server_module, "ENV_TIMEOUT", 1.0)
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 20)
    _, port = agi
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
    try:
        # Those beyond the limit are closed without waiting for the environment timeout.
        ends = await asyncio.gather(*(asyncio.wait_for(r.read(), 0.5) for r, _ in idle[20:]))
        assert ends == [b""] * 20
        await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in idle[:20])), BOUND)
    finally:
        for _, writer in idle:
            writer.close()
    await still_serves(port)


async def test_many_good_requests_at_once_are_all_answered(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    answers = await asyncio.wait_for(asyncio.gather(*(converse(port, agi_env("ping")) for _ in range(100))), 10)
    assert answers == [PONG] * 100


async def test_garbage_logs_no_traceback(agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture) -> None:
    """A peer's garbage is the peer's fault: a warning, not an ERROR with a traceback."""
    _, port = agi
    with caplog.at_level(logging.WARNING):
        for name in ("binary", "route with garbage", "no script"):
            await send_and_wait_close(port, GARBAGE[name], reply=b"garbage\n")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
