"""Who may ask the FastAGI server: the key in the dialplan's AGI() arguments and the permit list,
over real TCP sockets."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from test_agi_routing import CONFIG, KEY, agi_env

from agi.server import AgiApplication, start_agi_server
from base.model import Listener

SIOCGIFADDR = 0x8915


def local_non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine that is not loopback (a peer the server must judge)."""
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            return address
    return None


async def exchange(host: str, port: int, env: bytes) -> list[str]:
    """Send an AGI environment as Asterisk would; the commands the server sends back."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(env)
    await writer.drain()
    commands = []
    try:
        while line := await asyncio.wait_for(reader.readline(), 5):
            commands.append(line.decode().rstrip("\n"))
            writer.write(b"200 result=1\n")
            await writer.drain()
    except ConnectionError:
        pass  # a refused peer may see a reset instead of a clean end
    writer.close()
    return commands


@pytest.fixture
async def agi() -> AsyncIterator[tuple[AgiApplication, int]]:
    server, app = await start_agi_server(CONFIG, "127.0.0.1", 0, key=KEY)
    yield app, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


PONG = ['SET VARIABLE VIPBX_PONG "1"']


async def test_the_key_opens_and_its_absence_or_a_wrong_one_is_refused_and_logged(
        agi: tuple[AgiApplication, int], caplog: pytest.LogCaptureFixture) -> None:
    _, port = agi
    caplog.set_level(logging.DEBUG)
    assert await exchange("127.0.0.1", port, agi_env("ping")) == PONG
    assert await exchange("127.0.0.1", port, agi_env("ping", key=None)) == []
    assert await exchange("127.0.0.1", port, agi_env("ping", key=KEY[:-1])) == []
    assert await exchange("127.0.0.1", port, agi_env("ping", key=KEY + "x")) == []
    assert await exchange("127.0.0.1", port, agi_env("ping", key="")) == []
    # The key is the first argument only: one in another place does not count.
    assert await exchange("127.0.0.1", port, agi_env("ping", "x", KEY, key=None)) == []
    refused = [r for r in caplog.records if "wrong or missing key" in r.getMessage()]
    assert len(refused) == 5
    assert KEY[:-1] not in caplog.text  # neither the key nor a guess at it is written down


async def test_the_key_is_not_seen_by_the_scripts(agi: tuple[AgiApplication, int]) -> None:
    app, port = agi
    seen: list[dict[str, str]] = []

    async def spy(request: object) -> None:
        seen.append(dict(request.headers))  # type: ignore[attr-defined]

    app.add_route("spy", spy)
    await exchange("127.0.0.1", port, agi_env("spy", "a", "", "c"))
    args = {k: v for k, v in seen[0].items() if k.startswith("agi_arg_")}
    assert args == {"agi_arg_1": "a", "agi_arg_2": "", "agi_arg_3": "c"}


async def test_an_application_without_a_key_cannot_be_made() -> None:
    with pytest.raises(ValueError):
        AgiApplication(CONFIG, key="")


@pytest.mark.parametrize("permit, admitted", [((), False), (("10.9.0.0/16",), False), (("{me}/32",), True)])
async def test_a_peer_outside_loopback_and_the_permit_list_is_dropped(
        permit: tuple[str, ...], admitted: bool, caplog: pytest.LogCaptureFixture) -> None:
    me = local_non_loopback_ipv4()
    if me is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    listener = Listener(me, 0, allow_remote=bool(permit), permit=tuple(p.format(me=me) for p in permit))
    config = replace(CONFIG, platform=replace(CONFIG.platform, agi=listener))
    server, _ = await start_agi_server(config, me, 0, key=KEY)
    port = server.sockets[0].getsockname()[1]
    caplog.set_level(logging.WARNING, logger="agi.server")
    try:
        # The client's source is `me` too: a local, non-loopback peer.
        assert await exchange(me, port, agi_env("ping")) == (PONG if admitted else [])
    finally:
        server.close()
        await server.wait_closed()
    assert ("not a permitted address" in caplog.text) is not admitted


async def test_permitted_addresses() -> None:
    listener = Listener("0.0.0.0", 4573, allow_remote=True, permit=("192.0.2.0/24", "2001:db8::/32"))
    app = AgiApplication(replace(CONFIG, platform=replace(CONFIG.platform, agi=listener)), key=KEY)
    assert app.permitted(("127.0.0.5", 1)) and app.permitted(("::1", 1, 0, 0))
    assert app.permitted(("192.0.2.77", 1)) and app.permitted(("::ffff:192.0.2.77", 1, 0, 0))
    assert app.permitted(("2001:db8::9", 1, 0, 0))
    assert not app.permitted(("198.51.100.1", 1)) and not app.permitted(("2001:db9::1", 1, 0, 0))
    assert not app.permitted(None) and not app.permitted(("not-an-ip", 1))
    # Without allow_remote the permit list admits nobody else (validation refuses it anyway).
    closed = replace(listener, allow_remote=False)
    app.config = replace(CONFIG, platform=replace(CONFIG.platform, agi=closed))
    assert not app.permitted(("192.0.2.77", 1))
