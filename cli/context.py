"""What every `vipbx` command group shares: the state folder, loading the YAML, reaching AMI, and
naming one user on the command line (`user@tenant` or an E.164 number)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from asterisk_conf.errors import ConfigError
from asterisk_conf.render import AMI_USER
from asterisk_conf.validate import ParseCache, load_config
from base.ami import AmiSettings
from base.model import Config, TenantUser
from base.paths import Paths
from base.secrets import SecretStore
from callstate import CallStateService, SettingsError, StorageError, open_service


class Context:
    """The root group's object: `ctx.obj` of every command."""

    def __init__(self, home: Path) -> None:
        self.paths = Paths.resolve(home)
        self._seen: tuple[int, int] | None = None
        self._values: list[str] = []

    def secret_values(self) -> list[str]:
        """Every value of secrets.json, re-read when the file changes (for the log filter)."""
        try:
            st = self.paths.secrets.stat()
            if (st.st_mtime_ns, st.st_size) != self._seen:
                self._values = SecretStore(self.paths.secrets).values()
                self._seen = (st.st_mtime_ns, st.st_size)
        except (OSError, ValueError):
            pass  # none yet, or unreadable for this account: nothing of it can be logged either
        return self._values

    @property
    def home(self) -> Path:
        return self.paths.home

    @property
    def secrets(self) -> SecretStore:
        return SecretStore(self.paths.secrets)


def paths_of(ctx: click.Context | None) -> Paths:
    """The root group's --home when a group runs under `vipbx`, else VIPBX_HOME, else the default
    (groups are also used on their own, in tests)."""
    root = ctx.find_root().obj if ctx is not None else None
    return root.paths if isinstance(root, Context) else Paths.resolve()


def load(files: tuple[str, ...], cache_in: Paths | None = None) -> Config:
    """The validated configuration of FILES, or a ClickException listing every problem. With
    `cache_in` (a home that exists), files parsed by an earlier command are not parsed again."""
    cache = ParseCache(cache_in.yaml_cache) if cache_in is not None and cache_in.home.is_dir() else None
    try:
        return load_config(files, cache)
    except ConfigError as exc:
        raise click.ClickException(f"the configuration has {len(exc.problems)} problem(s):\n{exc}") from exc


def ami_settings(config: Config, secret: str) -> AmiSettings:
    host = config.platform.ami.bind
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return AmiSettings(host, config.platform.ami.port, AMI_USER, secret)


def ari_url(config: Config, host: str | None = None) -> str:
    """ARI's base URL: at `host` (a cluster node's address) or where http.conf binds it."""
    http = config.platform.http
    host = host or ("127.0.0.1" if http.bind in ("0.0.0.0", "::") else http.bind)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{http.port}/ari"


def deployed_ami(paths: Paths, config: Config) -> AmiSettings | None:
    """AMI of the PBX, or None when it has never been deployed (no secrets yet): reading must not
    generate a secret."""
    try:
        secret = json.loads(paths.secrets.read_text(encoding="utf-8")).get("ami")
    except (OSError, ValueError):
        return None
    return ami_settings(config, secret) if secret else None


def operator_name() -> str:
    """Who changed a setting from the command line, for the audit trail."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "operator"


@dataclass(frozen=True)
class Selected:
    """One user named on the command line, with what a command needs around them."""

    paths: Paths
    config: Config
    who: TenantUser

    def secrets(self) -> SecretStore:
        return SecretStore(self.paths.secrets)


def select_user(ctx: click.Context, who: str, files: tuple[str, ...]) -> Selected:
    """`user@tenant` or the user's E.164 number (the '+' may be left out)."""
    config = load(files)
    paths = paths_of(ctx)
    if "@" in who:
        user_id, _, tenant_id = who.partition("@")
        found = config.find_user(tenant_id, user_id)
        if found is None:
            raise click.ClickException(f"no user {user_id!r} in tenant {tenant_id!r}")
        return Selected(paths, config, found)
    number = who if who.startswith("+") else "+" + who
    owner = config.find_number(number)
    if owner is None:
        raise click.ClickException(f"no user has the number {number} (give user@tenant or an E.164 number)")
    return Selected(paths, config, owner)


@contextmanager
def user_service(ctx: click.Context, who: str, files: tuple[str, ...]) -> Iterator[tuple[Selected, CallStateService]]:
    """The user named on the command line and an open call-state service (SQLite or PostgreSQL,
    as configured); the service's refusals and storage errors become the command's error."""
    selected = select_user(ctx, who, files)
    try:
        service = open_service(selected.config, selected.paths.home, selected.secrets().get)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield selected, service
    except (SettingsError, StorageError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        service.close()
