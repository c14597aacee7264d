"""Every path under VIPBX_HOME, in one place.

The Asterisk instance sees the same folders (asterisk_host bind-mounts them), so a path written
here is the path app_voicemail, the ARI app and the CLI all use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path("/var/lib/vipbx")
HOME_ENV = "VIPBX_HOME"
# Below Asterisk's spool (`${ASTSPOOLDIR}` in the dialplan): the recorded calls.
CALL_RECORDINGS = "call-recordings"


@dataclass(frozen=True)
class Paths:
    home: Path

    @classmethod
    def resolve(cls, home: str | Path | None = None) -> Paths:
        """`home`, else $VIPBX_HOME, else the documented default; always absolute."""
        return cls(Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).absolute())

    @property
    def secrets(self) -> Path:
        """The generated passwords (AMI, ARI, devices, PostgreSQL, gateways)."""
        return self.home / "secrets.json"

    # --- configuration generations (asterisk_conf.deploy) ---------------------------
    @property
    def etc(self) -> Path:
        return self.home / "etc"

    @property
    def generations(self) -> Path:
        return self.etc / "generations"

    @property
    def current(self) -> Path:
        """Symlink to the live generation: the folder the PBX's Asterisk reads."""
        return self.etc / "current"

    @property
    def previous(self) -> Path:
        return self.etc / "previous"

    # --- the Asterisk instances (asterisk_host) -------------------------------------
    @property
    def pbx(self) -> Path:
        return self.home / "pbx"

    @property
    def phone(self) -> Path:
        """The test phone's own Asterisk instance."""
        return self.home / "phone"

    @property
    def spool(self) -> Path:
        """Asterisk's spool: app_voicemail's mailboxes live in `spool/voicemail`."""
        return self.pbx / "spool"

    @property
    def recordings(self) -> Path:
        """ARI recordings (`<astspooldir>/recording`) before they are delivered to a mailbox."""
        return self.spool / "recording"

    @property
    def fax(self) -> Path:
        """Received faxes: ReceiveFax writes `<unique id>.tif` here (Asterisk makes no folders, so
        asterisk_host makes this one); the application keeps each fax's PDF in `<tenant>/<user>/`."""
        return self.spool / "fax"

    def fax_pdf(self, tenant_id: str, user_id: str, fax_id: int) -> Path:
        return fax_pdf(self.fax, tenant_id, user_id, fax_id)

    @property
    def call_recordings(self) -> Path:
        """Recorded calls (MixMonitor): `<tenant>/<user>/<id>.wav`, see web/recording_service.py."""
        return self.spool / CALL_RECORDINGS

    @property
    def sounds(self) -> Path:
        """The prompt catalogue, shared with the PBX."""
        return self.home / "sounds"

    # --- the service's own state ----------------------------------------------------
    @property
    def cluster(self) -> Path:
        """A cluster's placement and its SIP edge's files (docs/cluster.md)."""
        return self.home / "cluster"

    @property
    def yaml_cache(self) -> Path:
        """YAML files parsed before, by digest (asterisk_conf.yamlsource.ParseCache): a deploy
        of a large platform does not parse its unchanged files again."""
        return self.home / "cache" / "yaml"

    @property
    def state_db(self) -> Path:
        """The call-state database when it is SQLite (the default)."""
        return self.home / "state.sqlite3"

    @property
    def outbox_db(self) -> Path:
        """The durable queue of SMS / e-mail notices."""
        return self.home / "outbox.sqlite3"


def fax_pdf(fax_dir: Path, tenant_id: str, user_id: str, fax_id: int) -> Path:
    """A received fax's PDF (ids are the YAML's safe identifiers and a row number)."""
    return fax_dir / tenant_id / user_id / f"{int(fax_id)}.pdf"
