"""`vipbx deploy` against an AMI that accepts connections and then says nothing, over a real
socket: every AMI step has a time limit, the deploy fails saying so, and the old configuration
stays in place."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from asterisk_conf.deploy import Generations
from base.ami import AmiSettings, AmiTimeout, ami_session
from base.paths import Paths
from cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class SilentAmi:
    """Accepts connections. `answer_login`: the banner and a successful login, then silence for
    every other action (`actions` records them); otherwise silence from the start."""

    answer_login: bool = False
    actions: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.answer_login:
            writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                fields = dict(line.split(": ", 1) for line in raw.decode().strip().split("\r\n") if ": " in line)
                self.actions.append(fields.get("Action", ""))
                if self.answer_login and fields.get("Action") == "Login":
                    writer.write(f"Response: Success\r\nActionID: {fields.get('ActionID', '')}\r\n"
                                 "Message: Authentication accepted\r\n\r\n".encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture(params=[False, True], ids=["silent", "login-only"])
def silent_ami(request: pytest.FixtureRequest) -> Iterator[SilentAmi]:
    """The fake on 127.0.0.1 in a thread of its own: the CLI runs its own event loop."""
    fake = SilentAmi(answer_login=request.param)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    done: list[asyncio.Future[None]] = []

    async def serve() -> None:
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        fake.port = server.sockets[0].getsockname()[1]
        done.append(loop.create_future())
        ready.set()
        async with server:
            await done[0]
            server.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield fake
    loop.call_soon_threadsafe(done[0].set_result, None)
    thread.join(5)


def config_files(tmp_path: Path, ami_port: int, extra_user: bool = False) -> list[str]:
    platform = (EXAMPLES / "platform.yaml").read_text(encoding="utf-8")
    platform = platform.replace("ami: {bind: 127.0.0.1, port: 5038}", f"ami: {{bind: 127.0.0.1, port: {ami_port}}}")
    (tmp_path / "platform.yaml").write_text(platform, encoding="utf-8")
    acme = (EXAMPLES / "acme.yaml").read_text(encoding="utf-8")
    if extra_user:
        acme = acme.replace("Anna Virtanen", "Anna Virtanen-Korhonen", 1)
    (tmp_path / "acme.yaml").write_text(acme, encoding="utf-8")
    return [str(tmp_path / "platform.yaml"), str(tmp_path / "acme.yaml")]


def vipbx(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_deploy_against_a_silent_ami_fails_in_time_and_keeps_the_old_configuration(
        tmp_path: Path, silent_ami: SilentAmi) -> None:
    home = tmp_path / "home"
    (tmp_path / "yaml").mkdir()
    files = config_files(tmp_path / "yaml", silent_ami.port)
    # The first deploy with no Asterisk at all: a closed port, the files wait for its start.
    closed = config_files(tmp_path / "yaml", 1)
    code, out = vipbx(home, "deploy", *closed)
    assert code == 0, out
    gens = Generations(Paths(home))
    before = gens.live()

    changed = config_files(tmp_path / "yaml", silent_ami.port, extra_user=True)
    assert changed == files
    started = time.monotonic()
    code, out = vipbx(home, "deploy", "--ami-timeout", "0.5", "--reload-timeout", "0.5", *changed)
    took = time.monotonic() - started
    assert code == 1, out
    assert took < 10  # bounded: before, a silent reload waited forever
    if silent_ami.answer_login:
        # The reload got no answer: restored, and the restore's reload got none either.
        assert "no answer from AMI" in out and "within 0.5 s" in out and "back in place" in out, out
        assert silent_ami.actions.count("Reload") >= 2
    else:
        assert "did not answer the login within 0.5 s" in out and "nothing changed" in out, out
    assert gens.live() == before
    assert not any(gens.generations.glob(".staging-*"))


async def test_every_action_has_a_time_limit(silent_ami: SilentAmi) -> None:
    settings = AmiSettings("127.0.0.1", silent_ami.port, "vipbx", "s3cret")
    with pytest.raises(AmiTimeout, match="0.3 s"):
        async with ami_session(settings, timeout=0.3, action_timeout=0.3) as ami:
            await ami.action("Reload", Module="res_pjsip.so")
