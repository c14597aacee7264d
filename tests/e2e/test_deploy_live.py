"""`vipbx` against a running Asterisk: deploy reloads only what changed, without a restart;
diff masks secrets; a bad configuration deploys nothing; rollback restores the live PBX.

Runs the CLI as operators do (a subprocess per command) on a PBX of its own (127.0.0.22).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clitool import Vipbx, write_yaml

from base.secrets import SecretStore

NEW_USER = """\
      - id: pekka.nieminen
        name: Pekka Nieminen
        number: "+358401110004"
        extension: "104"
        pin: "602817"
        language: fi
        devices:
          - id: acme-pekka-soft
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = write_yaml(tmp_path_factory.mktemp("yaml"), "127.0.0.22", "127.0.0.24", 17000)
    return {p.stem: p for p in paths}


@pytest.fixture(scope="module")
def vipbx(asterisk_runtime: object, tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> Iterator[Vipbx]:
    tool = Vipbx(tmp_path_factory.mktemp("home"))
    tool("deploy", *args(files))
    tool("asterisk", "start")
    try:
        yield tool
    finally:
        tool("asterisk", "stop", check=False)


def args(files: dict[str, Path]) -> list[str]:
    return [str(files[name]) for name in ("platform", "acme", "borealis")]


def endpoints(vipbx: Vipbx) -> set[str]:
    found = re.findall(r"^ Endpoint:\s+([a-z0-9_-]+)", vipbx.cli("pjsip show endpoints"), re.M)
    return set(found)


def asterisk_pid(vipbx: Vipbx) -> str:
    return re.search(r"pid (\d+)", vipbx("asterisk", "status").stdout).group(1)  # type: ignore[union-attr]


def test_first_deploy_is_live_with_every_device(vipbx: Vipbx) -> None:
    assert endpoints(vipbx) == {
        "carrier", "acme-anna-soft", "acme-mikko-soft", "acme-mikko-desk", "acme-sara-soft",
        "acme-workshop", "borealis-james-soft", "borealis-aino-soft",
    }


def test_diff_deploy_and_rollback_change_the_running_pbx_without_restart(vipbx: Vipbx, files: dict[str, Path]) -> None:
    pid = asterisk_pid(vipbx)
    assert vipbx("diff", *args(files)).stdout.strip() == "no changes"
    original = files["acme"].read_text(encoding="utf-8")
    files["acme"].write_text(original + NEW_USER, encoding="utf-8")
    try:
        diff = vipbx("diff", *args(files), check=False)
        assert diff.returncode == 1
        assert "+[acme-pekka-soft]" in diff.stdout
        secret = SecretStore(vipbx.home / "secrets.json").get("device:acme-pekka-soft")
        assert secret not in diff.stdout and "password=********" in diff.stdout

        out = vipbx("deploy", *args(files)).stdout
        assert "changed: extensions.conf, pjsip.conf, voicemail.conf" in out
        assert "reloaded: pbx_config.so, res_pjsip.so, app_voicemail.so" in out
        assert "acme-pekka-soft" in endpoints(vipbx)
        assert "'104' =>" in vipbx.cli("dialplan show 104@vipbx-t-acme")
        assert "358401110004" in vipbx.cli("voicemail show users for acme")
        assert vipbx("deploy", *args(files)).stdout.strip() == "no changes: nothing deployed"

        out = vipbx("rollback", *args(files)).stdout
        assert "rolled back to generation" in out
        assert "acme-pekka-soft" not in endpoints(vipbx)
        assert "358401110004" not in vipbx.cli("voicemail show users for acme")
        assert "There is no existence of 104@vipbx-t-acme" in vipbx.cli("dialplan show 104@vipbx-t-acme")
        assert asterisk_pid(vipbx) == pid  # reloaded, never restarted
    finally:
        files["acme"].write_text(original, encoding="utf-8")


def test_bad_configuration_deploys_nothing(vipbx: Vipbx, files: dict[str, Path]) -> None:
    generations = sorted((vipbx.home / "etc" / "generations").iterdir())
    live_before = os.readlink(vipbx.home / "etc" / "current")
    original = files["acme"].read_text(encoding="utf-8")
    hostile = NEW_USER.replace("Pekka Nieminen", "Evil\\n[vipbx-public]\\nexten => _X.,1,System(id)")
    files["acme"].write_text(original + hostile.replace('name: Evil', 'name: "Evil').replace("System(id)", 'System(id)"'), encoding="utf-8")
    try:
        done = vipbx("deploy", *args(files), check=False)
        assert done.returncode != 0
        assert re.search(r"acme\.yaml:\d+: tenants\[acme\]\.users\[pekka\.nieminen\]\.name: ", done.stderr)
        assert sorted((vipbx.home / "etc" / "generations").iterdir()) == generations
        assert os.readlink(vipbx.home / "etc" / "current") == live_before
        assert "acme-pekka-soft" not in endpoints(vipbx)
    finally:
        files["acme"].write_text(original, encoding="utf-8")
