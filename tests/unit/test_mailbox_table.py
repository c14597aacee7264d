"""Where a node's app_voicemail reads its mailboxes (asterisk_conf.mailbox_table): a cluster on
PostgreSQL reads a table, anything else voicemail.conf; what the rendered files say in each case.
The table itself on a real PostgreSQL: tests/e2e/test_mailbox_table_postgres.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from asterisk_conf.mailbox_table import TABLE, in_table, mailbox_rows
from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from base.model import Config, StateDatabase
from base.secrets import SecretStore

REPO = Path(__file__).resolve().parents[2]
CLUSTER = [REPO / "examples" / "cluster" / "platform.yaml", REPO / "examples" / "acme.yaml",
           REPO / "examples" / "borealis.yaml"]
SINGLE = [REPO / "examples" / "platform.yaml", REPO / "examples" / "acme.yaml", REPO / "examples" / "borealis.yaml"]
ON_POSTGRESQL = StateDatabase("postgresql", host="10.0.0.5", port=5433, name="pbx", user="vipbx")


def on_postgresql(config: Config) -> Config:
    return replace(config, platform=replace(config.platform, state_database=ON_POSTGRESQL))


def test_only_a_cluster_on_postgresql_reads_its_mailboxes_from_the_table() -> None:
    cluster, single = load_config([str(p) for p in CLUSTER]), load_config([str(p) for p in SINGLE])
    assert not in_table(cluster.platform)  # the example cluster keeps its call state in SQLite
    assert in_table(on_postgresql(cluster).platform)
    assert not in_table(single.platform) and not in_table(on_postgresql(single).platform)


def test_a_row_for_each_user_with_voicemail_as_voicemail_conf_lists_them() -> None:
    config = load_config([str(p) for p in CLUSTER])
    rows = mailbox_rows(config)
    anna = rows[("acme", "358401110001")]
    assert (anna.fullname, anna.tz, anna.maxsecs) == ("Anna Virtanen", "helsinki", 180)
    with_voicemail = [(t.id, u.mailbox) for t in config.tenants for u in t.users if u.has_voicemail]
    assert sorted(rows) == sorted(with_voicemail)
    assert len(with_voicemail) < sum(len(t.users) for t in config.tenants)  # "No voicemail" users have none


def test_the_table_mode_renders_no_mailbox_into_voicemail_conf_and_points_asterisk_at_the_table(
        tmp_path: Path) -> None:
    secrets = SecretStore(tmp_path / "secrets.json")
    config = on_postgresql(load_config([str(p) for p in CLUSTER]))
    files = render_config(config, secrets)
    assert "=> " not in files["voicemail.conf"].split("[zonemessages]")[1].split("\n", 2)[2]
    assert "358401110001" not in files["voicemail.conf"]
    assert f"voicemail => pgsql,pbx,{TABLE}" in files["extconfig.conf"]
    pgsql = files["res_pgsql.conf"]
    assert "dbhost=10.0.0.5" in pgsql and "dbport=5433" in pgsql and "dbname=pbx" in pgsql
    assert f"dbpass={secrets.get('postgresql')}" in pgsql
    assert "load => res_config_pgsql.so" in files["modules.conf"]


def test_the_file_mode_keeps_every_mailbox_in_voicemail_conf_and_makes_no_database_password(
        tmp_path: Path) -> None:
    secrets = SecretStore(tmp_path / "secrets.json")
    files = render_config(load_config([str(p) for p in CLUSTER]), secrets)
    assert "358401110001 => " in files["voicemail.conf"]
    assert "voicemail =>" not in files["extconfig.conf"] and "dbpass" not in files["res_pgsql.conf"]
    assert "res_config_pgsql" not in files["modules.conf"]
    assert not (tmp_path / "secrets.json").exists() or "postgresql" not in (tmp_path / "secrets.json").read_text()
