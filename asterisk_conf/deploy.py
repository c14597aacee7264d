"""Generations of rendered configuration: stage, check, swap atomically, reload, roll back.

Layout under `<home>/etc`:
    generations/0001/ ... generations/NNNN/   complete rendered sets, never edited in place
    current  -> generations/NNNN              what Asterisk reads (its astetcdir)
    previous -> generations/MMMM              what `rollback` returns to

A swap is one rename() of a symlink, so Asterisk never sees a half-written set. If Asterisk
refuses a reload, the swap is undone and the old files reloaded: a failed deploy leaves the
running configuration as it was.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

from base.paths import Paths

from . import confcheck

# Which Asterisk module (or built-in subsystem) re-reads each file.
RELOAD_TARGETS = {
    "pjsip.conf": "res_pjsip.so",
    "extensions.conf": "pbx_config.so",
    "voicemail.conf": "app_voicemail.so",
    "http.conf": "http",
    "ari.conf": "res_ari.so",
    "manager.conf": "manager",
    "features.conf": "features",
    "logger.conf": "logger",
    "rtp.conf": "res_rtp_asterisk.so",
    "indications.conf": "indications",
}
# Files whose change needs an Asterisk restart (the set of loaded modules).
RESTART_FILES = frozenset({"modules.conf"})
KEEP_GENERATIONS = 10

Reloader = Callable[[list[str]], Awaitable[None]]


class DeployError(Exception):
    pass


@dataclass
class DeployResult:
    generation: str | None  # None when nothing changed
    changed: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    restart_needed: bool = False
    asterisk_reached: bool = False


class Generations:
    def __init__(self, paths: Paths) -> None:
        self.etc = paths.etc
        self.generations = paths.generations
        self.current = paths.current
        self.previous = paths.previous

    # --- reading ---
    def live(self) -> dict[str, str]:
        return _read_dir(self.current) if self.current.exists() else {}

    def changed_files(self, files: dict[str, str], against: dict[str, str] | None = None) -> list[str]:
        old = self.live() if against is None else against
        return sorted(name for name in set(files) | set(old) if files.get(name) != old.get(name))

    def diff(self, files: dict[str, str]) -> str:
        old = self.live()
        chunks: list[str] = []
        for name in self.changed_files(files, old):
            chunks.extend(
                difflib.unified_diff(
                    old.get(name, "").splitlines(keepends=True),
                    files.get(name, "").splitlines(keepends=True),
                    fromfile=f"live/{name}",
                    tofile=f"new/{name}",
                )
            )
        return "".join(chunks)

    # --- writing ---
    def stage(self, files: dict[str, str]) -> Path:
        """Write a complete new generation; it appears under its final name only when whole."""
        self.generations.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name) for p in self.generations.iterdir() if p.name.isdigit()]
        final = self.generations / f"{max(numbers, default=0) + 1:04d}"
        staging = Path(tempfile.mkdtemp(dir=self.generations, prefix=".staging-"))
        try:
            for name, text in files.items():
                path = staging / name
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                # Secrets live in these files: readable by Asterisk (root) only.
                os.chmod(path, 0o640)
            os.chmod(staging, 0o750)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def point(self, link: Path, generation: Path) -> None:
        """Atomically make `link` point at `generation` (relative, so the tree can move)."""
        tmp = link.with_name(link.name + ".new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.relpath(generation, link.parent), tmp)
        os.replace(tmp, link)

    def target(self, link: Path) -> Path | None:
        return link.resolve() if link.is_symlink() else None

    def prune(self) -> None:
        keep = {self.target(self.current), self.target(self.previous)}
        gens = sorted((p for p in self.generations.iterdir() if p.name.isdigit()), key=lambda p: p.name)
        for old in gens[:-KEEP_GENERATIONS]:
            if old.resolve() not in keep:
                shutil.rmtree(old)


async def deploy(paths: Paths, files: dict[str, str], reload: Reloader | None) -> DeployResult:
    """Check, stage, swap and reload. `reload` is None when Asterisk is not running."""
    problems = confcheck.check(files)
    if problems:
        raise DeployError("rendered configuration failed its check:\n" + "\n".join(problems))
    gens = Generations(paths)
    changed = gens.changed_files(files)
    if not changed:
        return DeployResult(generation=None)
    old_generation = gens.target(gens.current)
    new_generation = gens.stage(files)
    gens.point(gens.current, new_generation)
    result = DeployResult(generation=new_generation.name, changed=changed)
    # A first deploy is read whole when Asterisk starts: nothing to restart for.
    result.restart_needed = old_generation is not None and bool(RESTART_FILES & set(changed))
    targets = [RELOAD_TARGETS[name] for name in changed if name in RELOAD_TARGETS]
    if reload is not None and targets:
        try:
            await reload(targets)
        except Exception as exc:
            # Put the old files back and make Asterisk read them again.
            if old_generation is not None:
                gens.point(gens.current, old_generation)
                try:
                    await reload(targets)
                except Exception:
                    pass  # Asterisk keeps what it had loaded; the files match it again
            shutil.rmtree(new_generation, ignore_errors=True)
            raise DeployError(f"Asterisk refused the new configuration, previous one restored: {exc}") from exc
        result.reloaded = targets
        result.asterisk_reached = True
    if old_generation is not None:
        gens.point(gens.previous, old_generation)
    gens.prune()
    return result


async def rollback(paths: Paths, reload: Reloader | None) -> DeployResult:
    """Swap back to the generation before the last deploy."""
    gens = Generations(paths)
    previous, current = gens.target(gens.previous), gens.target(gens.current)
    if previous is None or not previous.is_dir():
        raise DeployError("no previous generation to roll back to")
    changed = gens.changed_files(_read_dir(previous), gens.live())
    gens.point(gens.current, previous)
    if current is not None:
        gens.point(gens.previous, current)
    result = DeployResult(generation=previous.name, changed=changed)
    result.restart_needed = bool(RESTART_FILES & set(changed))
    targets = [RELOAD_TARGETS[name] for name in changed if name in RELOAD_TARGETS]
    if reload is not None and targets:
        await reload(targets)
        result.reloaded = targets
        result.asterisk_reached = True
    return result


def _read_dir(path: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(path).iterdir()) if p.is_file()}
