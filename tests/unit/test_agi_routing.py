"""The routing decision (pure) and the FastAGI server over a real TCP socket, with hand-written AGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agi import server as server_module
from agi.routing import RouteDecision, decide
from agi.server import AgiApplication, quote, start_agi_server
from asterisk_conf.model import Config, Platform, Tenant, User

CONFIG = Config(
    platform=Platform(no_answer_seconds=25),
    tenants=(
        Tenant(
            id="acme",
            name="Acme Oy",
            domain="acme.example",
            users=(User(id="anna", name="Anna", number="+358401111111", extension="101", email=None,
                        pin="1234", language="fi"),),
        ),
    ),
)


def test_known_user_rings_for_no_answer_seconds() -> None:
    decision = decide(CONFIG, "acme", "anna")
    assert decision == RouteDecision("ring", 25)
    assert decision.variables() == {"VIPBX_ACTION": "ring", "VIPBX_TIMEOUT": "25"}


@pytest.mark.parametrize(("tenant", "user"), [("acme", "nobody"), ("nope", "anna"), ("", "")])
def test_unknown_tenant_or_user_still_rings(tenant: str, user: str) -> None:
    decision = decide(CONFIG, tenant, user)
    assert (decision.action, decision.timeout, decision.known) == ("ring", 25, False)


def test_quote() -> None:
    assert quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


@pytest.fixture
async def agi() -> AsyncIterator[tuple[AgiApplication, int]]:
    server, app = await start_agi_server(CONFIG, "127.0.0.1", 0)
    yield app, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def agi_env(script: str, *args: str) -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1/{script}",
        "agi_channel: PJSIP/carrier-00000001",
        "agi_language: fi",
        "agi_uniqueid: 1700000000.1",
        "agi_callerid: +358409999999",
        "agi_context: vipbx-call-user",
        "agi_extension: s",
        "agi_priority: 2",
    ]
    lines += [f"agi_arg_{n}: {arg}" for n, arg in enumerate(args, 1)]
    return ("\n".join(lines) + "\n\n").encode()


async def converse(port: int, env: bytes, reply: bytes = b"200 result=1\n") -> list[str]:
    """Play Asterisk: send the environment, answer each command with `reply`, collect commands."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(env)
    await writer.drain()
    commands = []
    while line := await asyncio.wait_for(reader.readline(), 5):
        commands.append(line.decode().rstrip("\n"))
        writer.write(reply)
        await writer.drain()
    writer.close()
    return commands


async def test_route_sets_action_and_timeout(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    commands = await converse(port, agi_env("route", "acme", "anna"))
    assert commands == ['SET VARIABLE VIPBX_ACTION "ring"', 'SET VARIABLE VIPBX_TIMEOUT "25"']


async def test_route_unknown_user_rings_and_warns(
    agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, port = agi
    commands = await converse(port, agi_env("route", "acme", "ghost"))
    assert commands[0] == 'SET VARIABLE VIPBX_ACTION "ring"'
    assert "unknown tenant/user 'acme'/'ghost'" in caplog.text


async def test_config_can_be_replaced(agi: tuple[AgiApplication, int]) -> None:
    app, port = agi
    app.config = Config(platform=Platform(no_answer_seconds=7), tenants=CONFIG.tenants)
    commands = await converse(port, agi_env("route", "acme", "anna"))
    assert commands[1] == 'SET VARIABLE VIPBX_TIMEOUT "7"'


async def test_ping(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    assert await converse(port, agi_env("ping")) == ['SET VARIABLE VIPBX_PONG "1"']


async def test_script_with_query_string_routes(agi: tuple[AgiApplication, int]) -> None:
    _, port = agi
    assert await converse(port, agi_env("ping?x=1")) == ['SET VARIABLE VIPBX_PONG "1"']


async def test_unknown_script_closes(agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture) -> None:
    _, port = agi
    assert await converse(port, agi_env("nosuch")) == []
    assert "no script 'nosuch'" in caplog.text


async def test_refused_command_stops_the_script(
    agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, port = agi
    commands = await converse(port, agi_env("route", "acme", "anna"), reply=b"HANGUP\n")
    assert commands == ['SET VARIABLE VIPBX_ACTION "ring"']  # no second command after a hangup
    assert "request from" in caplog.text


async def test_peer_closing_early_does_not_freeze_the_loop(agi: tuple[AgiApplication, int]) -> None:
    # panoramisk 1.4's own reader spins forever on this; ours must give up and keep serving.
    _, port = agi
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"agi_network: yes\n")
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(converse(port, agi_env("ping")), 2) == ['SET VARIABLE VIPBX_PONG "1"']


async def test_silent_peer_times_out(agi: tuple[AgiApplication, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "ENV_TIMEOUT", 0.1)
    _, port = agi
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"agi_network: yes\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 2) == b""  # server hung up on us
    writer.close()
