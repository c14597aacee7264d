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
    found = re.findall(r"^ Endpoint:\s+([a-z0-9_-]+)", vipbx.cli("pjsip show endpoints"), re.MULTILINE)
    return set(found)


def asterisk_pid(vipbx: Vipbx) -> str:
    return re.search(r"pid (\d+)", vipbx("asterisk", "status").stdout).group(1)  # type: ignore[union-attr]


def live_dialplan(vipbx: Vipbx) -> tuple[str, str]:
    """The whole running dialplan and its hints, without where each line came from (the file and
    line of a reload, `pbx_config` for an extension added through AMI)."""
    plan = re.sub(r"\s+\[(?:extensions\.conf:\d+|pbx_config)\]", "", vipbx.cli("dialplan show"))
    return plan, vipbx.cli("core show hints")


def assert_same_as_the_files(vipbx: Vipbx) -> None:
    """The dialplan changed live is the one a reload of the files gives."""
    patched = live_dialplan(vipbx)
    assert "Dialplan reloaded" in vipbx.cli("dialplan reload")
    reloaded = live_dialplan(vipbx)
    assert patched[0].count("=>") > 50 and "hints registered" in patched[1]
    assert patched == reloaded


def device_as_asterisk_shows_it(vipbx: Vipbx, device: str) -> str:
    """The endpoint, its aor and its auth as Asterisk has them, whichever store they came from."""
    return "\n".join(vipbx.cli(f"pjsip show {kind} {device}") for kind in ("endpoint", "aor", "auth"))


def assert_device_same_as_the_files(vipbx: Vipbx, device: str) -> None:
    """A device created live through ARI is the one a res_pjsip reload of the file gives."""
    pushed = device_as_asterisk_shows_it(vipbx, device)
    assert "VIPBX_TENANT" in pushed and "password" in pushed and "mailboxes" in pushed, pushed
    vipbx.cli("module reload res_pjsip.so")
    assert device_as_asterisk_shows_it(vipbx, device) == pushed


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
        # The user's extensions go into the running dialplan through AMI: no pbx_config reload.
        assert re.search(r"^dialplan: [1-9]\d* extension\(s\) changed live, without a reload$", out, re.MULTILINE), out
        # Its device goes in through ARI: no res_pjsip reload either.
        assert re.search(r"^SIP: 1 new device\(s\) created live, without a reload$", out, re.MULTILINE), out
        assert "reloaded: app_voicemail.so" in out
        assert "acme-pekka-soft" in endpoints(vipbx)
        assert_device_same_as_the_files(vipbx, "acme-pekka-soft")
        assert "'104' =>" in vipbx.cli("dialplan show 104@vipbx-t-acme")
        assert "358401110004" in vipbx.cli("voicemail show users for acme")
        assert_same_as_the_files(vipbx)
        assert vipbx("deploy", *args(files)).stdout.strip() == "no changes: nothing deployed"

        out = vipbx("rollback", *args(files)).stdout
        assert "rolled back to generation" in out and "changed live" in out
        assert "acme-pekka-soft" not in endpoints(vipbx)
        assert "358401110004" not in vipbx.cli("voicemail show users for acme")
        assert "There is no existence of 104@vipbx-t-acme" in vipbx.cli("dialplan show 104@vipbx-t-acme")
        assert_same_as_the_files(vipbx)
        assert asterisk_pid(vipbx) == pid  # reloaded, never restarted
    finally:
        files["acme"].write_text(original, encoding="utf-8")


def test_a_dialplan_asterisk_does_not_run_is_reloaded_not_patched(vipbx: Vipbx, files: dict[str, Path]) -> None:
    """After `deploy --no-reload`, Asterisk runs an older dialplan than the live files: the next
    deploy must not send only its own difference, or the user of the first would be missing."""
    original = files["acme"].read_text(encoding="utf-8")
    second = (NEW_USER.replace("pekka.nieminen", "liisa.koski").replace("Pekka Nieminen", "Liisa Koski")
              .replace("+358401110004", "+358401110005").replace('"104"', '"105"')
              .replace("acme-pekka-soft", "acme-liisa-soft"))
    try:
        files["acme"].write_text(original + NEW_USER, encoding="utf-8")
        vipbx("deploy", "--no-reload", *args(files))
        assert "There is no existence of 104@vipbx-t-acme" in vipbx.cli("dialplan show 104@vipbx-t-acme")
        files["acme"].write_text(original + NEW_USER + second, encoding="utf-8")
        out = vipbx("deploy", *args(files)).stdout
        assert "changed live" not in out and "reloaded: pbx_config.so" in out, out
        # Nor are its devices pushed: Asterisk does not run the live pjsip.conf either.
        assert "created live" not in out and "res_pjsip.so" in out, out
        assert {"acme-pekka-soft", "acme-liisa-soft"} <= endpoints(vipbx)
        for exten in ("104", "105"):
            assert f"'{exten}' =>" in vipbx.cli(f"dialplan show {exten}@vipbx-t-acme")
        assert_same_as_the_files(vipbx)
    finally:
        files["acme"].write_text(original, encoding="utf-8")
        vipbx("deploy", *args(files))
    assert "There is no existence of 105@vipbx-t-acme" in vipbx.cli("dialplan show 105@vipbx-t-acme")


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
