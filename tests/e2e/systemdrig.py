"""A real systemd, booted as PID 1 of a PID and mount namespace of the test's own, to run the units
`vipbx service install` writes (this machine's own PID 1 is no systemd).

Only the test's units exist for it: the unit folders (/usr/lib/systemd/system, /etc/systemd/system)
are a folder of the test's, holding empty stand-ins for the targets a service's default
dependencies name and the journal's own units, and the generators folder is empty (so no init
script of the machine becomes a unit). /run, /var/log/journal and the cgroup2 hierarchy it
manages are its own. The network is the machine's: the units' services listen on loopback
addresses of the test. Stopping it is one SIGKILL to its pid: the kernel ends every process of
the namespace with it, and the namespace's mounts go with them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

# Targets the units (and default dependencies) name; empty here.
TARGETS = ("sysinit", "basic", "sockets", "paths", "timers", "local-fs", "shutdown", "network",
           "network-online", "slices")
JOURNAL_UNITS = ("systemd-journald.service", "systemd-journald.socket")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
SYSTEMD = Path("/lib/systemd/systemd")

BOOT = """\
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd
mount --bind {units} /usr/lib/systemd/system
mount --bind {units} /etc/systemd/system
mount --bind {empty} /usr/lib/systemd/system-generators
mkdir -p /var/log/journal
mount --bind {journal} /var/log/journal
mount -t cgroup2 none /sys/fs/cgroup
exec {systemd} --system --unit=multi-user.target
"""


class SystemdUnavailable(RuntimeError):
    pass


class BootedSystemd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.units = folder / "units"
        self._unshare: subprocess.Popen[bytes] | None = None
        self.pid = 0  # systemd's pid, as this machine sees it

    def start(self, timeout: float = 30) -> None:
        if os.geteuid() != 0:
            raise SystemdUnavailable("booting systemd in a namespace needs root")
        for tool in ("unshare", "nsenter"):
            if shutil.which(tool) is None:
                raise SystemdUnavailable(f"no {tool} (Debian package: util-linux)")
        missing = [name for name in JOURNAL_UNITS if not (SYSTEM_UNITS / name).is_file()]
        if not SYSTEMD.is_file() or missing:
            raise SystemdUnavailable("no systemd (Debian package: systemd)")
        self.units.mkdir(parents=True)
        for name in TARGETS:
            (self.units / f"{name}.target").write_text(f"[Unit]\nDescription={name} (empty)\n")
        for name in JOURNAL_UNITS:
            text = (SYSTEM_UNITS / name).read_text()
            if name.endswith(".service"):  # the /dev/log socket would be the machine's /dev
                text = "\n".join("Sockets=systemd-journald.socket" if line.startswith("Sockets=") else line
                                 for line in text.splitlines()) + "\n"
            (self.units / name).write_text(text)
        (self.units / "multi-user.target").write_text(
            "[Unit]\nDescription=multi-user (the test's)\nWants=systemd-journald.socket\n")
        for name in ("empty", "journal"):
            (self.folder / name).mkdir()
        script = self.folder / "boot.sh"
        script.write_text(BOOT.format(units=self.units, empty=self.folder / "empty",
                                      journal=self.folder / "journal", systemd=SYSTEMD))
        log = (self.folder / "boot.log").open("wb")
        self._unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private",
             "bash", str(script)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid = self.pid or self._child_of(self._unshare.pid)
            if self._unshare.poll() is not None:
                raise SystemdUnavailable(f"systemd did not boot: {(self.folder / 'boot.log').read_text()[-500:]}")
            if self.pid and self.run("systemctl", "is-system-running", check=False).stdout.strip() in (
                    "running", "degraded"):
                return
            time.sleep(0.2)
        self.stop()
        raise SystemdUnavailable(f"systemd did not answer within {timeout:g} s")

    @staticmethod
    def _child_of(pid: int) -> int:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return 0
        return int(children[0]) if children else 0

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A command inside the namespace (its mounts and pids), as systemd's services see them."""
        prefix = ["nsenter", "-t", str(self.pid), "-m", "-p"]
        if env:
            prefix += ["env", *(f"{k}={v}" for k, v in env.items())]
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()

    def stop(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._unshare is not None:
            try:
                self._unshare.wait(10)
            except subprocess.TimeoutExpired:
                self._unshare.kill()
                self._unshare.wait(5)
