"""`vipbx doctor`: is the running platform healthy, part by part."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from asterisk_conf.render import render_config
from doctor import Platform, examine

from .args import config_files
from .asterisk import running_pid
from .context import Context, load

MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


@click.command()
@config_files()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check, for scripts and monitoring.")
@click.option("--skip-compare", is_flag=True,
              help="Do not render FILES to compare them with the live generation (large platforms).")
@click.pass_obj
def doctor(obj: Context, files: tuple[str, ...], as_json: bool, skip_compare: bool) -> None:
    """Check the running platform end to end and say what is wrong, one line per part.

    Asterisk running with the live generation loaded; FILES the same as what is deployed; the ARI
    application registered; FastAGI answering its ping; the call-state database reachable and
    its schema version; the spool writable; every prompt present; the SMS and e-mail gateways
    reachable; disk space; the metrics endpoint and the home page answering.

    Changes nothing. Exit status 1 when a check fails (a warning alone exits 0).
    """
    config = load(files)
    platform = Platform(config, obj.paths, lambda: running_pid(obj.paths),
                        None if skip_compare else lambda secrets: render_config(config, secrets))
    findings = asyncio.run(examine(platform))
    width = max(len(f.check) for f in findings)
    for finding in findings:
        if as_json:
            click.echo(json.dumps({"check": finding.check, "status": finding.status, "detail": finding.detail}))
        else:
            click.echo(f"{MARK[finding.status]}  {finding.check:<{width}}  {finding.detail}")
    if any(f.status == "fail" for f in findings):
        sys.exit(1)
