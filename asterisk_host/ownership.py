"""Who may touch an instance's folders once Asterisk runs as its own unprivileged account.

Three kinds of folder:
- Asterisk's own (run, log, db, cache): owned by the account, nobody else's business (0750, the
  database 0700);
- the spool, shared with the application (which runs as root and writes voicemail there): owned
  by the account, group the account's, 2770. The set-group-ID bit makes whatever the application
  creates there belong to Asterisk's group, and the spool code gives it group permissions;
- what Asterisk only reads: its configuration (secrets: group-readable, nothing for others) and
  shared media such as the prompts (group-readable; others keep what they had).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from asterisk_host.runtime import RunAccount

PRIVATE_DIR = 0o750
DB_DIR = 0o700
SPOOL_DIR = 0o2770
CONFIG_DIR = 0o2750
CONFIG_FILE = 0o640


def own_tree(root: Path, account: RunAccount, top_mode: int) -> None:
    """`root` and all below it owned by `account` (Asterisk's own files); `root` gets `top_mode`."""
    os.chown(root, account.uid, account.gid)
    os.chmod(root, top_mode)
    for path in _below(root):
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != (account.uid, account.gid):
            os.chown(path, account.uid, account.gid, follow_symlinks=False)


def share_spool(root: Path, account: RunAccount) -> None:
    """The spool: Asterisk's, with every entry in its group and open to the group."""
    # Looked at before it is changed: a spool made by someone else (e.g. `vipbx restore` into a
    # fresh home) must be walked even when its top already has the set-group-ID bit.
    top = os.stat(root)
    prepared = top.st_gid == account.gid and top.st_mode & stat.S_ISGID
    os.chown(root, account.uid, account.gid)
    os.chmod(root, SPOOL_DIR)
    if prepared:
        return  # since it was, the set-group-ID bit has kept everything new in the group
    for path in _below(root):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_gid != account.gid:
            os.chown(path, -1, account.gid)
        extra = stat.S_ISGID | 0o070 if stat.S_ISDIR(st.st_mode) else 0o060
        os.chmod(path, (st.st_mode & 0o7777) | extra)


def readable_tree(root: Path, account: RunAccount, *, private: bool) -> None:
    """Everything below `root` readable by the account's group, and new entries inherit the group
    (set-group-ID folders); `private` (configuration with secrets): nothing for others."""
    for path in (root, *_below(root)):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_gid != account.gid:
            os.chown(path, -1, account.gid)
        is_dir = stat.S_ISDIR(st.st_mode)
        # Folders pass their group on (set-group-ID): what is added later stays readable.
        mode = st.st_mode & 0o7777 | (0o050 | stat.S_ISGID if is_dir else 0o040)
        if private:
            mode &= ~0o007
        if mode != st.st_mode & 0o7777:
            os.chmod(path, mode)


def private_file(path: Path, account: RunAccount | None) -> None:
    """A file only root and the account's group may read (e.g. asterisk.conf, console.log)."""
    if account is not None:
        os.chown(path, -1, account.gid)
    os.chmod(path, CONFIG_FILE)


def allow_passing(folder: Path) -> None:
    """Let every account pass through `folder` and the folders above it (search permission only,
    no listing): a system Asterisk sees the real paths, e.g. below a private temporary folder."""
    for path in (folder, *folder.parents):
        mode = os.stat(path).st_mode
        if not mode & 0o001:
            os.chmod(path, (mode & 0o7777) | 0o001)


def _below(root: Path) -> list[str]:
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        found += [os.path.join(folder, name) for name in (*dirs, *files)]
    return found
