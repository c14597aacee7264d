"""`vipbx doctor`'s checks on the parts a unit test can stand up for real (a FastAGI server, an
SMTP greeting, SQLite, folders) and their one-line verdicts; the whole run against a real PBX is
in tests/e2e/test_serve.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import NamedTuple

import pytest

from agi.server import start_agi_server
from asterisk_conf.render import AGI_KEY
from asterisk_conf.validate import load_config
from base.model import Config
from base.paths import Paths
from base.secrets import SecretStore
from callstate import CallStateService
from callstate.schema import MIGRATIONS
from doctor import Finding, Platform, checks, examine
from prompts import catalogue

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def platform_yaml(folder: Path, extra: str = "") -> Config:
    (folder / "platform.yaml").write_text("platform:\n  default_language: fi\n" + extra)
    return load_config([str(folder / "platform.yaml"), str(EXAMPLES / "acme.yaml")])


def doctor_for(home: Path, config: Config) -> Platform:
    return Platform(config, Paths.resolve(home), lambda: None)


def test_disk_space_is_judged_by_the_fuller_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = doctor_for(tmp_path, platform_yaml(tmp_path))
    p.paths.spool.mkdir(parents=True)

    def verdict(free: int) -> Finding:
        monkeypatch.setattr(checks.shutil, "disk_usage", lambda _: NamedTuple("U", [("total", int), ("used", int), ("free", int)])(1000 * 2**20, 0, free * 2**20))
        return asyncio.run(checks.disk(p))

    assert verdict(500).status == "ok"
    assert verdict(80).status == "warn"
    low = verdict(30)
    assert low.status == "fail" and low.detail.endswith("30 MiB free, 3%")


def test_missing_prompts_are_counted_and_named(tmp_path: Path) -> None:
    p = doctor_for(tmp_path, platform_yaml(tmp_path))
    for lang in ("fi", "sv", "en"):
        (p.paths.sounds / lang).mkdir(parents=True)
        for name in catalogue.names():
            (p.paths.sounds / lang / f"{name}.wav").write_bytes(b"")
    assert asyncio.run(checks.prompts(p)).status == "ok"
    (p.paths.sounds / "sv" / "vm-goodbye.wav").unlink()
    found = asyncio.run(checks.prompts(p))
    assert (found.status, found.detail) == ("fail", "1 missing (sv/vm-goodbye): vipbx prompts build")


def test_spool_that_is_missing_or_not_writable_fails(tmp_path: Path) -> None:
    p = doctor_for(tmp_path, platform_yaml(tmp_path))
    assert asyncio.run(checks.spool(p)).status == "fail"
    p.paths.spool.mkdir(parents=True)
    assert asyncio.run(checks.spool(p)).status == "ok"
    assert list(p.paths.spool.iterdir()) == []  # its test file is gone


def test_the_database_schema_is_read_without_migrating(tmp_path: Path) -> None:
    config = platform_yaml(tmp_path)
    p = doctor_for(tmp_path, config)
    assert asyncio.run(checks.database(p)).status == "warn"  # none yet: nothing created by looking
    assert not (tmp_path / "state.sqlite3").exists()
    with CallStateService(tmp_path / "state.sqlite3", config):
        pass
    assert asyncio.run(checks.database(p)) == Finding("database", "ok", f"sqlite: reachable, schema {MIGRATIONS[-1].version}")
    newer = MIGRATIONS[-1].version + 1
    with sqlite3.connect(tmp_path / "state.sqlite3") as conn:
        conn.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (?, 'x', 'y')", (newer,))
    found = asyncio.run(checks.database(p))
    assert found.status == "fail" and f"schema {newer} is newer than this vipbx" in found.detail


async def test_fastagi_must_answer_the_ping_with_the_key(tmp_path: Path) -> None:
    config = platform_yaml(tmp_path)
    secrets = SecretStore(tmp_path / "secrets.json")
    server, _ = await start_agi_server(config, "127.0.0.1", 0, key=secrets.get(AGI_KEY))
    port = server.sockets[0].getsockname()[1]
    try:
        (tmp_path / "platform.yaml").write_text(f"platform:\n  agi: {{bind: 127.0.0.1, port: {port}}}\n")
        p = doctor_for(tmp_path, load_config([str(tmp_path / "platform.yaml"), str(EXAMPLES / "acme.yaml")]))
        assert await checks.fastagi(p) == Finding("fastagi", "ok", f"answers at 127.0.0.1:{port}")
        secrets.path.write_text('{"agi": "not-the-key-the-server-has"}')
        refused = await checks.fastagi(doctor_for(tmp_path, p.config))
        assert refused.status == "fail" and "did not answer the ping" in refused.detail
    finally:
        server.close()
        await server.wait_closed()
    gone = await checks.fastagi(doctor_for(tmp_path, p.config))
    assert gone.status == "fail" and gone.detail.startswith(f"nothing listens at 127.0.0.1:{port}")


async def test_gateways_must_greet_or_accept(tmp_path: Path) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.example ESMTP\r\n")
        await writer.drain()
        await reader.read(100)
        writer.close()

    relay = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = relay.sockets[0].getsockname()[1]
    try:
        config = platform_yaml(tmp_path, f"  notifications:\n    smtp_host: 127.0.0.1\n    smtp_port: {port}\n"
                                         "    smtp_sender: vm@pbx.example\n")
        found = await checks.gateways(doctor_for(tmp_path, config))
        assert found == Finding("gateways", "ok", f"reachable: SMTP 127.0.0.1:{port}")
    finally:
        relay.close()
        await relay.wait_closed()
    found = await checks.gateways(doctor_for(tmp_path, config))
    assert found.status == "fail" and found.detail.startswith(f"SMTP 127.0.0.1:{port}: cannot connect")
    assert (await checks.gateways(doctor_for(tmp_path, platform_yaml(tmp_path)))).detail.startswith("none configured")


async def test_a_hung_or_broken_check_is_a_failure_of_its_own() -> None:
    async def hangs(_: Platform) -> Finding:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    async def breaks(_: Platform) -> Finding:
        raise KeyError("status")

    async def fine(_: Platform) -> Finding:
        return Finding("fine", "ok", "yes")

    found = await examine(None, (hangs, breaks, fine), timeout=0.2)  # type: ignore[arg-type]
    assert found == [Finding("hangs", "fail", "no result within 0.2 s"),
                     Finding("breaks", "fail", "KeyError: 'status'"), Finding("fine", "ok", "yes")]


def test_asterisk_not_running_fails_without_asking_anything(tmp_path: Path) -> None:
    found = asyncio.run(checks.asterisk(doctor_for(tmp_path, platform_yaml(tmp_path))))
    assert found == Finding("asterisk", "fail", "not running (start it: vipbx asterisk start)")


def test_doctor_never_generates_a_secret(tmp_path: Path) -> None:
    """Comparing the YAML with the live files needs the secrets rendered into them; a missing one
    is reported, not made (a secret doctor wrote could race a deploy's)."""
    from asterisk_conf.render import render_config

    config = platform_yaml(tmp_path)
    p = Platform(config, Paths.resolve(tmp_path), lambda: None, lambda secrets: render_config(config, secrets))
    found = asyncio.run(checks.configuration(p))
    assert found.status == "warn" and found.detail.startswith("not compared: the secret ")
    assert not (tmp_path / "secrets.json").exists()
    assert asyncio.run(checks.fastagi(p)) == Finding("fastagi", "fail", "no AGI key: never deployed")
    assert not (tmp_path / "secrets.json").exists()


def test_a_generation_that_changed_no_reloaded_file_needs_no_reload(tmp_path: Path) -> None:
    paths = Paths.resolve(tmp_path)
    for number, cel in (("0001", "a"), ("0002", "b")):
        folder = paths.generations / number
        folder.mkdir(parents=True)
        (folder / "extensions.conf").write_text("[x]\n")
        (folder / "cel.conf").write_text(cel)
    paths.current.symlink_to(paths.generations / "0002")
    paths.previous.symlink_to(paths.generations / "0001")
    assert not checks._needed_a_reload(paths)  # cel.conf is read at start only: nothing was missed
    (paths.generations / "0002" / "extensions.conf").write_text("[y]\n")
    assert checks._needed_a_reload(paths)


def test_a_dialplan_changed_live_needs_no_reload_but_other_files_still_do(tmp_path: Path) -> None:
    paths = Paths.resolve(tmp_path)
    for number, exten in (("0001", "1"), ("0002", "2")):
        folder = paths.generations / number
        folder.mkdir(parents=True)
        (folder / "extensions.conf").write_text(f"[x]\nexten => {exten},1,Hangup()\n")
        (folder / "pjsip.conf").write_text("[t]\ntype=transport\n")
    paths.current.symlink_to(paths.generations / "0002")
    paths.previous.symlink_to(paths.generations / "0001")
    assert checks._needed_a_reload(paths)
    (paths.etc / "dialplan-patched").write_text("0001\n")  # an older generation's: not this one
    assert checks._needed_a_reload(paths)
    (paths.etc / "dialplan-patched").write_text("0002\n")
    assert not checks._needed_a_reload(paths)
    (paths.generations / "0002" / "pjsip.conf").write_text("[t]\ntype=transport\nbind=127.0.0.1\n")
    assert checks._needed_a_reload(paths)
