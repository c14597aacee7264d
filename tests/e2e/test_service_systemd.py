"""The systemd units under a booted systemd (systemdrig.py): `vipbx service install` writes,
enables and starts them; Asterisk and vipbx serve run and answer; each is restarted after it is
killed; serve logs to the journal; stopping vipbx.target stops both; `vipbx service status` says
what systemd says; `vipbx service uninstall` removes them.

The home and the YAML are outside /tmp (under /var/lib), as on a real machine, so the serve unit
keeps its private /tmp unless the checkout itself is under /tmp.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clitool import Vipbx, write_yaml
from conftest import unavailable
from support import eventually
from systemdrig import BootedSystemd, SystemdUnavailable

from asterisk_host import AsteriskRuntime

IP, CARRIER_IP, PORT_BASE = "127.0.0.27", "127.0.0.28", 17500
VENV = Path(sys.executable).parent.parent  # vipbx is installed in the environment running the tests


@pytest.fixture(scope="module")
def place() -> Iterator[Path]:
    folder = Path("/var/lib") / f"vipbx-e2e-systemd-{os.getpid()}"
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def systemd(asterisk_runtime: AsteriskRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedSystemd]:
    booted = BootedSystemd(tmp_path_factory.mktemp("systemd"))
    try:
        booted.start()
    except SystemdUnavailable as exc:
        unavailable(str(exc))
    try:
        yield booted
    finally:
        booted.stop()


async def test_the_units_run_restart_log_and_stop_under_systemd(systemd: BootedSystemd, place: Path) -> None:
    (place / "yaml").mkdir()
    files = [str(p) for p in write_yaml(place / "yaml", IP, CARRIER_IP, PORT_BASE)]
    home = place / "home"
    env = {"VIPBX_HOME": str(home), "VIPBX_CACHE": os.environ.get("VIPBX_CACHE", "/var/cache/vipbx")}
    Vipbx(home)("deploy", *files)  # Asterisk not running yet: the files wait for its start
    vipbx = str(VENV / "bin" / "vipbx")

    installed = systemd.run(vipbx, "service", "install", *files, "--venv", str(VENV), env=env).stdout
    assert re.search(r"^asterisk: running \(pid \d+, systemd\)$", installed, re.MULTILINE), installed
    assert re.search(r"^vipbx serve: running \(pid \d+, systemd\)$", installed, re.MULTILINE), installed
    assert systemd.show("vipbx.target", "ActiveState") == "active"
    assert systemd.show("vipbx-asterisk.service", "UnitFileState") == "enabled"

    # Both answer: Asterisk's CLI, and serve's metrics with its ARI connection up, its home page.
    assert "System uptime" in systemd.run(vipbx, "asterisk", "cli", "core show uptime", env=env).stdout

    def metrics() -> str | None:
        try:
            text = httpx.get(f"http://{IP}:{PORT_BASE + 87}/metrics", timeout=2).text
        except httpx.HTTPError:
            return None
        return text if "vipbx_ari_connected 1.0" in text else None

    await eventually(metrics, 30, "vipbx serve connected to Asterisk's ARI", interval=0.3)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"http://{IP}:{PORT_BASE + 90}/login")).status_code == 200

    # Killed, each is started again by systemd (Restart=on-failure).
    for unit in ("vipbx-serve.service", "vipbx-asterisk.service"):
        before = systemd.show(unit, "MainPID")
        systemd.run("kill", "-KILL", before)
        await eventually(lambda unit=unit, before=before: systemd.show(unit, "ActiveState") == "active"
                 and systemd.show(unit, "MainPID") not in ("0", before), 60, f"{unit} restarted", interval=0.3)
        assert systemd.show(unit, "NRestarts") == "1"
    await eventually(metrics, 60, "vipbx serve connected to the restarted Asterisk", interval=0.3)
    uptime = systemd.run(vipbx, "asterisk", "cli", "core show uptime seconds", env=env).stdout
    assert int(re.search(r"System uptime: (\d+)", uptime).group(1)) < 120  # type: ignore[union-attr]

    # The journal has serve's own lines and systemd's account of the kill.
    journal = systemd.run("journalctl", "-u", "vipbx-serve", "--no-pager").stdout
    assert "ARI events connected" in journal
    assert "vipbx-serve.service: Main process exited, code=killed, status=9/KILL" in journal
    status = systemd.run(vipbx, "service", "status", env=env).stdout
    serve_pid = systemd.show("vipbx-serve.service", "MainPID")
    assert f"vipbx serve: running (pid {serve_pid}, systemd)" in status, status

    # One stop for both; vipbx agrees.
    systemd.run("systemctl", "stop", "vipbx.target")
    await eventually(lambda: all(systemd.show(u, "ActiveState") == "inactive"
                         for u in ("vipbx-asterisk.service", "vipbx-serve.service")), 40, "both stopped", interval=0.3)
    stopped = systemd.run(vipbx, "service", "status", env=env, check=False)
    assert stopped.returncode == 1 and stopped.stdout.splitlines() == ["asterisk: stopped", "vipbx serve: stopped"]

    removed = systemd.run(vipbx, "service", "uninstall", env=env).stdout
    assert "removed vipbx-asterisk.service, vipbx-serve.service, vipbx.target" in removed
    assert not any(p.name.startswith("vipbx") for p in systemd.units.iterdir())
