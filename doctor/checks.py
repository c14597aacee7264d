"""The checks of `vipbx doctor`: each looks at one part of a running platform the way a call
would use it, and says in one line what it found.

A check never changes anything (the spool check writes and removes a file of its own; the state
database is opened read-only, never migrated). Each returns a Finding; an exception inside one
is turned into a failure by the runner, so one broken part cannot hide the others.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

import httpx

from asterisk_conf.deploy import (
    DIALPLAN,
    RELOAD_TARGETS,
    RESTART_FILES,
    Generations,
    patched_generation,
    read_dir,
)
from asterisk_conf.render import AGI_KEY, AMI_USER, ARI_USER
from base.ami import AmiError, AmiSettings, ami_session
from base.model import LANGUAGES, Config, Listener
from base.paths import Paths
from base.secrets import MissingSecret, ReadOnlySecrets
from callstate.factory import DB_FILE_NAME
from callstate.schema import MIGRATIONS
from prompts import catalogue

Status = Literal["ok", "warn", "fail"]
DISK_FAIL = 0.05  # below this share free, a recording may already fail
DISK_WARN = 0.10
LOADED_SLACK = 2.0  # seconds between a generation's swap and the reload it triggered


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str


@dataclass
class Platform:
    """What the checks look at: the configuration, its home, and how to find Asterisk's pid."""

    config: Config
    paths: Paths
    asterisk_pid: Callable[[], int | None]
    # FILES rendered with the given (read-only) secrets, when FILES were given.
    rendered: Callable[[ReadOnlySecrets], dict[str, str]] | None = None

    @property
    def secrets(self) -> ReadOnlySecrets:
        """secrets.json, read only: a check never generates a secret (that is deploy's job)."""
        return ReadOnlySecrets(self.paths.secrets)

    def secret(self, name: str) -> str | None:
        """An existing secret; never generates one (a check must not change the home)."""
        try:
            return self.secrets.peek(name)
        except (OSError, ValueError):
            return None


def local(listener: Listener) -> str:
    """Where to reach a listener from this host: a wildcard bind is reached on loopback."""
    host = "127.0.0.1" if listener.bind in ("0.0.0.0", "") else "::1" if listener.bind == "::" else listener.bind
    return f"[{host}]" if ":" in host else host


# --- Asterisk ---------------------------------------------------------------------------------

async def asterisk(p: Platform) -> Finding:
    pid = p.asterisk_pid()
    if pid is None:
        return Finding("asterisk", "fail", "not running (start it: vipbx asterisk start)")
    secret = p.secret("ami")
    if secret is None:
        return Finding("asterisk", "fail", f"running (pid {pid}) but never deployed: no AMI secret")
    ami = p.config.platform.ami
    settings = AmiSettings(local(ami).strip("[]"), ami.port, AMI_USER, secret)
    try:
        async with ami_session(settings, timeout=5, action_timeout=5) as session:
            await session.action("Ping")
    except AmiError as exc:
        return Finding("asterisk", "fail", f"running (pid {pid}) but AMI does not answer (deploys cannot reload): {exc}")
    try:
        start, reload = await _start_and_reload(p)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return Finding("asterisk", "fail", f"running (pid {pid}) but ARI does not say when it started: {exc}")
    generation = Generations(p.paths).target(p.paths.current)
    if generation is None:
        return Finding("asterisk", "fail", f"running (pid {pid}) with no configuration deployed (vipbx deploy)")
    # Asterisk read the live files when it last started or reloaded; a generation swapped in
    # after that (deploy --no-reload, a refused restart) is not what it runs.
    now = time.time()
    start, loaded_ago = now - start, now - max(start, reload)
    swapped_ago = now - os.lstat(p.paths.current).st_mtime
    if loaded_ago > swapped_ago + LOADED_SLACK and await asyncio.to_thread(_needed_a_reload, p.paths):
        return Finding("asterisk", "fail", f"running (pid {pid}) but has not loaded generation {generation.name} "
                       f"(deployed {_ago(swapped_ago)} ago, last start or reload {_ago(loaded_ago)} ago): "
                       "vipbx deploy, or restart Asterisk")
    return Finding("asterisk", "ok", f"running (pid {pid}), up {_ago(start)}, generation {generation.name} loaded")


async def _start_and_reload(p: Platform) -> tuple[float, float]:
    """When Asterisk started and last reloaded (any module), as epoch seconds. From ARI, whose
    times carry their zone (AMI's CoreStatus gives Asterisk's local time without one, and its
    `Command` is not granted to vipbx's AMI account)."""
    http = p.config.platform.http
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        answer = await client.get(f"http://{local(http)}:{http.port}/ari/asterisk/info",
                                  params={"only": "status"}, auth=(ARI_USER, p.secret("ari") or ""))
    answer.raise_for_status()
    status = answer.json()["status"]
    start = _epoch(status["startup_time"])
    return start, _epoch(status.get("last_reload_time") or status["startup_time"])


def _needed_a_reload(paths: Paths) -> bool:
    """Whether the live generation differs from the one before it in a file Asterisk re-reads on
    a reload (a change to e.g. cel.conf alone is deployed without one: nothing to miss)."""
    generations = Generations(paths)
    before = generations.target(paths.previous)
    if before is None:
        return True
    changed = set(generations.changed_files(generations.live(), against=read_dir(before)))
    live = generations.target(paths.current)
    if live is not None and patched_generation(paths) == live.name:
        changed.discard(DIALPLAN)  # went in through AMI, without a reload
    return any(name in RELOAD_TARGETS or name in RESTART_FILES for name in changed)


def _epoch(text: str) -> float:
    """ARI's "2026-12-04T17:45:00.123+0000"."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


async def configuration(p: Platform) -> Finding:
    """The YAML files given, rendered, against the live generation."""
    if p.rendered is None:
        return Finding("configuration", "ok", "not compared (no FILES given)")
    generations = Generations(p.paths)
    try:
        rendered = await asyncio.to_thread(p.rendered, p.secrets)
    except MissingSecret as exc:
        return Finding("configuration", "warn", f"not compared: the secret {exc} does not exist yet "
                       "(the YAML has something new that vipbx deploy has not rendered)")
    changed = generations.changed_files(rendered)
    if changed:
        return Finding("configuration", "warn", f"the YAML files differ from the live generation in "
                       f"{', '.join(changed)}: vipbx diff, then vipbx deploy")
    return Finding("configuration", "ok", "the YAML files are what is deployed")


# --- the service --------------------------------------------------------------------------------

async def ari(p: Platform) -> Finding:
    app = p.config.platform.ari_app
    secret = p.secret("ari")
    if secret is None:
        return Finding("ari", "fail", "no ARI secret: never deployed")
    http = p.config.platform.http
    url = f"http://{local(http)}:{http.port}/ari/applications/{app}"
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            answer = await client.get(url, auth=(ARI_USER, secret))
    except httpx.HTTPError as exc:
        return Finding("ari", "fail", f"Asterisk's HTTP server does not answer at {http.bind}:{http.port}: {exc}")
    if answer.status_code == 404:
        return Finding("ari", "fail", f"application {app} is not registered: vipbx serve is not running or not connected")
    if answer.status_code != 200:
        return Finding("ari", "fail", f"ARI answered {answer.status_code} for application {app}")
    return Finding("ari", "ok", f"application {app} registered")


async def fastagi(p: Platform) -> Finding:
    """The `ping` script, as Asterisk would ask it: the key, then the answer it sets."""
    agi = p.config.platform.agi
    key = p.secret(AGI_KEY)
    if key is None:
        return Finding("fastagi", "fail", "no AGI key: never deployed")
    host = local(agi).strip("[]")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, agi.port), 5)
    except (OSError, TimeoutError) as exc:
        return Finding("fastagi", "fail", f"nothing listens at {agi.bind}:{agi.port}: {exc or 'timeout'}")
    try:
        writer.write((f"agi_network: yes\nagi_network_script: ping\nagi_request: agi://{host}/ping\n"
                      f"agi_arg_1: {key}\n\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        if not line.startswith(b"SET VARIABLE VIPBX_PONG"):
            return Finding("fastagi", "fail", f"{agi.bind}:{agi.port} did not answer the ping ({line[:40]!r})")
        writer.write(b"200 result=1\n")
        await writer.drain()
    finally:
        writer.close()
    return Finding("fastagi", "ok", f"answers at {agi.bind}:{agi.port}")


async def _get(listener: Listener, path: str) -> httpx.Response | str:
    """The answer of one of our HTTP listeners, or why there was none."""
    try:
        async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
            return await client.get(f"http://{local(listener)}:{listener.port}{path}")
    except httpx.HTTPError as exc:
        return f"no answer at {listener.bind}:{listener.port}: {exc or type(exc).__name__}"


async def metrics_endpoint(p: Platform) -> Finding:
    settings = p.config.platform.metrics
    if not settings.enabled:
        return Finding("metrics", "ok", "disabled (platform.metrics.enabled: false)")
    where = f"{settings.listener.bind}:{settings.listener.port}"
    answer = await _get(settings.listener, "/metrics")
    if isinstance(answer, str):
        return Finding("metrics", "fail", answer)
    if answer.status_code != 200 or "vipbx_ari_connected" not in answer.text:
        return Finding("metrics", "fail", f"{where} answered {answer.status_code}, not vipbx's metrics")
    return Finding("metrics", "ok", f"served at {where}/metrics")


async def web(p: Platform) -> Finding:
    settings = p.config.platform.web
    if not settings.enabled:
        return Finding("web", "ok", "disabled (platform.web.enabled: false)")
    answer = await _get(settings.listener, "/login")
    if isinstance(answer, str):
        return Finding("web", "fail", f"the home page: {answer}")
    if answer.status_code >= 500:
        return Finding("web", "fail", f"the home page answered {answer.status_code}")
    return Finding("web", "ok", f"the home page answers at {settings.listener.bind}:{settings.listener.port}")


# --- storage ------------------------------------------------------------------------------------

async def database(p: Platform) -> Finding:
    settings = p.config.platform.state_database
    latest = MIGRATIONS[-1].version
    try:
        version = await asyncio.to_thread(_schema_version, p)
    except Exception as exc:  # noqa: BLE001 - any failure to read it is the finding
        return Finding("database", "fail", f"{settings.backend}: {exc}")
    if version is None:
        return Finding("database", "warn", f"{settings.backend}: no schema yet (vipbx serve creates it)")
    if version > latest:
        return Finding("database", "fail", f"{settings.backend}: schema {version} is newer than this vipbx ({latest})")
    if version < latest:
        return Finding("database", "warn", f"{settings.backend}: schema {version}, vipbx serve migrates it to {latest}")
    return Finding("database", "ok", f"{settings.backend}: reachable, schema {version}")


def _schema_version(p: Platform) -> int | None:
    settings = p.config.platform.state_database
    if settings.backend == "sqlite":
        path = p.paths.home / DB_FILE_NAME
        if not path.exists():
            return None
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            (version,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        finally:
            conn.close()
        return None if version is None else int(version)
    from callstate.factory import open_postgres

    db = open_postgres(settings, p.secrets.get, migrate=False)
    try:
        row = db.read(lambda tx: tx.one("SELECT MAX(version) FROM schema_version"))
    finally:
        db.close()
    return None if row is None or row[0] is None else int(row[0])


async def spool(p: Platform) -> Finding:
    folder = p.paths.spool
    if not folder.is_dir():
        return Finding("spool", "fail", f"{folder} does not exist (vipbx asterisk start creates it)")
    try:
        fd, name = tempfile.mkstemp(prefix=".doctor-", dir=folder)
        os.write(fd, b"x")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return Finding("spool", "fail", f"{folder} is not writable: {exc.strerror or exc}")
    return Finding("spool", "ok", f"{folder} writable")


async def prompts(p: Platform) -> Finding:
    languages = sorted({p.config.platform.default_language}
                       | {user.language for tenant in p.config.tenants for user in tenant.users
                          if user.language in LANGUAGES})
    missing = [f"{lang}/{name}" for lang in languages for name in catalogue.names()
               if not (p.paths.sounds / lang / f"{name}.wav").is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        return Finding("prompts", "fail", f"{len(missing)} missing ({shown}): vipbx prompts build")
    return Finding("prompts", "ok", f"all {len(catalogue.names())} prompts present in {', '.join(languages)}")


async def disk(p: Platform) -> Finding:
    worst: tuple[float, str] | None = None
    for name, path in (("home", p.paths.home), ("spool", p.paths.spool)):
        if not path.exists():
            continue
        usage = shutil.disk_usage(path)
        share = usage.free / usage.total if usage.total else 0.0
        if worst is None or share < worst[0]:
            worst = (share, f"{name} ({path}): {usage.free // 2**20} MiB free, {share:.0%}")
    if worst is None:
        return Finding("disk", "fail", f"{p.paths.home} does not exist")
    share, detail = worst
    status: Status = "fail" if share < DISK_FAIL else "warn" if share < DISK_WARN else "ok"
    return Finding("disk", status, detail)


# --- gateways -----------------------------------------------------------------------------------

async def gateways(p: Platform) -> Finding:
    notifications = p.config.platform.notifications
    reached: list[str] = []
    problems: list[str] = []
    if notifications.smtp_host:
        where = f"SMTP {notifications.smtp_host}:{notifications.smtp_port}"
        banner = await _first_line(notifications.smtp_host, notifications.smtp_port)
        (reached if banner.startswith("220") else problems).append(where if banner.startswith("220")
                                                                   else f"{where}: {banner or 'no greeting'}")
    if notifications.sms_url:
        url = urlsplit(notifications.sms_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        where = f"SMS gateway {url.hostname}:{port}"
        error = await _connects(url.hostname or "", port)
        (problems if error else reached).append(f"{where}: {error}" if error else where)
    if problems:
        return Finding("gateways", "fail", "; ".join(problems))
    if not reached:
        return Finding("gateways", "ok", "none configured (no SMS or e-mail notifications)")
    return Finding("gateways", "ok", "reachable: " + ", ".join(reached))


async def _connects(host: str, port: int) -> str:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError) as exc:
        return str(exc) or "timeout"
    writer.close()
    return ""


async def _first_line(host: str, port: int) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError) as exc:
        return f"cannot connect: {exc or 'timeout'}"
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.write(b"QUIT\r\n")  # polite: the relay need not wait for a timeout
        return line.decode("ascii", "replace").strip()
    except (OSError, TimeoutError):
        return ""
    finally:
        writer.close()


ALL = (asterisk, configuration, ari, fastagi, database, spool, prompts, disk, gateways, metrics_endpoint, web)

