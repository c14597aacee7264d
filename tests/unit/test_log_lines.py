"""Log lines: one per event, naming the call (call id, tenant, user) it is about; JSON lines as an
option, with secrets still masked; a log file that rotates."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from base import logcontext, logsetup

SECRET = "s3cr3t-value-of-24-chars"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    if logsetup._installed is not None:
        root.removeHandler(logsetup._installed)
        logsetup._installed.close()
        logsetup._installed = None
    root.handlers[:] = handlers
    root.setLevel(level)


async def log_two_calls(log: logging.Logger) -> None:
    async def call(call_id: str, tenant: str, user: str) -> None:
        logcontext.bind(call_id=call_id)
        await asyncio.sleep(0)
        logcontext.bind(tenant=tenant, user=user)
        await asyncio.sleep(0)
        log.info("menu for %s", user)

    await asyncio.gather(call("1700000000.1", "acme", "anna"), call("1700000000.2", "borealis", "bo"))
    log.info("between calls")


def test_json_lines_name_each_call_and_mask_secrets(restore_root: None) -> None:
    stream = io.StringIO()
    logsetup.configure(False, lambda: [SECRET], stream, fmt="json")
    log = logging.getLogger("vipbx.test")
    asyncio.run(log_two_calls(log))
    try:
        raise ValueError(f"gateway said no to {SECRET}")
    except ValueError:
        log.exception("sending failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 4  # a traceback stays inside its line
    first, second, between, failed = lines
    assert {k: first[k] for k in ("level", "logger", "msg", "call_id", "tenant", "user")} == {
        "level": "info", "logger": "vipbx.test", "msg": "menu for anna", "call_id": "1700000000.1",
        "tenant": "acme", "user": "anna"}
    assert (second["call_id"], second["tenant"], second["user"]) == ("1700000000.2", "borealis", "bo")
    assert "call_id" not in between and between["ts"].endswith("+00:00")
    assert failed["level"] == "error" and "ValueError" in failed["exc"]
    assert SECRET not in stream.getvalue() and logsetup.MASK in failed["exc"]


def test_text_lines_end_with_the_call_they_are_about(restore_root: None) -> None:
    stream = io.StringIO()
    logsetup.configure(False, list, stream)
    asyncio.run(log_two_calls(logging.getLogger("vipbx.test")))
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("vipbx.test: menu for anna [call=1700000000.1 tenant=acme user=anna]")
    assert lines[2].endswith("vipbx.test: between calls")


def test_a_log_file_is_private_and_rotates(restore_root: None, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "serve.log"
    logsetup.configure(False, list, file=path, rotate_bytes=2000, keep=2)
    log = logging.getLogger("vipbx.test")
    for n in range(200):
        log.info("line %d of a busy day", n)
    assert path.stat().st_mode & 0o777 == 0o600
    kept = sorted(p.name for p in path.parent.iterdir())
    assert kept == ["serve.log", "serve.log.1", "serve.log.2"]
    assert "line 199 of a busy day" in path.read_text()
    assert all(p.stat().st_size <= 2100 for p in path.parent.iterdir())
