"""Generated secrets (ARI, AMI, SIP device passwords), kept outside the YAML.

Operators never choose these, so there is no default password to forget to change. They are
created on first use and then reused, which keeps rendering a pure function of YAML + this file.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

_TOKEN_BYTES = 18  # 24 URL-safe characters: far beyond online guessing
POSTGRESQL_SECRET = "postgresql"  # the state database's password (the call state; a cluster's mailboxes)


class SecretStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._values: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._values is None:
            try:
                self._values = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self._values = {}
            else:
                if self.path.stat().st_mode & 0o077 and self.path.stat().st_uid == os.geteuid():
                    os.chmod(self.path, 0o600)  # left open by hand or by an older version
        return self._values

    def get(self, name: str) -> str:
        """The secret called `name`, generated and saved if it does not exist yet."""
        values = self._load()
        if name not in values:
            # URL-safe tokens contain only [A-Za-z0-9_-]: safe in every Asterisk file.
            values[name] = secrets.token_urlsafe(_TOKEN_BYTES)
            self._save(values)
        return values[name]

    def peek(self, name: str) -> str | None:
        """The secret called `name` if it exists; never generates one (for read-only checks)."""
        return self._load().get(name)

    def ensure(self, names: list[str]) -> dict[str, str]:
        """The secrets called `names`, generating every missing one and saving once."""
        values = self._load()
        missing = [name for name in names if name not in values]
        for name in missing:
            values[name] = secrets.token_urlsafe(_TOKEN_BYTES)
        if missing:
            self._save(values)
        return {name: values[name] for name in names}

    def values(self) -> list[str]:
        """Every stored secret, e.g. to mask them in output."""
        return list(self._load().values())

    def _save(self, values: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".secrets-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)
                json.dump(values, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


class MissingSecret(LookupError):
    """A read-only look found a secret not generated yet."""


class ReadOnlySecrets(SecretStore):
    """The same file, but a secret that does not exist yet is an error instead of being generated
    and saved: for checks that must change nothing (`vipbx doctor`, reading a backup's password)."""

    def get(self, name: str) -> str:
        value = self.peek(name)
        if value is None:
            raise MissingSecret(name)
        return value

    def ensure(self, names: list[str]) -> dict[str, str]:
        return {name: self.get(name) for name in names}

