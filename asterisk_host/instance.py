"""One running Asterisk with its own asterisk.conf, directories and pid.

Several instances share one runtime (the PBX and the test phone, say); each differs only in its
home directory, its configuration directory and the addresses its configuration binds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from asterisk_host import ownership
from asterisk_host.runtime import AsteriskRuntime, RunAccount, RuntimeUnavailable

ASTERISK_UMASK = 0o027


class AsteriskError(RuntimeError):
    """An instance failed to start, stop or answer a CLI command."""


class AsteriskInstance:
    def __init__(self, runtime: AsteriskRuntime, home: Path, etc_dir: Path, *, name: str = "pbx",
                 verbose: int = 0, options: Mapping[str, str] | None = None,
                 shared: Sequence[Path] = ()) -> None:
        self.runtime = runtime
        self.name = name
        self.verbose = verbose
        self.options = dict(options or {})
        # Real paths: the rootfs gets mount points at these exact paths, and a symlink on the way
        # could lead a mount point out of it.
        self.home = Path(home).absolute().resolve()
        etc = Path(etc_dir).absolute()
        # etc_dir may be a symlink swapped by deploys (etc/current): keep its name, and make the
        # folder holding it visible so each reload follows the link to the new generation.
        self.etc_dir = etc.parent.resolve() / etc.name
        self._proc: subprocess.Popen[bytes] | None = None
        # Folders the application shares with Asterisk at the same path (e.g. the prompt sounds).
        self.shared = [Path(p).absolute() for p in shared]

    # -- paths -----------------------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.home / "asterisk.conf"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def db_dir(self) -> Path:
        return self.home / "db"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def log_path(self) -> Path:
        """The `messages` file log (notice, warning, error) that the rendered logger.conf writes."""
        return self.log_dir / "messages"

    @property
    def console_log(self) -> Path:
        return self.home / "console.log"

    @property
    def pid_file(self) -> Path:
        return self.pid_file_in(self.home)

    @staticmethod
    def pid_file_in(home: Path) -> Path:
        """Where an instance of `home` keeps its Asterisk's pid (also a systemd unit's PIDFile=)."""
        return Path(home).absolute().resolve() / "asterisk.pid"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "asterisk.ctl"

    # -- configuration ---------------------------------------------------------------------
    def render_asterisk_conf(self) -> str:
        rt = self.runtime
        directories = {
            "astetcdir": self.etc_dir,
            "astmoddir": rt.module_dir,
            "astvarlibdir": rt.varlib_dir,
            "astdbdir": self.db_dir,
            "astkeydir": self.home,
            "astdatadir": rt.data_dir,
            "astagidir": rt.data_dir / "agi-bin",
            "astspooldir": self.spool_dir,
            "astrundir": self.run_dir,
            "astlogdir": self.log_dir,
            "astsbindir": rt.sbin_dir,
            "astcachedir": self.cache_dir,
        }
        options = {
            "verbose": str(self.verbose),
            "nocolor": "yes",  # console.log is a file, not a terminal
            "hideconnect": "yes",  # every cli() call would log a remote console connect
            **self.options,
        }
        lines = [f"; {self.name}: written by vipbx (asterisk_host); changes are overwritten",
                 "[directories]"]
        lines += [f"{key} => {value}" for key, value in directories.items()]
        lines += ["", "[options]"]
        lines += [f"{key} = {value}" for key, value in options.items()]
        return "\n".join(lines) + "\n"

    def write_conf(self) -> None:
        for folder in (self.run_dir, self.log_dir, self.spool_dir, self.db_dir, self.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)
        (self.spool_dir / "fax").mkdir(exist_ok=True)
        self.conf_path.write_text(self.render_asterisk_conf(), encoding="utf-8")
        account = self.runtime.account
        ownership.private_file(self.conf_path, account)
        if account is not None:
            self._grant(account)

    def _grant(self, account: RunAccount) -> None:
        """Asterisk's account may write its own folders and the spool, and read its
        configuration and the shared media; nobody else may read either (see ownership.py)."""
        os.chown(self.home, 0, account.gid)
        os.chmod(self.home, ownership.CONFIG_DIR)
        for folder in (self.run_dir, self.log_dir, self.cache_dir):
            ownership.own_tree(folder, account, ownership.PRIVATE_DIR)
        ownership.own_tree(self.db_dir, account, ownership.DB_DIR)
        ownership.share_spool(self.spool_dir, account)
        # ReceiveFax() writes here and makes no folder of its own (see base/paths.py).
        fax = self.spool_dir / "fax"
        fax.mkdir(exist_ok=True)
        os.chown(fax, account.uid, account.gid)
        os.chmod(fax, ownership.SPOOL_DIR)
        ownership.readable_tree(self._etc_folder(), account, private=True)
        for folder in self.shared:
            folder.mkdir(parents=True, exist_ok=True)
            ownership.readable_tree(folder.resolve(), account, private=False)
        if self.runtime.is_system:
            # No bind mounts: the real folders above ours must let the account pass.
            for folder in (self.home, self._etc_folder(), *self.shared):
                ownership.allow_passing(folder.resolve().parent)

    # -- process ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The pid of this instance's Asterisk if it is running, else None."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return self._proc.pid
            self._proc = None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _is_ours(self, pid: int) -> bool:
        # A pid file can outlive its process and the pid be reused: check it is our Asterisk.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        # "-f": the server, not a `-rx` client naming the same asterisk.conf.
        return state != "Z" and str(self.conf_path).encode() in cmdline and b"-f" in cmdline

    def _etc_folder(self) -> Path:
        """The configuration folder, or the folder holding it when it is a swapped symlink."""
        return self.etc_dir.parent if self.etc_dir.is_symlink() else self.etc_dir.resolve()

    def _binds(self) -> list[Path]:
        for folder in self.shared:
            folder.mkdir(parents=True, exist_ok=True)
        return self.runtime.prepare_mountpoints([self.home, self._etc_folder(),
                                                 *(p.resolve() for p in self.shared)])

    def start(self, timeout: float = 60) -> int:
        """Start Asterisk in the foreground of a new session; returns once it is fully booted."""
        if self.running:
            raise AsteriskError(f"{self.name} is already running (pid {self.pid})")
        if not self.etc_dir.is_dir():
            raise AsteriskError(f"{self.name}: no configuration folder {self.etc_dir}")
        try:
            account = self.runtime.account
        except RuntimeUnavailable as exc:
            raise AsteriskError(f"{self.name}: {exc}") from exc
        self.write_conf()
        argv = [self.runtime.binary, "-f", "-C", str(self.conf_path)]
        if account is not None:
            # Asterisk drops root once it has read asterisk.conf (`-U`/`-G`).
            argv += ["-U", account.name, "-G", account.name]
        command = self.runtime.command(argv, self._binds())
        with open(self.console_log, "ab") as console:
            ownership.private_file(self.console_log, account)
            # A new session: a Ctrl-C meant for the caller does not reach the PBX. The umask
            # keeps what Asterisk writes (recordings, voicemail, logs) from other accounts.
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=self.home, env=self.runtime.env(self.home), start_new_session=True,
                umask=ASTERISK_UMASK)
        pid = self._proc.pid
        self.pid_file.write_text(f"{pid}\n")
        try:
            self._wait_booted(timeout)
        except BaseException:
            self.stop()
            raise
        return pid

    def _wait_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise AsteriskError(f"{self.name}: Asterisk exited with {code} while starting\n"
                                    + self.log_tail())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AsteriskError(f"{self.name}: not fully booted after {timeout:.0f} s\n"
                                    + self.log_tail())
            if self.control_socket.exists():
                try:
                    answer = self.cli("core waitfullybooted", timeout=max(remaining, 1))
                except AsteriskError:
                    answer = ""  # the socket exists a moment before it accepts
                # An Asterisk that fails while loading modules can close the connection
                # without an answer: only the words and a live process count.
                if "fully booted" in answer and self._proc.poll() is None:
                    return
            time.sleep(0.1)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; only the process this instance started."""
        pid = self.pid
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        with suppress(ProcessLookupError):  # it may end on its own meanwhile
            os.kill(pid, signal.SIGTERM)
        self._end(pid, timeout)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would end it: no BYE is sent, nothing is flushed."""
        self._end(self.pid, 0)

    def _end(self, pid: int | None, grace: float) -> None:
        """SIGKILL `pid` unless it is gone within `grace` seconds; forget it."""
        if pid is not None and not self._wait_gone(pid, grace):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 5):
                raise AsteriskError(f"{self.name}: pid {pid} survived SIGKILL")
        self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                try:
                    self._proc.wait(timeout=0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not self._is_ours(pid):
                return True
            time.sleep(0.1)
        return False

    # -- control ---------------------------------------------------------------------------
    def cli(self, command: str, timeout: float = 30) -> str:
        """Run one CLI command on the running instance (`asterisk -rx`) and return its output."""
        if not self.conf_path.exists():
            raise AsteriskError(f"{self.name} is not running (never started in {self.home})")
        argv = [self.runtime.binary, "-C", str(self.conf_path), "-rx", command]
        # The control socket is in the home, which only the bind mount makes visible.
        wrapped = self.runtime.command(argv, self.runtime.prepare_mountpoints([self.home]))
        try:
            result = subprocess.run(wrapped, capture_output=True, text=True, timeout=timeout, check=False,
                                    env=self.runtime.env(self.home), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AsteriskError(f"{self.name}: `{command}` timed out after {timeout} s") from exc
        if result.returncode != 0:
            raise AsteriskError(f"{self.name}: `{command}` failed: "
                                f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the console output and of the messages log, for error reports."""
        parts = []
        for path in (self.console_log, self.log_path):
            if path.exists():
                tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(parts)
