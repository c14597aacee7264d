"""Generations of rendered configuration: stage, check, swap atomically, reload, roll back.

Layout under `<home>/etc`:
    generations/0001/ ... generations/NNNN/   complete rendered sets, never edited in place
    current  -> generations/NNNN              what Asterisk reads (its astetcdir)
    previous -> generations/MMMM              what `rollback` returns to

A swap is one rename() of a symlink, so Asterisk never sees a half-written set. If Asterisk
refuses a reload, the swap is undone and the old files reloaded: a failed deploy leaves the
running configuration as it was, and says so, or says what it could not restore. No generation
that `current` or `previous` points at is ever deleted, on any path.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol

from base.paths import Paths

from . import confcheck
from .dialplan_patch import DialplanNotLive, DialplanPatch
from .dialplan_patch import plan as plan_dialplan
from .pjsip_patch import PjsipNotLive, PjsipPatch
from .pjsip_patch import plan as plan_devices

log = logging.getLogger(__name__)

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
    "cdr.conf": "cdr",
    "cdr_manager.conf": "cdr_manager.so",
    "confbridge.conf": "app_confbridge.so",
    "prometheus.conf": "res_prometheus.so",
}
# Files whose change needs an Asterisk restart (the modules loaded, where res_pjsip and
# app_voicemail read their objects).
RESTART_FILES = frozenset({"modules.conf", "sorcery.conf", "extconfig.conf", "res_pgsql.conf"})
KEEP_GENERATIONS = 10

Reloader = Callable[[list[str]], Awaitable[None]]
# Applies a dialplan change live (asterisk_conf.dialplan_patch), in place of a pbx_config reload.
DialplanPatcher = Callable[[DialplanPatch], Awaitable[None]]
DIALPLAN = "extensions.conf"
PATCHED_MARK = "dialplan-patched"  # in <home>/etc: the generation whose dialplan went in live
DEVICES = "pjsip.conf"
PUSHED_FILE = "pjsip-pushed"  # in <home>/etc: objects created live since res_pjsip's last reload
ObjectRef = tuple[str, str]  # (type, id) of a res_pjsip object


class DevicePusher(Protocol):
    """Creates new SIP devices in the running Asterisk (asterisk_conf.pjsip_patch), in place of a
    res_pjsip reload, and deletes them again once a reload has read them from the file."""

    async def push(self, patch: PjsipPatch) -> None:
        """Create the patch's objects; PjsipNotLive (nothing created) when Asterisk runs another
        pjsip.conf than the one the patch was planned from."""

    async def forget(self, objects: list[ObjectRef]) -> list[ObjectRef]:
        """Delete pushed objects from Asterisk's memory store; those it could not delete."""


class DeployError(Exception):
    pass


@dataclass
class DeployResult:
    generation: str | None  # None when nothing changed
    changed: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    restart_needed: bool = False
    asterisk_reached: bool = False
    patched: int = 0  # extensions changed live through AMI, in place of a pbx_config reload
    pushed: int = 0  # devices created live through ARI, in place of a res_pjsip reload
    warnings: list[str] = field(default_factory=list)  # done, but an operator should know


class Generations:
    def __init__(self, paths: Paths) -> None:
        self.etc = paths.etc
        self.generations = paths.generations
        self.current = paths.current
        self.previous = paths.previous

    # --- reading ---
    def live(self) -> dict[str, str]:
        return read_dir(self.current) if self.current.exists() else {}

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

    def is_live(self, generation: Path) -> bool:
        """`current` or `previous` points at it (or cannot be read, so it might)."""
        try:
            where = generation.resolve()
            return any(where == target for target in (self.target(self.current), self.target(self.previous)))
        except OSError:
            return True

    def remove(self, generation: Path) -> bool:
        """Delete a generation unless `current` or `previous` points at it; best effort."""
        if self.is_live(generation):
            log.warning("generation %s is live: kept", generation.name)
            return False
        try:
            shutil.rmtree(generation)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove generation %s: %s", generation.name, exc)
            return False
        return True

    def prune(self) -> None:
        """Keep the last KEEP_GENERATIONS (and whatever `current` or `previous` points at)."""
        try:
            gens = sorted((p for p in self.generations.iterdir() if p.name.isdigit()), key=lambda p: p.name)
        except OSError as exc:
            log.warning("could not list the generations to prune: %s", exc)
            return
        for old in gens[:-KEEP_GENERATIONS]:
            self.remove(old)


async def deploy(paths: Paths, files: dict[str, str], reload: Reloader | None, *,
                 patch_dialplan: DialplanPatcher | None = None,
                 push_devices: DevicePusher | None = None) -> DeployResult:
    """Check, stage, swap and reload. `reload` is None when Asterisk is not running. With
    `patch_dialplan`, a change of extensions only goes in live instead of a pbx_config reload;
    with `push_devices`, new devices alone go in live instead of a res_pjsip reload.

    On every failure the generation `current` pointed at before is what it points at after, and
    no generation that `current` or `previous` points at is ever deleted."""
    gens = Generations(paths)
    live = gens.live()
    # The live files passed this check: only what changed from them is read line by line.
    problems = confcheck.check(files, live)
    if problems:
        raise DeployError("rendered configuration failed its check:\n" + "\n".join(problems))
    changed = gens.changed_files(files, live)
    if not changed:
        return DeployResult(generation=None)
    old_generation = gens.target(gens.current)
    try:
        new_generation = gens.stage(files)
    except OSError as exc:
        raise DeployError(f"could not write the new generation, nothing changed: {exc}") from exc
    try:
        gens.point(gens.current, new_generation)
    except OSError as exc:
        gens.remove(new_generation)
        raise DeployError(f"could not switch to the new configuration, nothing changed: {exc}") from exc
    result = DeployResult(generation=new_generation.name, changed=changed)
    # A first deploy is read whole when Asterisk starts: nothing to restart for.
    result.restart_needed = old_generation is not None and bool(RESTART_FILES & set(changed))
    targets = [RELOAD_TARGETS[name] for name in changed if name in RELOAD_TARGETS]
    if reload is not None and targets:
        live_change = _LiveChange(gens, live, files, changed, patch_dialplan, push_devices)
        reload = live_change.forgetting(reload)
        try:
            result.reloaded, result.patched, result.pushed = await live_change.apply(targets, reload)
        except Exception as exc:  # noqa: BLE001 - whatever the reloader raised, Asterisk did not take the files
            # The reload of the old files also undoes a patch that went in halfway.
            await _restore(gens, old_generation, new_generation, reload, targets,
                           f"Asterisk refused the new configuration ({exc})")
        result.asterisk_reached = True
        result.warnings = live_change.warnings
        _mark_patched(gens, new_generation if result.patched or result.pushed else None)
    if old_generation is not None:
        _remember(gens, old_generation)
    gens.prune()
    return result


class _LiveChange:
    """What of a change from the `live` files to `files` goes into the running Asterisk without
    a module reload: extensions through AMI, new devices through ARI."""

    def __init__(self, gens: Generations, live: dict[str, str], files: dict[str, str], changed: list[str],
                 patcher: DialplanPatcher | None, pusher: DevicePusher | None) -> None:
        self.gens, self.patcher, self.pusher = gens, patcher, pusher
        self.warnings: list[str] = []

        def both(name: str) -> bool:
            return name in changed and name in live and name in files
        self.dialplan = plan_dialplan(live[DIALPLAN], files[DIALPLAN]) if patcher and both(DIALPLAN) else None
        self.devices = plan_devices(live[DEVICES], files[DEVICES]) if pusher and both(DEVICES) else None

    async def apply(self, targets: list[str], reload: Reloader) -> tuple[list[str], int, int]:
        """Make live what can be and reload the rest of `targets`: what was reloaded, how many
        extensions were patched and how many devices pushed."""
        patched = pushed = 0
        if self.dialplan is not None and self.patcher is not None:
            try:
                await self.patcher(self.dialplan)
            except DialplanNotLive as exc:
                log.info("dialplan reloaded, not changed live: %s", exc)
            else:
                patched = self.dialplan.extensions
                targets = [t for t in targets if t != RELOAD_TARGETS[DIALPLAN]]
        if self.devices is not None and self.pusher is not None and await self._push(self.devices, self.pusher):
            pushed = self.devices.devices
            targets = [t for t in targets if t != RELOAD_TARGETS[DEVICES]]
        if targets:
            await reload(targets)
        return targets, patched, pushed

    async def _push(self, devices: PjsipPatch, pusher: DevicePusher) -> bool:
        """Create `devices` live; False (nothing created) when res_pjsip's reload must do it."""
        before = _read_pushed(self.gens)
        if before.stale:
            # Objects that should be gone may still be in the memory store (a clean-up that
            # failed): the reload, and the clean-up after it, come first.
            log.info("res_pjsip reloaded, devices not created live: %d object(s) of earlier pushes "
                     "still to delete", len(before.stale))
            return False
        # Noted first: whatever a push cut short created is deleted after the next reload.
        _write_pushed(self.gens, _Pushed(before.live + [(o.type, o.id) for o in devices.objects]))
        try:
            await pusher.push(devices)
        except PjsipNotLive as exc:
            _write_pushed(self.gens, before)  # nothing was created
            log.info("res_pjsip reloaded, devices not created live: %s", exc)
            return False
        return True

    def forgetting(self, reload: Reloader) -> Reloader:
        """`reload`, and after a reload of res_pjsip the deletion of what pushes created: the file
        Asterisk has just read holds every device it should keep (a device removed since a push
        would otherwise stay). Never raises past the reload: what cannot be deleted is kept,
        marked stale (no push until it is gone), and said in the result's warnings."""
        pusher, gens = self.pusher, self.gens
        if pusher is None:
            return reload

        async def reload_and_forget(targets: list[str]) -> None:
            await reload(targets)
            if RELOAD_TARGETS[DEVICES] not in targets:
                return
            pushed = _read_pushed(gens)
            every = pushed.live + pushed.stale
            if not every:
                return
            try:
                left = await pusher.forget(every)
            except Exception as exc:  # noqa: BLE001 - the reload is done; only the clean-up failed
                log.warning("could not delete the SIP objects created live: %s", exc)
                left = every
            _write_pushed(gens, _Pushed([], left))
            if left:
                self.warnings.append(
                    f"{len(left)} SIP object(s) created live could not be deleted after res_pjsip's reload "
                    f"({', '.join(f'{kind} {name}' for kind, name in left[:3])}); until a later deploy "
                    "deletes them (it reloads res_pjsip and tries again) or Asterisk restarts, a device "
                    "removed since may still register")

        return reload_and_forget


@dataclass
class _Pushed:
    """etc/pjsip-pushed: objects created live since res_pjsip's last reload (`live`), and those
    a clean-up after a reload could not delete (`stale`)."""

    live: list[ObjectRef] = field(default_factory=list)
    stale: list[ObjectRef] = field(default_factory=list)


def _read_pushed(gens: Generations) -> _Pushed:
    try:
        lines = (gens.etc / PUSHED_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return _Pushed()
    except (OSError, UnicodeDecodeError) as exc:
        # Unknown: as if something were left to delete, so nothing is pushed onto it.
        log.warning("could not read %s (%s): no device is created live until it is readable",
                    gens.etc / PUSHED_FILE, exc)
        return _Pushed([], [("?", "?")])
    found = _Pushed()
    for line in lines:
        words = line.split(" ")
        if len(words) == 3 and words[0] == "stale":
            found.stale.append((words[1], words[2]))
        elif len(words) == 2:
            found.live.append((words[0], words[1]))
    return found


def _write_pushed(gens: Generations, pushed: _Pushed) -> None:
    path = gens.etc / PUSHED_FILE
    try:
        if not pushed.live and not pushed.stale:
            path.unlink(missing_ok=True)
            return
        text = "".join(f"{kind} {name}\n" for kind, name in dict.fromkeys(pushed.live))
        text += "".join(f"stale {kind} {name}\n" for kind, name in dict.fromkeys(pushed.stale))
        tmp = path.with_name(PUSHED_FILE + ".new")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write %s (%s): SIP objects created live may not be deleted after "
                    "res_pjsip's next reload", path, exc)


def _mark_patched(gens: Generations, generation: Path | None) -> None:
    """Remember which generation went in live (its extensions or new devices; `vipbx doctor`
    asks): Asterisk's last reload is older than that generation, yet it runs it."""
    mark = gens.etc / PATCHED_MARK
    try:
        if generation is None:
            mark.unlink(missing_ok=True)
        else:
            tmp = mark.with_name(PATCHED_MARK + ".new")
            tmp.write_text(generation.name + "\n", encoding="utf-8")
            os.replace(tmp, mark)
    except OSError as exc:
        log.warning("could not note the live dialplan change in %s (%s): vipbx doctor may report "
                    "the generation as not loaded", mark, exc)


def patched_generation(paths: Paths) -> str | None:
    """The generation whose dialplan change the last deploy or rollback made live, if any."""
    try:
        return (paths.etc / PATCHED_MARK).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _remember(gens: Generations, generation: Path) -> None:
    """Point `previous` at `generation`: the deploy has succeeded whether or not this works."""
    try:
        gens.point(gens.previous, generation)
    except OSError as exc:
        log.warning("deployed, but `previous` still points where it did (%s): rollback goes there", exc)


async def _restore(gens: Generations, old: Path | None, new: Path, reload: Reloader,
                   targets: list[str], why: str) -> NoReturn:
    """Put `current` back on `old` (no `current` at all if there was none), make Asterisk read it
    again, drop `new` if nothing points at it, and raise a DeployError that says where things are."""
    try:
        if old is None:
            gens.current.unlink(missing_ok=True)
        else:
            gens.point(gens.current, old)
    except OSError as exc:
        raise DeployError(f"{why}; putting the previous files back failed too ({exc}): Asterisk's "
                          f"files are generation {new.name}, which it refused") from exc
    if old is None:
        gens.remove(new)
        raise DeployError(f"{why}; there was no configuration before, so none is in place now")
    try:
        await reload(targets)
    except Exception as exc:
        gens.remove(new)
        raise DeployError(f"{why}; the files of generation {old.name} are back in place, but "
                          f"reloading them failed too ({exc}): Asterisk may run with parts of "
                          f"either; restart it (`vipbx asterisk stop && vipbx asterisk start`) to "
                          f"load generation {old.name} whole") from exc
    gens.remove(new)
    raise DeployError(f"{why}; previous one restored: generation {old.name} is in place and reloaded")


async def rollback(paths: Paths, reload: Reloader | None, *,
                   patch_dialplan: DialplanPatcher | None = None,
                   push_devices: DevicePusher | None = None) -> DeployResult:
    """Swap back to the generation before the last deploy; if Asterisk refuses it, swap forth."""
    gens = Generations(paths)
    previous, current = gens.target(gens.previous), gens.target(gens.current)
    if previous is None or not previous.is_dir():
        raise DeployError("no previous generation to roll back to")
    live, older = gens.live(), read_dir(previous)
    changed = gens.changed_files(older, live)
    gens.point(gens.current, previous)
    result = DeployResult(generation=previous.name, changed=changed)
    result.restart_needed = bool(RESTART_FILES & set(changed))
    targets = [RELOAD_TARGETS[name] for name in changed if name in RELOAD_TARGETS]
    if reload is not None and targets:
        live_change = _LiveChange(gens, live, older, changed, patch_dialplan, push_devices)
        reload = live_change.forgetting(reload)
        try:
            result.reloaded, result.patched, result.pushed = await live_change.apply(targets, reload)
        except Exception as exc:  # noqa: BLE001 - as in deploy()
            await _swap_forth(gens, current, previous, reload, targets, exc)
        result.asterisk_reached = True
        result.warnings = live_change.warnings
        _mark_patched(gens, previous if result.patched or result.pushed else None)
    if current is not None:
        _remember(gens, current)
    return result


async def _swap_forth(gens: Generations, current: Path | None, previous: Path, reload: Reloader,
                      targets: list[str], exc: Exception) -> NoReturn:
    why = f"Asterisk refused generation {previous.name} ({exc})"
    if current is None:
        raise DeployError(f"{why}; its files stay in place")
    try:
        gens.point(gens.current, current)
    except OSError as err:
        raise DeployError(f"{why}; switching back to generation {current.name} failed too ({err}): "
                          f"Asterisk's files are generation {previous.name}") from err
    try:
        await reload(targets)
    except Exception as err:
        raise DeployError(f"{why}; generation {current.name} is back in place, but reloading it "
                          f"failed too ({err}): restart Asterisk to load it whole") from err
    raise DeployError(f"{why}; nothing rolled back: generation {current.name} is in place and reloaded")


def read_dir(path: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(path).iterdir()) if p.is_file()}
