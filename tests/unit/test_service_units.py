"""The systemd units of Asterisk and `vipbx serve`, and `vipbx service`.

The units are checked by systemd itself where its tools are installed (no running systemd is
needed): `systemd-analyze verify` for the syntax and the settings, and `systemd --test`, which
loads the units as the service manager would and dumps what it read, for the quoting of values
holding blanks, `%`, `$`, quotes and backslashes. Where a tool is missing, that test is skipped
saying so; the text of the units is also asserted in plain Python.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asterisk_host import units
from asterisk_host.units import (
    ASTERISK_UNIT,
    SERVE_UNIT,
    TARGET,
    UNITS,
    UnitSettings,
    UnitValueError,
    render_units,
    write_units,
)
from cli import asterisk as asterisk_cli
from cli import service as service_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VENV = Path(sys.prefix)
SYSTEMD = next((p for p in (Path("/lib/systemd/systemd"), Path("/usr/lib/systemd/systemd")) if p.exists()), None)
# Values systemd must read back exactly: blanks, a specifier-looking %h, a $, quotes, a backslash.
ODD_HOME = '/srv/vi %h $HOME "pbx" it\'s a\\b'
ODD_CONFIG = ("/etc/vipbx/plat form%n.yaml", '/etc/vipbx/"acme".yaml', "/etc/vipbx/it's 100%.yaml")


def settings(home: str | Path = "/var/lib/vipbx", venv: Path = VENV,
             config: tuple[str, ...] = ("/etc/vipbx/platform.yaml", "/etc/vipbx/acme.yaml")) -> UnitSettings:
    return UnitSettings(venv=venv, home=Path(home), cache=Path("/var/cache/vipbx"), config=config,
                        asterisk_pid_file=Path(home) / "pbx" / "asterisk.pid")


def parsed(text: str) -> dict[str, dict[str, list[str]]]:
    """Section → key → every value (comments and blank lines left out)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


@pytest.fixture
def readable_dir() -> Iterator[Path]:
    """A folder the unprivileged `systemd --test` can read (pytest's tmp_path is private)."""
    folder = Path(tempfile.mkdtemp(prefix="vipbx-units-"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def verify(folder: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units' text is asserted by the other tests only")
    return subprocess.run(["systemd-analyze", "verify", *(str(folder / name) for name in UNITS)],
                          capture_output=True, text=True, timeout=60, check=False)


def systemd_dump(folder: Path) -> dict[str, list[str]]:
    """What systemd read from each of our units: unit → its dump lines (`systemd --test`)."""
    if SYSTEMD is None:
        pytest.skip("no systemd binary: the round trip through systemd's own parser cannot run")
    argv = [str(SYSTEMD), "--test", "--system", f"--unit={TARGET}", "--log-target=console"]
    if os.geteuid() == 0:  # systemd refuses test mode as root
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot run `systemd --test` unprivileged")
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    env = {"PATH": os.environ.get("PATH", ""), "SYSTEMD_UNIT_PATH": f"{folder}:"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    dumps: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in done.stdout.splitlines():
        if line.startswith("\t-> Unit "):
            name = line.removeprefix("\t-> Unit ").rstrip(":")
            current = dumps.setdefault(name, []) if name in UNITS else None
        elif current is not None:
            current.append(line.strip())
    if not all(f"Fragment Path: {folder / name}" in dumps.get(name, []) for name in UNITS):
        pytest.skip(f"`systemd --test` did not load the units here (exit status {done.returncode}): "
                    f"{done.stderr.strip()[-300:]}")
    return dumps


def dumped(lines: list[str], key: str) -> list[str]:
    return [line.removeprefix(f"{key}: ") for line in lines if line.startswith(f"{key}: ")]


def shell_words(command_line: str) -> list[str]:
    """The words of a command line that the dump quotes for a POSIX shell (`\\$` included)."""
    done = subprocess.run(["sh", "-c", f'printf "%s\\0" {command_line}'], capture_output=True, check=True,
                          timeout=10, text=True)
    return done.stdout.split("\0")[:-1]


# -- the units ---------------------------------------------------------------------------------
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    write_units(render_units(settings()), tmp_path)
    done = verify(tmp_path)
    assert done.returncode == 0, done.stderr
    # Warnings (an ignored line, an unknown specifier) do not change the exit status: none at all.
    assert done.stderr.strip() == "" and done.stdout.strip() == ""


def test_odd_values_pass_verify_and_systemd_reads_them_back_exactly(readable_dir: Path) -> None:
    venv = readable_dir / "my venv %n $x"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "vipbx").symlink_to(VENV / "bin" / "vipbx")  # verify wants a real executable
    write_units(render_units(settings(ODD_HOME, venv, ODD_CONFIG)), readable_dir)
    for name in UNITS:  # the dump runs as an unprivileged account
        assert stat.S_IMODE((readable_dir / name).stat().st_mode) == 0o644
    done = verify(readable_dir)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr

    dumps = systemd_dump(readable_dir)
    pbx, serve = dumps[ASTERISK_UNIT], dumps[SERVE_UNIT]
    assert dumped(pbx, "Environment") == [f"VIPBX_HOME={ODD_HOME}", "VIPBX_CACHE=/var/cache/vipbx"]
    assert dumped(serve, "Environment") == [f"VIPBX_HOME={ODD_HOME}", "VIPBX_CACHE=/var/cache/vipbx",
                                            "VIPBX_CONFIG=" + " ".join(ODD_CONFIG), "PYTHONUNBUFFERED=1"]
    assert dumped(pbx, "PIDFile") == [f"{ODD_HOME}/pbx/asterisk.pid"]
    assert dumped(serve, "ReadWritePaths") == [f"-{ODD_HOME}"]
    assert [shell_words(c) for c in dumped(pbx, "Command Line")] == [
        [str(venv / "bin" / "vipbx"), "asterisk", "start", "--timeout", str(units.ASTERISK_BOOT_SECONDS)]]
    assert [shell_words(c) for c in dumped(serve, "Command Line")] == [[str(venv / "bin" / "vipbx"), "serve"]]
    assert dumped(pbx, "Type") == ["forking"] and dumped(serve, "Type") == ["exec"]
    assert dumped(pbx, "UMask") == ["0027"] == dumped(serve, "UMask")


def test_the_quoting_in_the_text() -> None:
    rendered = render_units(settings(ODD_HOME, config=ODD_CONFIG))
    service = parsed(rendered[SERVE_UNIT])["Service"]
    assert service["Environment"][0] == '"VIPBX_HOME=/srv/vi %%h $HOME \\"pbx\\" it\'s a\\\\b"'
    assert service["Environment"][2] == ('"VIPBX_CONFIG=/etc/vipbx/plat form%%n.yaml /etc/vipbx/\\"acme\\".yaml '
                                         '/etc/vipbx/it\'s 100%%.yaml"')
    assert service["ExecStart"] == [f'"{VENV}/bin/vipbx" serve']
    pbx = parsed(rendered[ASTERISK_UNIT])["Service"]
    assert pbx["PIDFile"] == ['/srv/vi %%h $HOME "pbx" it\'s a\\b/pbx/asterisk.pid']


def test_restart_limits_journal_order_and_hardening() -> None:
    rendered = {name: parsed(text) for name, text in render_units(settings()).items()}
    pbx, serve, target = rendered[ASTERISK_UNIT], rendered[SERVE_UNIT], rendered[TARGET]
    for unit in (pbx, serve):
        assert unit["Service"]["Restart"] == ["on-failure"]
        assert unit["Service"]["RestartSec"] and unit["Unit"]["StartLimitIntervalSec"]
        assert unit["Unit"]["StartLimitBurst"] and unit["Service"]["KillMode"] == ["mixed"]
        assert unit["Service"]["StandardOutput"] == ["journal"] == unit["Service"]["StandardError"]
        assert unit["Service"]["UMask"] == ["0027"]
        assert unit["Unit"]["PartOf"] == [TARGET] and unit["Install"]["WantedBy"] == [TARGET]
    assert pbx["Service"]["Type"] == ["forking"]
    assert pbx["Service"]["PIDFile"] == ["/var/lib/vipbx/pbx/asterisk.pid"]
    assert int(pbx["Service"]["TimeoutStartSec"][0]) > units.ASTERISK_BOOT_SECONDS
    # Asterisk's start mounts and chroots as root: no sandboxing that would stop it.
    assert not {"NoNewPrivileges", "ProtectSystem", "PrivateTmp"} & set(pbx["Service"])
    assert serve["Service"]["NoNewPrivileges"] == ["yes"] and serve["Service"]["ProtectSystem"] == ["full"]
    assert ASTERISK_UNIT in serve["Unit"]["Wants"][0].split() and ASTERISK_UNIT in serve["Unit"]["After"][0].split()
    assert "Requires" not in serve["Unit"]  # serve outlives an Asterisk restart
    assert set(target["Unit"]["Wants"][0].split()) == {ASTERISK_UNIT, SERVE_UNIT}
    assert target["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("home, config, venv, private", [
    ("/var/lib/vipbx", ("/etc/vipbx/platform.yaml",), "/opt/vipbx", True),
    ("/tmp/vipbx", ("/etc/vipbx/platform.yaml",), "/opt/vipbx", False),
    ("/var/lib/vipbx", ("/var/tmp/checkout/examples/acme.yaml",), "/opt/vipbx", False),
    ("/var/lib/vipbx", ("/etc/vipbx/platform.yaml",), "/tmp/clone/.venv", False),
])
def test_a_private_tmp_only_where_the_services_files_are_not_in_tmp(home: str, config: tuple[str, ...], venv: str,
                                                                    private: bool) -> None:
    """Under a booted systemd, PrivateTmp= hid a checkout's YAML in /tmp from vipbx serve."""
    serve = parsed(render_units(settings(home, Path(venv), config))[SERVE_UNIT])
    assert ("PrivateTmp" in serve["Service"]) is private
    if private:
        assert serve["Service"]["PrivateTmp"] == ["yes"]


@pytest.mark.parametrize("change, says", [
    ({"config": ("/etc/vipbx/a.yaml\nExecStartPre=/bin/false",)}, "control character"),
    ({"venv": Path('/opt/"vipbx"')}, "quotes or backslashes"),
    ({"venv": Path("opt/vipbx")}, "not an absolute path"),
    ({"config": ()}, "no tenant YAML files"),
])
def test_values_a_unit_cannot_hold_are_refused(change: dict[str, object], says: str) -> None:
    base = settings()
    values = {**base.__dict__, **change}
    with pytest.raises(UnitValueError, match=says):
        render_units(UnitSettings(**values))  # type: ignore[arg-type]


# -- vipbx service -----------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A home of its own, no Asterisk to find (an empty cache), and no systemd."""
    monkeypatch.setattr(units, "SYSTEMD_RUNTIME", tmp_path / "no-systemd")
    (tmp_path / "cache").mkdir()
    return {"VIPBX_HOME": str(tmp_path / "home"), "VIPBX_CACHE": str(tmp_path / "cache"),
            "VIPBX_CONFIG": f"{EXAMPLES / 'platform.yaml'} {EXAMPLES / 'acme.yaml'}"}


def vipbx_service(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(service_cli.service_group, list(args), env=env)


def test_units_command_writes_the_units_with_absolute_files(tmp_path: Path, env: dict[str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES)
    result = vipbx_service({**env, "VIPBX_CONFIG": "platform.yaml acme.yaml"}, "units", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    for name in UNITS:
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644
    serve = parsed((tmp_path / "out" / SERVE_UNIT).read_text())["Service"]
    assert serve["Environment"][:3] == [f'"VIPBX_HOME={tmp_path}/home"', f'"VIPBX_CACHE={tmp_path}/cache"',
                                        f'"VIPBX_CONFIG={EXAMPLES}/platform.yaml {EXAMPLES}/acme.yaml"']


def test_a_yaml_path_with_a_blank_is_refused(tmp_path: Path, env: dict[str, str]) -> None:
    result = vipbx_service(env, "units", "--out", str(tmp_path / "out"), str(tmp_path / "my tenants.yaml"))
    assert result.exit_code == 1
    assert "holds a blank, which VIPBX_CONFIG cannot carry" in result.output
    assert not (tmp_path / "out").exists()


def test_install_refuses_where_systemd_does_not_run(tmp_path: Path, env: dict[str, str]) -> None:
    result = vipbx_service(env, "install", "--unit-dir", str(tmp_path / "units"))
    assert result.exit_code == 1
    assert "systemd is not this machine's service manager" in result.output
    assert "./deploy.sh start" in result.output
    assert not (tmp_path / "units").exists()


@pytest.fixture
def live() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; each is ended by its own pid afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, 15)
        proc.wait(timeout=10)


def fake_serve(live: list[subprocess.Popen[bytes]]) -> int:
    """A live process whose command line reads like `vipbx serve`'s."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "serve"])
    live.append(proc)
    # Just after the exec the kernel may still show an empty command line.
    deadline = time.monotonic() + 10
    while b"serve" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.pid


def write_serve_pid(env: dict[str, str], pid: int) -> None:
    home = Path(env["VIPBX_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "serve.pid").write_text(f"{pid}\n")


def test_status_in_the_background_mode_reads_deploy_shs_pid_file(env: dict[str, str],
                                                                  live: list[subprocess.Popen[bytes]]) -> None:
    pid = fake_serve(live)
    write_serve_pid(env, pid)
    result = vipbx_service(env, "status")
    assert result.output.splitlines() == ["asterisk: stopped", f"vipbx serve: running (pid {pid}, background)"]
    assert result.exit_code == 1  # Asterisk is stopped


def test_status_with_both_running_in_the_background(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                     live: list[subprocess.Popen[bytes]]) -> None:
    serve = fake_serve(live)
    write_serve_pid(env, serve)
    pbx = subprocess.Popen(["sleep", "120"])
    live.append(pbx)
    # Asterisk's own pid file is checked by running_pid (its command line must be Asterisk's).
    monkeypatch.setattr(service_cli, "running_pid", lambda paths: pbx.pid)
    result = vipbx_service(env, "status")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"asterisk: running (pid {pbx.pid}, background)",
                                          f"vipbx serve: running (pid {serve}, background)"]


def test_status_without_a_pid_file_or_with_a_stale_one(env: dict[str, str],
                                                       live: list[subprocess.Popen[bytes]]) -> None:
    assert vipbx_service(env, "status").output.splitlines() == ["asterisk: stopped", "vipbx serve: stopped"]
    other = subprocess.Popen(["sleep", "120"])  # alive, but not a vipbx serve: its pid was reused
    live.append(other)
    write_serve_pid(env, other.pid)
    assert vipbx_service(env, "status").output.splitlines()[1] == "vipbx serve: stopped"
    ended = subprocess.Popen(["sleep", "120"])
    os.kill(ended.pid, 15)
    ended.wait(timeout=10)
    write_serve_pid(env, ended.pid)
    result = vipbx_service(env, "status")
    assert result.output.splitlines()[1] == "vipbx serve: stopped"
    assert result.exit_code == 1


# -- with systemd (a stand-in systemctl) --------------------------------------------------------
@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Path:
    """systemd "runs": a systemctl that records its arguments and answers `show` from a JSON file.
    Returns the record (one JSON list of arguments a line)."""
    (tmp_path / "run-systemd").mkdir()
    monkeypatch.setattr(units, "SYSTEMD_RUNTIME", tmp_path / "run-systemd")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record, answers = tmp_path / "systemctl.calls", tmp_path / "systemctl.json"
    answers.write_text("{}")
    script = bin_dir / "systemctl"
    script.write_text(f"""#!{sys.executable}
import json, sys
with open({str(record)!r}, "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "show":
    unit = sys.argv[-1]
    known = json.load(open({str(answers)!r})).get(unit, {{"LoadState": "not-found", "ActiveState": "inactive", "MainPID": "0"}})
    print("\\n".join(f"{{k}}={{v}}" for k, v in known.items()))
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    env["PATH"] = os.environ["PATH"]
    return record


def calls(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def answer(record: Path, states: dict[str, dict[str, str]]) -> None:
    (record.parent / "systemctl.json").write_text(json.dumps(states))


def test_status_names_systemd_as_the_manager(systemctl: Path, env: dict[str, str]) -> None:
    answer(systemctl, {
        SERVE_UNIT: {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": "4242"},
        ASTERISK_UNIT: {"LoadState": "loaded", "ActiveState": "failed", "SubState": "failed", "MainPID": "0",
                        "Result": "start-limit-hit"},
    })
    result = vipbx_service(env, "status")
    assert result.output.splitlines() == [
        f"asterisk: stopped ({ASTERISK_UNIT} failed (start-limit-hit): journalctl -u {ASTERISK_UNIT})",
        "vipbx serve: running (pid 4242, systemd)"]


def installable(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    (Path(env["VIPBX_HOME"]) / "etc" / "current").mkdir(parents=True)  # something is deployed
    monkeypatch.setattr(service_cli, "check_runtime", lambda: None)  # and Asterisk is set up


def test_install_writes_reloads_enables_and_starts(tmp_path: Path, systemctl: Path, env: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    installable(tmp_path, env, monkeypatch)
    result = vipbx_service(env, "install", "--unit-dir", str(tmp_path / "units"))
    assert result.exit_code == 0, result.output
    for name in UNITS:
        assert stat.S_IMODE((tmp_path / "units" / name).stat().st_mode) == 0o644
    changes = [c for c in calls(systemctl) if c[0] != "show"]
    assert changes == [["daemon-reload"], ["enable", "--now", *UNITS]]
    assert f"{ASTERISK_UNIT} (written)" in result.output


def test_install_refuses_while_serve_runs_in_the_background_unless_asked(
        tmp_path: Path, systemctl: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        live: list[subprocess.Popen[bytes]]) -> None:
    installable(tmp_path, env, monkeypatch)
    pid = fake_serve(live)
    write_serve_pid(env, pid)
    refused = vipbx_service(env, "install", "--unit-dir", str(tmp_path / "units"))
    assert refused.exit_code == 1
    assert f"vipbx serve (pid {pid}) run in the background, outside systemd" in refused.output
    assert not (tmp_path / "units").exists() and live[0].poll() is None

    done = vipbx_service(env, "install", "--stop-background", "--unit-dir", str(tmp_path / "units"))
    assert done.exit_code == 0, done.output
    assert live[0].wait(timeout=15) is not None  # ended by its pid
    assert not (Path(env["VIPBX_HOME"]) / "serve.pid").exists()


def test_uninstall_stops_disables_and_removes(tmp_path: Path, systemctl: Path, env: dict[str, str]) -> None:
    write_units(render_units(settings()), tmp_path / "units")
    result = vipbx_service(env, "uninstall", "--unit-dir", str(tmp_path / "units"))
    assert result.exit_code == 0, result.output
    assert not any((tmp_path / "units" / name).exists() for name in UNITS)
    disabled = [c for c in calls(systemctl) if c[0] == "disable"]
    assert disabled == [["disable", "--now", unit] for unit in (TARGET, SERVE_UNIT, ASTERISK_UNIT)]


def test_vipbx_asterisk_start_hands_over_to_an_installed_unit_of_this_home(
        tmp_path: Path, systemctl: Path) -> None:
    instance = asterisk_cli.AsteriskInstance(None, tmp_path / "pbx", tmp_path / "etc")  # type: ignore[arg-type]
    answer(systemctl, {ASTERISK_UNIT: {"LoadState": "loaded", "PIDFile": str(instance.pid_file)}})
    assert asterisk_cli._installed_unit(instance) == ASTERISK_UNIT
    other = asterisk_cli.AsteriskInstance(None, tmp_path / "other", tmp_path / "etc")  # type: ignore[arg-type]
    assert asterisk_cli._installed_unit(other) is None  # a unit for another VIPBX_HOME
