"""Where Asterisk comes from: the system package, else a cached Debian-unstable rootfs.

Debian stable ships no Asterisk, but unstable does; `debootstrap` builds a small rootfs with it in
about a minute. Instances run inside it by chroot, with their own directories bind-mounted at the
same paths, so every path means the same thing inside and outside (see `instance.py`).
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

ROOTFS_NAME = "rootfs-sid"
DEFAULT_CACHE = Path("/var/cache/vipbx")
SUITE = "sid"
# Asterisk plus the English prompts the tests listen to.
PACKAGES = ("asterisk", "asterisk-core-sounds-en")
# A clean environment: nothing of the caller's (pyenv, venv) leaks into the rootfs.
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DIR_LINE = re.compile(r"^\s*(ast\w+dir)\s*=>?\s*(\S+)")
# The unprivileged account Asterisk runs as: the Debian package's. In a rootfs it gets the ids of
# the machine's own account of that name, so a file's owner means the same inside and outside.
RUN_USER = "asterisk"


@dataclass(frozen=True)
class RunAccount:
    name: str
    uid: int
    gid: int


class RuntimeUnavailable(RuntimeError):
    """No Asterisk here, and none could be built."""


@dataclass(frozen=True)
class AsteriskRuntime:
    """An installed Asterisk: `root` is "/" for the system's own, else the rootfs it lives in."""

    root: Path

    @classmethod
    def locate(cls, cache_dir: Path | None = None, *, build: bool = True) -> AsteriskRuntime:
        """The system's Asterisk if there is one, else the cached rootfs (built when missing)."""
        if _system_binary():
            return cls(Path("/"))
        rootfs = default_cache(cache_dir) / ROOTFS_NAME
        if not _is_complete(rootfs):
            if not build:
                raise RuntimeUnavailable(f"no system Asterisk and no rootfs at {rootfs}")
            build_rootfs(rootfs)
        runtime = cls(rootfs.resolve())
        runtime.ensure_hosts()
        runtime.ensure_account()
        return runtime

    @property
    def is_system(self) -> bool:
        return self.root == Path("/")

    def host_path(self, inner: str | Path) -> Path:
        """Where a path of the runtime's file system is, seen from this machine."""
        return self.root / Path(inner).relative_to("/")

    @cached_property
    def binary(self) -> str:
        """The asterisk executable, as a path inside the root."""
        if self.is_system:
            found = _system_binary()
            if not found:
                raise RuntimeUnavailable("asterisk is not on PATH")
            return found
        for candidate in ("/usr/sbin/asterisk", "/usr/local/sbin/asterisk"):
            if self.host_path(candidate).exists():
                return candidate
        raise RuntimeUnavailable(f"no asterisk binary in {self.root}")

    @cached_property
    def _packaged_dirs(self) -> dict[str, str]:
        # The packaged asterisk.conf lists the compiled-in directories (as a template section).
        conf = self.host_path("/etc/asterisk/asterisk.conf")
        found: dict[str, str] = {}
        if conf.exists():
            for line in conf.read_text(encoding="utf-8", errors="replace").splitlines():
                match = _DIR_LINE.match(line)
                if match:
                    found.setdefault(match.group(1), match.group(2))
        return found

    @cached_property
    def module_dir(self) -> Path:
        """The directory of the loadable modules (inside the root); differs per architecture."""
        listed = self._packaged_dirs.get("astmoddir")
        candidates = [listed] if listed else []
        candidates += [str(p.relative_to(self.root).as_posix()) for p in
                       sorted(self.root.glob("usr/lib/*/asterisk/modules"))]
        candidates += ["usr/lib/asterisk/modules", "usr/lib64/asterisk/modules"]
        for candidate in candidates:
            inner = Path("/") / candidate
            if (self.host_path(inner) / "app_dial.so").exists():
                return inner
        raise RuntimeUnavailable(f"no Asterisk module directory in {self.root}")

    @property
    def data_dir(self) -> Path:
        """Prompts, ARI schema, static HTTP (inside the root)."""
        return Path(self._packaged_dirs.get("astdatadir", "/usr/share/asterisk"))

    @property
    def varlib_dir(self) -> Path:
        return Path(self._packaged_dirs.get("astvarlibdir", "/var/lib/asterisk"))

    @property
    def sbin_dir(self) -> Path:
        return Path(self.binary).parent

    def version(self) -> str:
        """E.g. "22.10.1+dfsg+~cs6.17.60671434-1"."""
        argv = [self.binary, "-V"]
        if not self.is_system:
            argv = ["chroot", str(self.root), *argv]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, env=self.env(),
                             timeout=30).stdout.strip()
        return out.removeprefix("Asterisk ").strip()

    def env(self, home: Path | None = None) -> dict[str, str]:
        env = {"PATH": _PATH, "LANG": "C.UTF-8"}
        if "TZ" in os.environ:
            env["TZ"] = os.environ["TZ"]
        if home is not None:
            env["HOME"] = str(home)
        return env

    def command(self, argv: Sequence[str], binds: Sequence[Path] = ()) -> list[str]:
        """`argv` wrapped to run inside the root, with `binds` mounted at their own paths.

        The mounts live in a private mount namespace owned by the process, so they vanish with it
        and are never seen outside. `binds` must have been prepared with `prepare_mountpoints`.
        """
        if self.is_system:
            return list(argv)
        steps = ["mount -t proc proc ./proc", "mount --bind /dev ./dev"]
        steps += [f"mount --bind {shlex.quote(str(b))} .{shlex.quote(str(b))}" for b in binds]
        script = f"cd {shlex.quote(str(self.root))} && " + " && ".join(steps) + ' && exec chroot . "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "vipbx", *argv]

    def prepare_mountpoints(self, binds: Sequence[Path]) -> list[Path]:
        """Create empty mount points in the rootfs; returns the minimal set of binds to mount.

        A path below another bind is already visible through it. A symlink on the way would point
        the mount outside the rootfs, and a non-empty directory would be hidden: both refused.
        """
        minimal: list[Path] = []
        for path in sorted({Path(b) for b in binds}, key=lambda p: len(p.parts)):
            if not path.is_absolute() or path == Path("/"):
                raise ValueError(f"cannot bind {path!s}")
            if not any(path.is_relative_to(done) for done in minimal):
                minimal.append(path)
        if self.is_system:
            return minimal
        for path in minimal:
            point = self.root
            for part in path.parts[1:]:
                point = point / part
                if point.is_symlink():
                    raise ValueError(f"{point} is a symlink in the rootfs; cannot mount {path} there")
                if not point.exists():
                    point.mkdir()
                    # Explicit: whatever the umask, Asterisk's own account must pass on the way.
                    os.chmod(point, 0o755)
            if any(point.iterdir()):
                raise ValueError(f"{point} is not empty; mounting {path} there would hide it")
        return minimal

    def ensure_hosts(self) -> None:
        """The rootfs must resolve this machine's name locally, or every call stalls on DNS."""
        if self.is_system:
            return
        hosts = self.host_path("/etc/hosts")
        name = socket.gethostname()
        text = hosts.read_text(encoding="utf-8") if hosts.exists() else ""
        names = {word for line in text.splitlines() for word in line.split("#")[0].split()[1:]}
        if name not in names or "localhost" not in names:
            prefix = text if text.endswith("\n") or not text else text + "\n"
            hosts.write_text(prefix + f"127.0.0.1 localhost {name}\n", encoding="utf-8")


    @property
    def account(self) -> RunAccount | None:
        """Who Asterisk runs as; None when we are not root (it then runs as we do)."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(RUN_USER)
        except KeyError:
            raise RuntimeUnavailable(
                f"no {RUN_USER!r} account on this machine to run Asterisk as"
                + ("" if self.is_system else " (run `vipbx asterisk setup` as root)")) from None
        return RunAccount(RUN_USER, entry.pw_uid, entry.pw_gid)

    def ensure_account(self) -> None:
        """Give the rootfs's `asterisk` account the ids of the machine's own (made if missing)."""
        if self.is_system or os.geteuid() != 0:
            return
        host = _host_account()
        with _locked(self.root.parent / f".{self.root.name}.lock"):
            _align_account(self.root, host)


def _host_account() -> RunAccount:
    try:
        entry = pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                        "/nonexistent", "--shell", "/usr/sbin/nologin", RUN_USER],
                       check=True, capture_output=True, env={"PATH": _PATH}, timeout=60)
        entry = pwd.getpwnam(RUN_USER)
    grp.getgrgid(entry.pw_gid)  # the primary group must exist too
    return RunAccount(RUN_USER, entry.pw_uid, entry.pw_gid)


def _align_account(root: Path, host: RunAccount) -> None:
    """Rewrite the rootfs's passwd and group entries of `host.name` to `host`'s ids and re-own the
    rootfs's files of the old ids. Refused when another rootfs account already has those ids."""
    passwd, group = root / "etc/passwd", root / "etc/group"
    users = [line.split(":") for line in passwd.read_text(encoding="utf-8").splitlines()]
    groups = [line.split(":") for line in group.read_text(encoding="utf-8").splitlines()]
    mine = next((u for u in users if u[0] == host.name), None)
    if mine is None:
        raise RuntimeUnavailable(f"the rootfs {root} has no {host.name!r} account")
    old_uid, old_gid = int(mine[2]), int(mine[3])
    if (old_uid, old_gid) == (host.uid, host.gid):
        return
    for entries, index, value, what in ((users, 2, host.uid, "uid"), (groups, 2, host.gid, "gid")):
        clash = [e[0] for e in entries if len(e) > index and e[0] != host.name and e[index] == str(value)]
        if clash:
            raise RuntimeUnavailable(
                f"{what} {value} of this machine's {host.name!r} is {clash[0]!r} in {root}")
    mine[2], mine[3] = str(host.uid), str(host.gid)
    for entry in groups:
        if entry[0] == host.name:
            entry[2] = str(host.gid)
    for path in (root / "proc", root / "sys", root / "dev"):
        path.mkdir(exist_ok=True)
    for folder, dirs, files in os.walk(root):
        if folder == str(root):
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            st = os.lstat(path)
            uid = host.uid if st.st_uid == old_uid else -1
            gid = host.gid if st.st_gid == old_gid else -1
            if uid != -1 or gid != -1:
                os.chown(path, uid, gid, follow_symlinks=False)
    _write(passwd, "".join(":".join(u) + "\n" for u in users))
    _write(group, "".join(":".join(g) + "\n" for g in groups))


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.vipbx")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def default_cache(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("VIPBX_CACHE") or DEFAULT_CACHE)


def _system_binary() -> str | None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which("asterisk", path=path)


def _is_complete(rootfs: Path) -> bool:
    return (rootfs / "usr/sbin/asterisk").exists()


def apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine's apt uses (so no host name is ever written down here)."""
    override = os.environ.get("VIPBX_DEBIAN_MIRROR")
    if override:
        return override
    codename = _os_codename()
    entries = list(_apt_entries(apt_dir))
    ranked = sorted(
        (e for e in entries if "main" in e[2] and "security" not in e[0]
         and any("-" not in s and (not codename or s == codename) for s in e[1])),
        key=lambda e: not e[0].rstrip("/").endswith("/debian"),
    )
    if not ranked:
        raise RuntimeUnavailable(
            f"no Debian archive found in {apt_dir}; set VIPBX_DEBIAN_MIRROR to one")
    return ranked[0][0]


def _os_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return ""
    match = re.search(r"^VERSION_CODENAME=\"?([\w-]+)", text, re.MULTILINE)
    return match.group(1) if match else ""


def _apt_entries(apt_dir: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """(uri, suites, components) of every enabled `deb` source, one-line and deb822 styles."""
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]], words[3:]
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            fields: dict[str, str] = {}
            key = ""
            for line in stanza.splitlines():
                if line.startswith("#"):
                    continue
                if line[:1].isspace() and key:
                    fields[key] += " " + line.strip()
                elif ":" in line:
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
                continue
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_rootfs(target: Path, mirror: str | None = None) -> None:
    """Debootstrap a rootfs with Asterisk at `target`, never leaving a half-built one there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (parallel test sessions); the rest find it complete afterwards.
    with _locked(target.parent / f".{target.name}.lock"):
        if _is_complete(target):
            return
        if not shutil.which("debootstrap", path=_PATH):
            raise RuntimeUnavailable("no asterisk on PATH and no debootstrap to build one")
        mirror = mirror or apt_mirror()
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
        log = target.parent / f"{target.name}.build.log"
        # debootstrap mounts /proc and /sys in the target: a private namespace drops them when it
        # ends, even on failure, so removing a failed build never walks into a live /proc.
        argv = ["unshare", "--mount", "--propagation", "private", "debootstrap",
                "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(work), mirror]
        try:
            with open(log, "wb") as out:
                result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False,
                                        env={"PATH": _PATH, "LANG": "C.UTF-8"})
            if result.returncode != 0 or not _is_complete(work):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeUnavailable("debootstrap failed:\n" + "\n".join(tail))
            AsteriskRuntime(work).ensure_hosts()
            os.chmod(work, 0o755)  # mkdtemp made it private; it is a normal system tree
            if target.exists():  # a leftover that was not complete
                _remove_tree(target)
            os.rename(work, target)
        finally:
            if work.exists():
                _remove_tree(work)


def _remove_tree(path: Path) -> None:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            mount_point = line.split()[4]
            if mount_point == real or mount_point.startswith(real + "/"):
                raise RuntimeUnavailable(f"{mount_point} is still mounted; not removing {path}")
    shutil.rmtree(path)
