"""Writing the cluster's mailbox table (asterisk_conf.mailbox_table) before its nodes deploy: a
new mailbox is in the table before any dialplan leads to it, and its node needs no
app_voicemail reload. One transaction: the nodes see the old rows or the new ones."""

from __future__ import annotations

from dataclasses import astuple, dataclass

from asterisk_conf.mailbox_table import (
    TABLE,
    MailboxRow,
    in_table,
    mailbox_rows,
    tenant_digests,
)
from base.model import Config
from callstate.errors import StorageError
from callstate.factory import SecretGetter, open_postgres

INSERT_BATCH = 1000
COLUMNS = ("context", "mailbox", "password", "fullname", "tz", "maxsecs")
# `uniqueid` is app_voicemail's own key for a realtime mailbox (it asks for the column at load).
CREATE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    uniqueid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    context VARCHAR(64) NOT NULL,
    mailbox VARCHAR(32) NOT NULL,
    password VARCHAR(16) NOT NULL,
    fullname VARCHAR(200) NOT NULL,
    tz VARCHAR(32) NOT NULL,
    maxsecs INTEGER NOT NULL,
    UNIQUE (context, mailbox)
)"""


class MailboxSyncError(Exception):
    pass


@dataclass(frozen=True)
class MailboxSync:
    added: int = 0
    changed: int = 0
    removed: int = 0
    to_remove: int = 0  # rows of mailboxes gone, kept until the nodes no longer lead to them

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def sync_mailboxes(config: Config, secret: SecretGetter, *, remove: bool = True) -> MailboxSync | None:
    """Make the table hold the mailboxes of `config` (and no other with `remove`; without it the
    rows to remove are only counted); None when its nodes read voicemail.conf instead (no cluster
    on PostgreSQL)."""
    if not in_table(config.platform):
        return None
    try:
        # The call state's own schema is not this table's business (the services migrate it).
        db = open_postgres(config.platform.state_database, secret, migrate=False)
    except StorageError as exc:
        raise MailboxSyncError(f"the mailbox table could not be written: {exc}") from exc
    try:
        return db.write(lambda tx: _apply(tx, config, remove))
    except StorageError as exc:
        raise MailboxSyncError(f"the mailbox table could not be written: {exc}") from exc
    finally:
        db.close()


def _apply(tx, config: Config, remove: bool) -> MailboxSync:  # type: ignore[no-untyped-def]
    tx.run(CREATE)
    # Only the tenants whose rows differ are read and compared row by row: a digest of each
    # tenant's rows on both sides (100,000 rows read and compared took a second).
    theirs = dict(tx.all(f"SELECT context, encode(sha256(convert_to(string_agg(concat_ws(E'\\t', "
                         f"{', '.join(COLUMNS[1:])}), E'\\n' ORDER BY mailbox COLLATE \"C\"), 'UTF8')), 'hex') "
                         f"FROM {TABLE} GROUP BY context"))
    ours = tenant_digests(config)
    differ = sorted(context for context in ours.keys() | theirs.keys() if ours.get(context) != theirs.get(context))
    if not differ:
        return MailboxSync()
    have = {(row[0], row[1]): MailboxRow(*row) for row in tx.all(
        f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE context = ANY(?)", (differ,))}
    wanted = mailbox_rows(config, set(differ))
    added = [row for key, row in wanted.items() if key not in have]
    changed = [row for key, row in wanted.items() if key in have and have[key] != row]
    removed = [key for key in have if key not in wanted]
    if not remove:
        removed, to_remove = [], len(removed)
    else:
        to_remove = 0
    for key in removed:
        tx.run(f"DELETE FROM {TABLE} WHERE context = ? AND mailbox = ?", key)
    for row in changed:
        tx.run(f"UPDATE {TABLE} SET password = ?, fullname = ?, tz = ?, maxsecs = ? WHERE context = ? AND mailbox = ?",
               (row.password, row.fullname, row.tz, row.maxsecs, row.context, row.mailbox))
    for start in range(0, len(added), INSERT_BATCH):  # a first deploy writes 100,000 rows
        batch = added[start:start + INSERT_BATCH]
        values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(batch))
        tx.run(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES {values}",
               tuple(value for row in batch for value in astuple(row)))
    return MailboxSync(len(added), len(changed), len(removed), to_remove)
