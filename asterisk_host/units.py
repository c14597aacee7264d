"""Asterisk and `vipbx serve` as systemd services: their unit files, and who runs what.

Where systemd runs the machine, three units are installed: `vipbx-asterisk.service` (the PBX,
started by `vipbx asterisk start` as in the background mode), `vipbx-serve.service` (the ARI
application, FastAGI and the users' home page) and `vipbx.target` (both). Elsewhere (containers,
CI) deploy.sh starts both in the background and keeps their pids in files; `states()` reads
either, so every tool shows the same answer.

Values written into a unit (paths, the list of YAML files) are quoted the way systemd.syntax(7)
reads them back: C-style escapes inside double quotes and `%` doubled (specifiers). Nothing of
ours reaches a command line's arguments, where `$` would also need doubling.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

ASTERISK_UNIT = "vipbx-asterisk.service"
SERVE_UNIT = "vipbx-serve.service"
TARGET = "vipbx.target"
UNITS = (ASTERISK_UNIT, SERVE_UNIT, TARGET)
# Stopped in this order (serve before the Asterisk it talks to); started the other way round.
STOP_ORDER = (TARGET, SERVE_UNIT, ASTERISK_UNIT)

UNIT_DIR = Path("/etc/systemd/system")
# systemd's own test of whether it is the service manager (sd_booted(3)).
SYSTEMD_RUNTIME = Path("/run/systemd/system")
# The pid file deploy.sh writes for the `vipbx serve` it starts in the background.
SERVE_PID_NAME = "serve.pid"

# How long `vipbx asterisk start` waits for "fully booted" under the unit (its own default is 60 s):
# 40,000 users on one Asterisk boot in about 127 s (bench/README.md). systemd's TimeoutStartSec=
# is a little longer.
ASTERISK_BOOT_SECONDS = 300
UNIT_MODE = 0o644


class UnitValueError(ValueError):
    """A value that a unit file cannot hold (a control character, a relative path, ...)."""


@dataclass(frozen=True)
class UnitSettings:
    """What the units are rendered with; every path absolute."""

    venv: Path  # the Python environment vipbx is installed in
    home: Path  # VIPBX_HOME
    cache: Path  # VIPBX_CACHE
    config: tuple[str, ...]  # the tenant YAML files (VIPBX_CONFIG)
    asterisk_pid_file: Path  # where `vipbx asterisk start` writes Asterisk's pid

    @property
    def vipbx(self) -> Path:
        return self.venv / "bin" / "vipbx"


# -- quoting (systemd.syntax(7), systemd.service(5) "Command lines") --------------------------
def _check(value: str, what: str) -> str:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UnitValueError(f"{what} {value!r} holds a control character; a unit file cannot hold it")
    return value


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_path(path: str | Path) -> str:
    """The executable of an Exec*= line, read back by systemd as exactly `path`.

    systemd refuses quotes and backslashes in an executable's name (and expands no `$` in it).
    """
    text = _absolute(path)
    if any(ch in text for ch in "\"'\\"):
        raise UnitValueError(f"{text!r}: systemd refuses an executable whose path holds quotes or "
                             "backslashes; install vipbx elsewhere")
    return _quoted(text.replace("%", "%%"))


def env_assignment(name: str, value: str | Path) -> str:
    """The value of one Environment= line setting `name` to exactly `value`.

    Environment= expands specifiers but not variables: `$` stays as it is.
    """
    if not name.isidentifier() or not name.isascii():
        raise UnitValueError(f"{name!r} is not an environment variable name")
    text = _check(str(value), f"the value of {name}")
    return _quoted(f"{name}={text}".replace("%", "%%"))


def unit_path(path: str | Path, *, optional: bool = False) -> str:
    """An absolute path for a quoted path-list setting such as ReadWritePaths= (`-`: may be missing)."""
    text = _absolute(path)
    return _quoted(("-" if optional else "") + text.replace("%", "%%"))


def bare_path(path: str | Path) -> str:
    """An absolute path for a setting that takes the rest of the line as it is (PIDFile=)."""
    text = _absolute(path)
    if text != text.strip() or text.endswith("\\"):
        raise UnitValueError(f"{text!r}: a path ending in blanks or a backslash cannot be a PIDFile=")
    return text.replace("%", "%%")


def _absolute(path: str | Path) -> str:
    text = _check(str(path), "path")
    if not text.startswith("/"):
        raise UnitValueError(f"{text!r} is not an absolute path")
    return text


# -- rendering ---------------------------------------------------------------------------------
def templates_dir() -> Path:
    """templates/systemd of the checkout, else of the installed copy."""
    candidates = (
        Path(__file__).resolve().parent.parent / "templates" / "systemd",
        Path(sys.prefix) / "share" / "vipbx" / "templates" / "systemd",
    )
    for candidate in candidates:
        if (candidate / f"{ASTERISK_UNIT}.j2").is_file():
            return candidate
    raise FileNotFoundError("vipbx systemd templates not found (looked in: "
                            + ", ".join(map(str, candidates)) + ")")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # unit files: values are quoted by the filters below
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["exec_path"] = exec_path
    env.filters["env"] = lambda value, name: env_assignment(name, value)
    env.filters["unit_path"] = unit_path
    env.filters["bare_path"] = bare_path
    return env


def render_units(settings: UnitSettings) -> dict[str, str]:
    """Unit name → its text."""
    for name, path in (("venv", settings.venv), ("home", settings.home), ("cache", settings.cache),
                       ("the Asterisk pid file", settings.asterisk_pid_file)):
        if not Path(path).is_absolute():
            raise UnitValueError(f"{name} {str(path)!r} is not an absolute path")
    if not settings.config:
        raise UnitValueError("no tenant YAML files (VIPBX_CONFIG) for vipbx serve")
    env = _environment()
    values = {
        "vipbx": settings.vipbx,
        "home": settings.home,
        "cache": settings.cache,
        "config": " ".join(settings.config),
        "asterisk_pid_file": settings.asterisk_pid_file,
        "boot_seconds": ASTERISK_BOOT_SECONDS,
        "asterisk_unit": ASTERISK_UNIT,
        "serve_unit": SERVE_UNIT,
        "target": TARGET,
        # A private /tmp would hide the service's own files where they are under /tmp (a checkout
        # or a home there): vipbx serve would not find its YAML (seen under a booted systemd).
        "private_tmp": not any(_in_shared_tmp(Path(p)) for p in (
            settings.venv, settings.home, settings.cache, *settings.config)),
    }
    return {name: env.get_template(f"{name}.j2").render(**values) for name in UNITS}


def _in_shared_tmp(path: Path) -> bool:
    """Whether `path` is under /tmp or /var/tmp, which PrivateTmp= replaces for the service."""
    resolved = path.resolve()
    return any(resolved == tmp or tmp in resolved.parents for tmp in (Path("/tmp"), Path("/var/tmp")))


def write_units(units: Mapping[str, str], directory: Path) -> list[str]:
    """Write each unit (0644, replaced in one rename); returns the names whose text changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in units.items():
        path = directory / name
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            pass
        tmp = directory / f".{name}.vipbx-new"
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, UNIT_MODE)  # whatever the umask: systemd and operators read them
        os.replace(tmp, path)
        changed.append(name)
    return changed


def remove_units(directory: Path) -> list[str]:
    """Remove the unit files from `directory`; returns the names that were there."""
    removed = []
    for name in UNITS:
        path = directory / name
        if path.exists() or path.is_symlink():
            path.unlink()
            removed.append(name)
    return removed


# -- the service manager -----------------------------------------------------------------------
def systemd_runs() -> bool:
    """Whether systemd is this machine's service manager (false in most containers and CI)."""
    return SYSTEMD_RUNTIME.is_dir()


class SystemctlError(RuntimeError):
    """systemctl refused or failed."""


class Systemctl:
    """`systemctl`, for the system manager."""

    def __init__(self, binary: str = "systemctl") -> None:
        self.binary = binary

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Run `systemctl ARGS`; its output, or SystemctlError with what it said."""
        try:
            done = subprocess.run([self.binary, *args], capture_output=True, text=True, check=False,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SystemctlError(f"systemctl {' '.join(args)}: {exc}") from exc
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            raise SystemctlError(f"systemctl {' '.join(args)} failed (exit status {done.returncode})"
                                 + (f": {said}" if said else ""))
        return done.stdout

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """The named properties of `unit` (a unit systemd does not know has LoadState=not-found)."""
        out = self.run("show", f"--property={','.join(properties)}", "--", unit, timeout=30)
        found = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                found[key] = value
        return found


def unit_of(pid: int | str) -> str | None:
    """The systemd service whose control group holds process `pid` ("self" for this one)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        name = line.split(":", 2)[-1].rstrip("/").rpartition("/")[2]
        if name.endswith(".service"):
            return name
    return None


# -- who runs what -----------------------------------------------------------------------------
def serve_pid_file(home: Path) -> Path:
    return home / SERVE_PID_NAME


def background_serve_pid(home: Path) -> int | None:
    """The pid in deploy.sh's serve.pid when that process is alive and is a `vipbx serve`."""
    try:
        pid = int(serve_pid_file(home).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and is_serve(pid) else None


def is_serve(pid: int) -> bool:
    # A pid file outlives its process and a pid is reused: it must still be a live `... serve`.
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and b"serve" in argv[1:]


@dataclass(frozen=True)
class ProcessState:
    """One of the two processes: running (its pid, and who started it) or stopped."""

    label: str  # "asterisk", "vipbx serve"
    pid: int | None = None
    manager: str | None = None  # "systemd" or "background"
    note: str = ""  # e.g. the unit's failed state

    @property
    def running(self) -> bool:
        return self.pid is not None

    def line(self) -> str:
        if self.running:
            return f"{self.label}: running (pid {self.pid}, {self.manager})"
        return f"{self.label}: stopped" + (f" ({self.note})" if self.note else "")


_SHOWN = ("LoadState", "ActiveState", "SubState", "MainPID", "Result")


def _unit_state(systemctl: Systemctl | None, unit: str) -> tuple[int | None, str]:
    """(main pid if the unit runs, a note on a unit that is installed but does not run)."""
    if systemctl is None:
        return None, ""
    try:
        shown = systemctl.show(unit, *_SHOWN)
    except SystemctlError:
        return None, ""
    if shown.get("LoadState") != "loaded":
        return None, ""
    active, sub = shown.get("ActiveState", ""), shown.get("SubState", "")
    try:
        pid = int(shown.get("MainPID", "0"))
    except ValueError:
        pid = 0
    if active in ("active", "reloading", "deactivating") and pid > 0:
        return pid, ""
    if active == "failed":
        return None, f"{unit} failed ({shown.get('Result', '?')}): journalctl -u {unit}"
    if active == "activating":
        return None, f"{unit} {'waiting to restart' if sub == 'auto-restart' else 'starting'}"
    return None, ""


def states(home: Path, asterisk_pid: int | None,
           systemctl: Systemctl | None) -> tuple[ProcessState, ProcessState]:
    """Asterisk and vipbx serve: the units' main pids when systemd runs them, else the background
    pids (`asterisk_pid` from Asterisk's pid file, deploy.sh's serve.pid)."""
    found = []
    for label, unit, background in (("asterisk", ASTERISK_UNIT, asterisk_pid),
                                    ("vipbx serve", SERVE_UNIT, background_serve_pid(home))):
        pid, note = _unit_state(systemctl, unit)
        if pid is not None:
            found.append(ProcessState(label, pid, "systemd"))
        elif background is not None:
            found.append(ProcessState(label, background, "background"))
        else:
            found.append(ProcessState(label, note=note))
    return found[0], found[1]
