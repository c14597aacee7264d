"""Privilege and exposure against the real product PBX: Asterisk does not run as root, its AMI user
may do only what the application needs, and its files are closed to other accounts."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import Pbx
from support import ami_settings

from base.ami import AmiError, ami_session

pytestmark = pytest.mark.asterisk


def status_ids(pid: int) -> dict[str, list[int]]:
    """Real, effective, saved and file-system ids of a process, from /proc."""
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = [int(v) for v in value.split()]
    return ids


def test_asterisk_runs_as_its_own_unprivileged_account(pbx: Pbx) -> None:
    pid = pbx.instance.pid
    assert pid is not None
    ids = status_ids(pid)
    account = pbx.instance.runtime.account
    assert account is not None
    assert ids["Uid"] == [account.uid] * 4 and account.uid != 0
    assert ids["Gid"] == [account.gid] * 4 and account.gid != 0
    # Every thread, not only the main one.
    for task in Path(f"/proc/{pid}/task").iterdir():
        assert status_ids(int(task.name))["Uid"][1] == account.uid


def test_asterisk_files_are_closed_to_other_accounts(pbx: Pbx) -> None:
    account = pbx.instance.runtime.account
    assert account is not None
    home = pbx.instance.home
    spool = pbx.instance.spool_dir
    st = spool.stat()
    assert (st.st_uid, st.st_gid) == (account.uid, account.gid)
    assert stat.S_IMODE(st.st_mode) & 0o007 == 0
    for path in (home, pbx.instance.log_dir, pbx.instance.db_dir, pbx.instance.conf_path):
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, path
    live = pbx.home / "etc" / "current"
    for path in live.iterdir():  # the rendered files hold every secret
        mode = path.stat().st_mode
        assert stat.S_IMODE(mode) & 0o007 == 0 and path.stat().st_gid == account.gid, path
    # What Asterisk wrote itself, e.g. its log, is its own and not for others.
    log = pbx.instance.log_path
    if log.exists():
        assert log.stat().st_uid == account.uid and stat.S_IMODE(log.stat().st_mode) & 0o007 == 0


@pytest.mark.parametrize("action, fields", [
    ("Originate", {"Channel": "Local/s@vipbx-public", "Application": "Wait", "Data": "1"}),
    ("Command", {"Command": "core show version"}),
    ("ShowDialPlan", {"Context": "vipbx-call-user"}),  # would show the FastAGI key
])
async def test_ami_refuses_actions_outside_the_granted_classes(pbx: Pbx, action: str, fields: dict) -> None:
    async with ami_session(ami_settings(pbx)) as session:
        with pytest.raises(AmiError, match="[Pp]ermission denied"):
            await session.action(action, **fields)


async def test_ami_grants_what_the_application_uses(pbx: Pbx) -> None:
    async with ami_session(ami_settings(pbx)) as session:
        await session.action("Reload", Module="features")  # deploy
        await session.action("Setvar", Variable="GLOBAL(VIPBX_E2E_EXPOSURE)", Value="1")  # presence
        reply = await session.action("Getvar", Variable="GLOBAL(VIPBX_E2E_EXPOSURE)")
        assert reply.get("Value") == "1"
        await session.action("DBPut", Family="vipbx-e2e", Key="k", Val="v")  # astdb (PIN lockout)
        await session.action("DBDel", Family="vipbx-e2e", Key="k")


def test_a_root_process_reads_what_the_pbx_wrote(pbx: Pbx) -> None:
    # The application runs as root beside Asterisk: nothing it needs may be closed to it.
    assert os.geteuid() == 0
    assert pbx.instance.cli("core show uptime")


async def test_a_debug_run_of_the_service_logs_no_secret(pbx: Pbx) -> None:
    """The service as `vipbx serve` runs it, at DEBUG through the command line's log handler:
    ARI (REST and events), a deploy's AMI reload, an MWI refresh and a FastAGI request with its
    key. Not one value of secrets.json in the output."""
    import asyncio
    import io
    import logging

    from support import start_service

    from asterisk_conf.render import AGI_KEY
    from base import logsetup
    from vmstore.mwi import refresh_mwi

    stream = io.StringIO()
    handler = logsetup.configure(True, pbx.secrets.values, stream)
    try:
        service, _ = start_service(pbx, pbx.config)
        task = asyncio.create_task(service.run())
        try:
            await service.client.wait_connected(20)
            await service.client.get("/asterisk/info")
            async with ami_session(ami_settings(pbx)) as session:
                await session.action("Reload", Module="features")
            await refresh_mwi(ami_settings(pbx), "acme", "358401110001")
            agi = pbx.config.platform.agi
            reader, writer = await asyncio.open_connection(agi.bind, agi.port)
            env = (f"agi_network: yes\nagi_network_script: ping\nagi_request: agi://{agi.bind}/ping\n"
                   f"agi_arg_1: {pbx.secrets.get(AGI_KEY)}\n\n")
            writer.write(env.encode())
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"SET VARIABLE VIPBX_PONG")
            writer.write(b"200 result=1\n")
            await writer.drain()
            await asyncio.wait_for(reader.read(), 5)
            writer.close()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "DEBUG" in text and "ARI events connected" in text
    leaked = [name for name, value in json.loads(pbx.secrets.path.read_text()).items() if value in text]
    assert not leaked, leaked
