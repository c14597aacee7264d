"""The mailboxes of a cluster's nodes in a database table instead of voicemail.conf.

app_voicemail needs a mailbox in its configuration only for the native fallback (VoiceMail,
VoiceMailMain and VM_INFO while the application is down); message waiting counts the spool of
any mailbox a device subscribes to. Reading voicemail.conf costs it 9 s at 20,000 mailboxes
(bench/README.md), so adding one user to a node would reload it for that long. On the nodes of
a cluster whose call state is on PostgreSQL, app_voicemail reads its mailboxes from that
database instead (Asterisk realtime: extconfig.conf, res_config_pgsql): one row per mailbox of
every tenant, written by the cluster's deploy, seen by every node at once, with no reload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from base.model import Config, Platform

TABLE = "vipbx_mailboxes"
ZONE = "helsinki"  # voicemail.conf [zonemessages]


def in_table(platform: Platform) -> bool:
    """Whether the nodes of this platform read their mailboxes from TABLE."""
    return platform.sip_edge is not None and platform.state_database.backend == "postgresql"


@dataclass(frozen=True)
class MailboxRow:
    context: str  # the tenant
    mailbox: str
    password: str
    fullname: str
    tz: str
    maxsecs: int


def mailbox_rows(config: Config, contexts: Collection[str] | None = None) -> dict[tuple[str, str], MailboxRow]:
    """Every mailbox of every tenant (of those in `contexts`), by (context, mailbox): what
    voicemail.conf would list."""
    rows: dict[tuple[str, str], MailboxRow] = {}
    for tenant in config.tenants:
        if contexts is not None and tenant.id not in contexts:
            continue
        for user in tenant.users:
            if user.has_voicemail:
                rows[(tenant.id, user.mailbox)] = MailboxRow(tenant.id, user.mailbox, user.pin, user.name, ZONE,
                                                             tenant.max_message_seconds)
    return rows


def tenant_digests(config: Config) -> dict[str, str]:
    """Each tenant's mailbox rows as one digest: its rows' columns after `context`, tab-separated,
    a line per row in the order of the mailbox (as cluster.mailboxes asks the database for it).
    SHA-256 (a server in FIPS mode refuses md5); tenants without a mailbox have none."""
    digests: dict[str, str] = {}
    for tenant in config.tenants:
        maxsecs = str(tenant.max_message_seconds)
        # "\t" sorts before every digit: the lines come in the order of their mailboxes.
        lines = sorted(f"{user.mailbox}\t{user.pin}\t{user.name}\t{ZONE}\t{maxsecs}"
                       for user in tenant.users if user.has_voicemail)
        if lines:
            digests[tenant.id] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return digests
