"""The cluster's mailbox table on a real PostgreSQL (cluster.mailboxes): it holds exactly the
configuration's mailboxes after each sync, in one transaction, and says what changed. A node
reading it through Asterisk: test_cluster_calls.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import needs_psycopg  # noqa: F401 - skips this module without psycopg
import pytest
from pgserver import PgServer

from asterisk_conf.mailbox_table import TABLE
from asterisk_conf.validate import load_config
from base.model import Config, StateDatabase, User
from callstate.postgres import PostgresSettings
from cluster.mailboxes import MailboxSync, MailboxSyncError, sync_mailboxes

pytest_plugins = ("pgserver",)

REPO = Path(__file__).resolve().parents[2]
FILES = [REPO / "examples" / "cluster" / "platform.yaml", REPO / "examples" / "acme.yaml",
         REPO / "examples" / "borealis.yaml"]


@pytest.fixture
def config(pg_database: PostgresSettings) -> Config:
    loaded = load_config([str(p) for p in FILES])
    state = StateDatabase("postgresql", host=pg_database.host, port=pg_database.port, name=pg_database.name,
                          user=pg_database.user)
    return replace(loaded, platform=replace(loaded.platform, state_database=state))


def table(pg_server: PgServer, name: str) -> dict[tuple[str, str], tuple[str, str, str, int]]:
    with pg_server.admin(name) as conn:
        rows = conn.execute(f"SELECT context, mailbox, password, fullname, tz, maxsecs FROM {TABLE}").fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in rows}


def acme_pin(config: Config) -> str:
    return next(t for t in config.tenants if t.id == "acme").users[0].pin


def with_users(config: Config, tenant_id: str, users: tuple[User, ...]) -> Config:
    tenants = tuple(replace(t, users=users) if t.id == tenant_id else t for t in config.tenants)
    return replace(config, tenants=tenants)


def test_the_table_follows_the_configuration(config: Config, pg_server: PgServer,
                                             pg_database: PostgresSettings) -> None:
    secret = {"postgresql": pg_database.password}.__getitem__
    first = sync_mailboxes(config, secret)
    expected = sum(1 for t in config.tenants for u in t.users if u.has_voicemail)
    assert first == MailboxSync(added=expected)
    rows = table(pg_server, pg_database.name)
    assert rows[("acme", "358401110001")][1:] == ("Anna Virtanen", "helsinki", 180)
    assert sync_mailboxes(config, secret) == MailboxSync()  # nothing to do
    # A row changed behind the deploy's back (a VoiceMailMain password change) is put right.
    with pg_server.admin(pg_database.name) as conn:
        conn.execute(f"UPDATE {TABLE} SET password = '999999' WHERE mailbox = '358401110001'")
    assert sync_mailboxes(config, secret) == MailboxSync(changed=1)
    assert table(pg_server, pg_database.name)[("acme", "358401110001")][0] == acme_pin(config)

    acme = next(t for t in config.tenants if t.id == "acme")
    anna, *others = acme.users
    pekka = replace(anna, id="pekka", name="Pekka Nieminen", number="+358401110099")
    changed = with_users(config, "acme", (replace(anna, pin="602817"), *others[1:], pekka))
    gone = int(others[0].has_voicemail)
    assert gone == 1
    # Before the nodes deploy: new and changed rows; the one gone is only counted.
    assert sync_mailboxes(changed, secret, remove=False) == MailboxSync(added=1, changed=1, to_remove=1)
    assert ("acme", others[0].mailbox) in table(pg_server, pg_database.name)
    assert sync_mailboxes(changed, secret) == MailboxSync(removed=1)
    rows = table(pg_server, pg_database.name)
    assert rows[("acme", "358401110001")][0] == "602817"
    assert ("acme", "358401110099") in rows and ("acme", others[0].mailbox) not in rows
    assert ("borealis", "358501220001") in rows  # other tenants untouched


def test_a_first_deploy_of_many_mailboxes_goes_in_batches(config: Config, pg_server: PgServer,
                                                         pg_database: PostgresSettings) -> None:
    acme = next(t for t in config.tenants if t.id == "acme")
    many = tuple(replace(acme.users[0], id=f"u{i}", number=f"+35840200{i:04d}") for i in range(2500))
    synced = sync_mailboxes(with_users(config, "acme", many), {"postgresql": pg_database.password}.__getitem__)
    assert synced is not None and synced.added == 2500 + sum(len(t.users) for t in config.tenants if t.id != "acme")
    assert len([k for k in table(pg_server, pg_database.name) if k[0] == "acme"]) == 2500


def test_an_unreachable_database_is_a_clear_error(config: Config, pg_database: PostgresSettings) -> None:
    with pytest.raises(MailboxSyncError, match="the mailbox table could not be written"):
        sync_mailboxes(config, {"postgresql": "wrong"}.__getitem__)
