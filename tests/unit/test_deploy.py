"""Generations: atomic swap, no-op deploys, reload failures restore, rollback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from asterisk_conf import deploy
from base.paths import Paths

FILES = {"extensions.conf": "[vipbx-a]\nexten => s,1,Hangup()\n", "pjsip.conf": "[vipbx-udp]\ntype=transport\n"}


def changed(files: dict[str, str], name: str, line: str) -> dict[str, str]:
    return {**files, name: files[name] + line}


class RecordingReloader:
    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call

    async def __call__(self, targets: list[str]) -> None:
        self.calls.append(targets)
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("No such module")


class AlwaysRefused:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, targets: list[str]) -> None:
        self.calls += 1
        raise RuntimeError(f"refused #{self.calls}")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_first_deploy_creates_generation_and_current(tmp_path: Path) -> None:
    result = run(deploy.deploy(Paths(tmp_path), FILES, None))
    gens = deploy.Generations(Paths(tmp_path))
    assert result.generation == "0001"
    assert gens.current.is_symlink() and gens.live() == FILES
    assert not gens.previous.exists()


def test_only_changed_modules_are_reloaded_and_unchanged_deploy_is_a_no_op(tmp_path: Path) -> None:
    run(deploy.deploy(Paths(tmp_path), FILES, None))
    reloader = RecordingReloader()
    new = changed(FILES, "extensions.conf", "exten => t,1,Hangup()\n")
    result = run(deploy.deploy(Paths(tmp_path), new, reloader))
    assert reloader.calls == [["pbx_config.so"]]
    assert result.changed == ["extensions.conf"] and result.generation == "0002"
    assert run(deploy.deploy(Paths(tmp_path), new, reloader)).generation is None
    assert len(reloader.calls) == 1


def test_refused_reload_restores_previous_files(tmp_path: Path) -> None:
    run(deploy.deploy(Paths(tmp_path), FILES, None))
    reloader = RecordingReloader(fail_on_call=1)
    with pytest.raises(deploy.DeployError, match="previous one restored"):
        run(deploy.deploy(Paths(tmp_path), changed(FILES, "pjsip.conf", "[x]\ntype=aor\n"), reloader))
    assert deploy.Generations(Paths(tmp_path)).live() == FILES
    assert reloader.calls == [["res_pjsip.so"], ["res_pjsip.so"]]  # tried, then re-read the old files


def test_failing_check_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(deploy.DeployError, match="#include"):
        run(deploy.deploy(Paths(tmp_path), {"extensions.conf": "#include evil.conf\n"}, None))
    assert not (tmp_path / "etc" / "current").exists()


def test_rollback_swaps_back_and_forth(tmp_path: Path) -> None:
    new = changed(FILES, "extensions.conf", "exten => t,1,Hangup()\n")
    run(deploy.deploy(Paths(tmp_path), FILES, None))
    run(deploy.deploy(Paths(tmp_path), new, None))
    reloader = RecordingReloader()
    result = run(deploy.rollback(Paths(tmp_path), reloader))
    gens = deploy.Generations(Paths(tmp_path))
    assert gens.live() == FILES and result.generation == "0001"
    assert reloader.calls == [["pbx_config.so"]]
    run(deploy.rollback(Paths(tmp_path), None))
    assert gens.live() == new


def test_rollback_without_history_fails(tmp_path: Path) -> None:
    with pytest.raises(deploy.DeployError):
        run(deploy.rollback(Paths(tmp_path), None))


def test_old_generations_are_pruned(tmp_path: Path) -> None:
    for i in range(deploy.KEEP_GENERATIONS + 5):
        run(deploy.deploy(Paths(tmp_path), changed(FILES, "extensions.conf", f"exten => {i},1,Hangup()\n"), None))
    gens = sorted(p.name for p in (tmp_path / "etc" / "generations").iterdir())
    assert len(gens) == deploy.KEEP_GENERATIONS


# --- failure paths: `current` and `previous` never point at a deleted generation ---------------

def assert_links_whole(tmp_path: Path) -> None:
    gens = deploy.Generations(Paths(tmp_path))
    for link in (gens.current, gens.previous):
        assert not link.is_symlink() or link.resolve().is_dir(), f"{link.name} points at a deleted generation"


def test_a_refused_first_deploy_leaves_no_dangling_current(tmp_path: Path) -> None:
    reloader = RecordingReloader(fail_on_call=1)
    with pytest.raises(deploy.DeployError, match="no configuration before, so none is in place"):
        run(deploy.deploy(Paths(tmp_path), FILES, reloader))
    assert_links_whole(tmp_path)
    gens = deploy.Generations(Paths(tmp_path))
    assert not gens.current.is_symlink() and gens.live() == {}
    # The next deploy starts afresh.
    assert run(deploy.deploy(Paths(tmp_path), FILES, None)).generation is not None
    assert gens.live() == FILES


def test_a_failed_restore_reload_is_reported_not_swallowed(tmp_path: Path) -> None:
    run(deploy.deploy(Paths(tmp_path), FILES, None))
    with pytest.raises(deploy.DeployError) as raised:
        run(deploy.deploy(Paths(tmp_path), changed(FILES, "pjsip.conf", "[x]\ntype=aor\n"), AlwaysRefused()))
    text = str(raised.value)
    assert "refused #1" in text and "refused #2" in text
    assert "generation 0001 are back in place, but reloading them failed too" in text
    assert "restart" in text
    assert deploy.Generations(Paths(tmp_path)).live() == FILES
    assert_links_whole(tmp_path)


def test_when_the_swap_back_fails_the_refused_generation_is_kept_as_current(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(deploy.deploy(Paths(tmp_path), FILES, None))
    new = changed(FILES, "pjsip.conf", "[x]\ntype=aor\n")
    point = deploy.Generations.point
    calls: list[str] = []

    def point_once(self: deploy.Generations, link: Path, generation: Path) -> None:
        calls.append(generation.name)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        point(self, link, generation)

    monkeypatch.setattr(deploy.Generations, "point", point_once)
    with pytest.raises(deploy.DeployError, match="putting the previous files back failed too.*generation 0002"):
        run(deploy.deploy(Paths(tmp_path), new, RecordingReloader(fail_on_call=1)))
    assert deploy.Generations(Paths(tmp_path)).live() == new
    assert_links_whole(tmp_path)


def test_a_failed_swap_or_stage_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(deploy.deploy(Paths(tmp_path), FILES, None))
    new = changed(FILES, "pjsip.conf", "[x]\ntype=aor\n")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    for step in ("point", "stage"):
        with monkeypatch.context() as patch:
            patch.setattr(deploy.Generations, step, fail)
            with pytest.raises(deploy.DeployError, match="nothing changed: .*No space left"):
                run(deploy.deploy(Paths(tmp_path), new, RecordingReloader()))
        gens = deploy.Generations(Paths(tmp_path))
        assert gens.live() == FILES
        assert sorted(p.name for p in gens.generations.iterdir()) == ["0001"]


def test_prune_never_removes_current_or_previous_and_its_failure_fails_no_deploy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths(tmp_path)
    for n in range(3):
        run(deploy.deploy(paths, changed(FILES, "pjsip.conf", f"[t{n}]\ntype=aor\n"), None))
    run(deploy.rollback(paths, None))  # current → 0002, previous → 0003
    gens = deploy.Generations(paths)
    for n in range(12):  # older than the ten kept, by number
        (gens.generations / f"{n + 4:04d}").mkdir()
    gens.point(gens.current, gens.generations / "0001")
    gens.point(gens.previous, gens.generations / "0002")
    gens.prune()
    assert {"0001", "0002"} <= {p.name for p in gens.generations.iterdir()}
    assert_links_whole(tmp_path)

    def refuse(path: object, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(deploy.shutil, "rmtree", refuse)
    assert run(deploy.deploy(paths, changed(FILES, "pjsip.conf", "[late]\ntype=aor\n"), None)).generation


def test_a_refused_rollback_swaps_forth_and_says_so(tmp_path: Path) -> None:
    run(deploy.deploy(Paths(tmp_path), FILES, None))
    new = changed(FILES, "pjsip.conf", "[x]\ntype=aor\n")
    run(deploy.deploy(Paths(tmp_path), new, None))
    with pytest.raises(deploy.DeployError, match="refused generation 0001.*nothing rolled back: generation 0002"):
        run(deploy.rollback(Paths(tmp_path), RecordingReloader(fail_on_call=1)))
    gens = deploy.Generations(Paths(tmp_path))
    assert gens.live() == new and gens.target(gens.previous).name == "0001"
    with pytest.raises(deploy.DeployError, match="reloading it failed too"):
        run(deploy.rollback(Paths(tmp_path), AlwaysRefused()))
    assert gens.live() == new


# --- `vipbx deploy` when Asterisk runs but its AMI does not answer ---------------------------------

def test_a_deploy_while_asterisk_runs_without_ami_deploys_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import socket

    import yaml
    from click.testing import CliRunner

    from cli import main as cli_main

    examples = Path(__file__).resolve().parents[2] / "examples"
    with socket.socket() as sock:  # a port nobody listens on: the AMI is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    platform = yaml.safe_load((examples / "platform.yaml").read_text(encoding="utf-8"))
    platform["platform"]["ami"] = {"bind": "127.0.0.1", "port": port}
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform), encoding="utf-8")
    acme = (examples / "acme.yaml").read_text(encoding="utf-8")
    (tmp_path / "acme.yaml").write_text(acme, encoding="utf-8")
    files = [str(tmp_path / "platform.yaml"), str(tmp_path / "acme.yaml")]
    home = tmp_path / "home"
    runner = CliRunner()

    monkeypatch.setattr(cli_main, "running_pid", lambda paths: None)  # Asterisk not started yet
    first = runner.invoke(cli_main.main, ["--home", str(home), "deploy", *files])
    assert first.exit_code == 0, first.output
    live = os.readlink(home / "etc" / "current")
    generations = sorted((home / "etc" / "generations").iterdir())

    (tmp_path / "acme.yaml").write_text(acme.replace("Anna Virtanen", "Anna Korhonen"), encoding="utf-8")
    monkeypatch.setattr(cli_main, "running_pid", lambda paths: 4242)  # now it runs, AMI still down
    second = runner.invoke(cli_main.main, ["--home", str(home), "deploy", *files])
    assert second.exit_code != 0
    assert "runs (pid 4242) but its AMI" in second.output and "nothing deployed" in second.output
    assert second.exception is None or isinstance(second.exception, SystemExit)  # no traceback
    assert os.readlink(home / "etc" / "current") == live
    assert sorted((home / "etc" / "generations").iterdir()) == generations
