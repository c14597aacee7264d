"""Asterisk's unprivileged account: the rootfs gets the machine's ids, and an instance's folders are
prepared so that account can write its own and the spool and only read its configuration."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from asterisk_host import ownership
from asterisk_host.instance import AsteriskInstance
from asterisk_host.runtime import (
    AsteriskRuntime,
    RunAccount,
    RuntimeUnavailable,
    _align_account,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
ACCOUNT = RunAccount("asterisk", 4242, 4243)


@pytest.fixture(autouse=True)
def no_asterisk_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """asterisk.conf names the runtime's folders; this machine need not have them."""
    monkeypatch.setattr(AsteriskInstance, "render_asterisk_conf", lambda self: "[directories]\n")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def fake_rootfs(tmp_path: Path, extra_user: str = "") -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "asterisk:x:101:101:Asterisk PBX daemon:/var/lib/asterisk:/usr/sbin/nologin\n"
                                     + extra_user)
    (root / "etc/group").write_text("root:x:0:\naudio:x:29:asterisk\nasterisk:x:101:\n")
    spool = root / "var/spool/asterisk"
    spool.mkdir(parents=True)
    os.chown(spool, 101, 101)
    (root / "var/spool/asterisk/file").write_text("x")
    os.chown(root / "var/spool/asterisk/file", 0, 101)
    os.symlink("/nowhere", root / "var/link")
    return root


def test_the_rootfs_account_takes_the_machines_ids(tmp_path: Path) -> None:
    root = fake_rootfs(tmp_path)
    _align_account(root, ACCOUNT)
    assert "asterisk:x:4242:4243:Asterisk PBX daemon" in (root / "etc/passwd").read_text()
    assert "asterisk:x:4243:" in (root / "etc/group").read_text()
    assert "audio:x:29:asterisk" in (root / "etc/group").read_text()
    spool = (root / "var/spool/asterisk").stat()
    assert (spool.st_uid, spool.st_gid) == (4242, 4243)
    file = (root / "var/spool/asterisk/file").stat()
    assert (file.st_uid, file.st_gid) == (0, 4243)  # only the old ids change
    _align_account(root, ACCOUNT)  # a second time: nothing to do


def test_ids_another_rootfs_account_has_are_refused(tmp_path: Path) -> None:
    root = fake_rootfs(tmp_path, "other:x:4242:4242::/:/usr/sbin/nologin\n")
    with pytest.raises(RuntimeUnavailable, match="'other'"):
        _align_account(root, ACCOUNT)
    assert "asterisk:x:101:101" in (root / "etc/passwd").read_text()


def test_instance_folders_for_the_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AsteriskRuntime, "account", property(lambda self: ACCOUNT))
    etc = tmp_path / "etc"
    (etc / "generations/0001").mkdir(parents=True)
    (etc / "generations/0001/pjsip.conf").write_text("password=x\n")
    os.chmod(etc / "generations/0001/pjsip.conf", 0o644)
    os.symlink("generations/0001", etc / "current")
    sounds = tmp_path / "sounds"
    (sounds / "fi").mkdir(parents=True)
    (sounds / "fi/hello.wav").write_bytes(b"RIFF")
    os.chmod(sounds / "fi/hello.wav", 0o600)
    home = tmp_path / "pbx"
    (home / "spool/voicemail/acme").mkdir(parents=True)  # left by root, e.g. an older version
    (home / "db").mkdir(parents=True)
    (home / "db/astdb.sqlite3").write_bytes(b"")
    instance = AsteriskInstance(AsteriskRuntime(Path("/")), home, etc / "current", shared=[sounds])
    instance.write_conf()

    def owner(path: Path) -> tuple[int, int]:
        st = path.lstat()
        return st.st_uid, st.st_gid

    assert owner(home) == (0, 4243) and mode(home) & 0o007 == 0
    for folder in (instance.run_dir, instance.log_dir, instance.cache_dir, instance.db_dir):
        assert owner(folder) == (4242, 4243) and mode(folder) & 0o007 == 0, folder
    assert mode(instance.db_dir) == 0o700 and owner(home / "db/astdb.sqlite3") == (4242, 4243)
    assert owner(instance.spool_dir) == (4242, 4243) and mode(instance.spool_dir) == 0o2770
    left = home / "spool/voicemail/acme"
    assert owner(left)[1] == 4243 and mode(left) & 0o2070 == 0o2070
    # What root creates in the spool afterwards belongs to Asterisk's group.
    (instance.spool_dir / "new").mkdir()
    assert owner(instance.spool_dir / "new")[1] == 4243
    conf = etc / "generations/0001/pjsip.conf"
    assert owner(conf)[1] == 4243 and mode(conf) == 0o640
    assert mode(etc / "generations") & 0o2050 == 0o2050 and mode(etc / "generations") & 0o007 == 0
    assert owner(instance.conf_path)[1] == 4243 and mode(instance.conf_path) == 0o640
    assert owner(sounds / "fi/hello.wav")[1] == 4243 and mode(sounds / "fi/hello.wav") == 0o640


def test_asterisk_is_told_to_drop_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AsteriskRuntime, "account", property(lambda self: ACCOUNT))
    seen: list[list[str]] = []

    class Stop(Exception):
        pass

    def popen(command: list[str], **kwargs: object) -> None:
        seen.append(command)
        assert kwargs["umask"] == 0o027
        raise Stop

    monkeypatch.setattr("subprocess.Popen", popen)
    (tmp_path / "etc").mkdir()
    instance = AsteriskInstance(AsteriskRuntime(Path("/")), tmp_path / "pbx", tmp_path / "etc")
    monkeypatch.setattr(AsteriskRuntime, "binary", "/usr/sbin/asterisk")
    with pytest.raises(Stop):
        instance.start()
    assert seen[0][-4:] == ["-U", "asterisk", "-G", "asterisk"]


def test_allow_passing_adds_search_only(tmp_path: Path) -> None:
    private = tmp_path / "private"
    (private / "inner").mkdir(parents=True)
    os.chmod(private, 0o700)
    ownership.allow_passing(private / "inner")
    assert mode(private) == 0o701


def test_a_restored_spool_with_a_set_group_id_top_is_still_given_to_the_group(tmp_path: Path) -> None:
    """`vipbx restore` into a fresh home makes the spool as root (root:root, 2770, files 0660):
    the set-group-ID bit alone must not pass it for one Asterisk's group was given."""
    spool = tmp_path / "spool"
    message = spool / "voicemail/acme/358401110001/INBOX/msg0000.wav"
    message.parent.mkdir(parents=True)
    message.write_bytes(b"RIFF")
    for path in (spool, *spool.rglob("*")):
        os.chmod(path, 0o2770 if path.is_dir() else 0o660)
    ownership.share_spool(spool, ACCOUNT)
    assert message.stat().st_gid == 4243 and message.parent.stat().st_gid == 4243
