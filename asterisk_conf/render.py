"""Validated model + generated secrets → the text of every Asterisk file we own.

Rendering is a pure function: the same Config and secrets give byte-identical files, so
`vipbx diff` shows only real changes and a deploy reloads only the modules whose files changed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from base.model import Config, Tenant, Trunk, User
from base.paths import CALL_RECORDINGS
from base.secrets import POSTGRESQL_SECRET, SecretStore

from . import (
    conffilters,
    dialplan_order,
    dialplan_patch,
    gcpause,
    mailbox_table,
    pjsip_patch,
)

# Output file → template. Order is the order files are written and checked.
FILES = (
    "pjsip.conf",
    "extensions.conf",
    "voicemail.conf",
    "http.conf",
    "ari.conf",
    "manager.conf",
    "features.conf",
    "modules.conf",
    "logger.conf",
    "rtp.conf",
    "indications.conf",
    "cdr.conf",
    "cdr_manager.conf",
    "cel.conf",
    "ccss.conf",
    "confbridge.conf",
    "prometheus.conf",
    "sorcery.conf",
    "extconfig.conf",
    "res_pgsql.conf",
)
# Files Asterisk looks for at start whose defaults are right for us: rendered empty.
QUIET_FILES = ("acl.conf", "udptl.conf", "pjproject.conf", "websocket_client.conf")

ARI_USER = "vipbx"
AMI_USER = "vipbx"
FAX_LISTEN_SECONDS = 5  # a calling fax sends its tone every 3.5 s
# The header the SIP edge of a cluster names a trunk in (and strips from everyone else's).
EDGE_TRUNK_HEADER = "X-Vipbx-Trunk"
AGI_KEY = "agi"  # the secret every AGI() URL of the dialplan carries (agi.server checks it)
# Asterisk's own metrics (res_prometheus) ask for this user and the secret `prometheus`.
PROMETHEUS_USER = "prometheus"
PROMETHEUS_SECRET = "prometheus"


def templates_dir() -> Path:
    """The repo's templates/ when run from a checkout, else the installed copy."""
    candidates = (
        Path(__file__).resolve().parent.parent / "templates",
        Path(sys.prefix) / "share" / "vipbx" / "templates",
    )
    for candidate in candidates:
        if (candidate / "pjsip.conf.j2").is_file():
            return candidate
    raise FileNotFoundError("vipbx templates not found (looked in: " + ", ".join(map(str, candidates)) + ")")


@dataclass(frozen=True, slots=True)  # slots: one per user, 100,000 on a large platform
class UserView:
    """What the templates need of a user, derived once so templates stay logic-free."""

    tenant: Tenant
    user: User
    mailbox: str  # User.mailbox, kept here for the templates
    dial: str  # Dial() string for everything that rings: devices and handset; '' when none
    hint: str  # the devices alone: their state says whether the user is in a call

    @classmethod
    def of(cls, tenant: Tenant, user: User, core: Trunk | None = None) -> "UserView":
        digits = user.mailbox  # the number's digits
        hint = "&".join([f"PJSIP/{device.id}" for device in user.devices])
        dial = hint
        if core is not None and user.rings_mobile:
            handset = handset_dial(core, user.number)
            dial = f"{hint}&{handset}" if hint else handset
        return cls(tenant, user, digits, dial, hint)


def handset_dial(core: Trunk, number: str) -> str:
    """The user's handset through the mobile core: the number behind the core's marking prefix."""
    return f"PJSIP/{conffilters.exten(core.handset_prefix + number)}@{conffilters.conf(core.name)}"


def user_views(config: Config) -> list[UserView]:
    core = config.platform.mobile_core
    return [UserView.of(tenant, user, core) for tenant in config.tenants for user in tenant.users]


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Asterisk files, not HTML: quoting is done by the conf filters
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(conffilters.FILTERS)
    env.globals.update(conffilters.GLOBALS)
    return env


def render_config(config: Config, secrets: SecretStore) -> dict[str, str]:
    """Every generated file name → its text."""
    with gcpause.paused():  # a view per user, a string per line (see gcpause)
        return _render_config(config, secrets)


def _render_config(config: Config, secrets: SecretStore) -> dict[str, str]:
    views = user_views(config)
    # One pass over the users, not one per tenant (that was tenants x users: quadratic).
    users_by_tenant: dict[str, list[UserView]] = {t.id: [] for t in config.tenants}
    for view in views:
        users_by_tenant[view.tenant.id].append(view)
    context = {
        "platform": config.platform,
        # A node of a cluster: SIP comes through the edge (docs/cluster.md).
        "edge": config.platform.sip_edge,
        "edge_trunk_header": EDGE_TRUNK_HEADER,
        "tenants": config.tenants,
        "users": views,
        "users_by_tenant": users_by_tenant,
        # Each distinct codec list quoted and joined once, not once per device.
        "codec_lists": {
            codecs: ",".join([conffilters.conf(codec) for codec in codecs])
            for codecs in {device.codecs for view in views for device in view.user.devices}
        },
        "call_recordings": CALL_RECORDINGS,
        # A cluster's nodes read their mailboxes from a table (asterisk_conf/mailbox_table.py).
        "mailbox_table": mailbox_table.TABLE if mailbox_table.in_table(config.platform) else "",
        "postgresql_password": secrets.get(POSTGRESQL_SECRET) if mailbox_table.in_table(config.platform) else "",
        "ari_user": ARI_USER,
        "prometheus_user": PROMETHEUS_USER,
        "ami_user": AMI_USER,
        "ari_password": secrets.get("ari"),
        "ami_secret": secrets.get("ami"),
        "prometheus_password": secrets.get(PROMETHEUS_SECRET),
        "agi_key": secrets.get(AGI_KEY),
        # How long a call to a user who receives faxes is listened to for a fax's calling tone.
        "fax_listen_seconds": FAX_LISTEN_SECONDS,
        # One batch: a first render of a large platform creates many secrets, saved once.
        "device_passwords": {
            name.removeprefix("device:"): value
            for name, value in secrets.ensure([f"device:{d.id}" for v in views for d in v.user.devices]).items()
        },
    }
    env = environment()
    files = {name: env.get_template(f"{name}.j2").render(context) for name in FILES}
    files["extensions.conf"] = dialplan_patch.stamp(dialplan_order.descending(files["extensions.conf"]))
    files["pjsip.conf"] = pjsip_patch.stamp(files["pjsip.conf"])
    quiet = env.get_template("quiet.conf.j2").render(context)
    files.update({name: quiet for name in QUIET_FILES})
    return files
