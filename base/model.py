"""The validated tenant model: what the YAML means once every value has been checked.

Everything here is immutable and already safe to put into Asterisk configuration: identifiers,
numbers and addresses match strict allow-lists (see `asterisk_conf/values.py` and `asterisk_conf/schema/`), free text has been screened.
Templates therefore only loop and quote; they never decide.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from base.numbers import to_e164
from base.outbound import OutboundPolicy

NO_VOICEMAIL_GROUP = "No voicemail"
LANGUAGES = ("fi", "sv", "en")
# A tenant's `call_recording`: whether its users may have their calls recorded.
RECORDING_ALLOWED = "allowed"
RECORDING_OFF = "forbidden"
RECORDING_CHOICES = (RECORDING_ALLOWED, RECORDING_OFF)
# A user's `mobile`: whether calls to the user also ring their handset through the mobile core.
MOBILE_OFF = "off"
MOBILE_WITH_DEVICES = "ring_with_devices"
MOBILE_CHOICES = (MOBILE_OFF, MOBILE_WITH_DEVICES)


@dataclass(frozen=True)
class Listener:
    """A TCP/UDP listener of Asterisk or of our own services.

    A control listener (ARI's HTTP, AMI, FastAGI) off loopback needs `allow_remote` and the
    networks it admits in `permit` (see docs/security.md); validation refuses anything else.
    """

    bind: str
    port: int
    allow_remote: bool = False
    permit: tuple[str, ...] = ()  # networks (CIDR) admitted besides loopback

    @property
    def loopback_only(self) -> bool:
        return ipaddress.ip_address(self.bind).is_loopback


@dataclass(frozen=True)
class FeatureCodes:
    immediate_forward: str = "987"
    call_waiting_on: str = "*43#"
    call_waiting_off: str = "#43#"
    call_waiting_status: str = "*#43#"
    blind_transfer: str = "*1"


@dataclass(frozen=True)
class Trunk:
    """A SIP trunk towards a mobile core, a fixed network or an interconnect (docs/configuration.md).

    Only a `trusted` trunk's caller ID names a user (voicemail, activity number, feature codes);
    from any other the PIN is always asked and codes are refused. A national number arriving on
    the trunk is read with its `country_code`. A `mobile_core` trunk also reaches users' handsets:
    a call to the handset carries `handset_prefix` before the number and/or the SIP header
    `handset_header`, so that the core terminates it instead of routing it back to the PBX."""

    name: str
    host: str
    port: int = 5060
    # Source addresses (IP or CIDR) whose INVITEs are taken as this trunk's calls.
    match: tuple[str, ...] = ()
    codecs: tuple[str, ...] = ("alaw", "ulaw")
    trusted: bool = False
    country_code: str = "358"
    outbound: bool = False  # calls to outside numbers leave through this trunk (at most one)
    mobile_core: bool = False
    handset_prefix: str = ""
    handset_header: tuple[str, str] | None = None  # (name, value)


# The single `carrier` of older configurations: one trusted, outbound trunk of this name.
CARRIER = "carrier"


def Carrier(host: str, port: int = 5060, match: tuple[str, ...] = (),
            codecs: tuple[str, ...] = ("alaw", "ulaw"), country_code: str = "358") -> Trunk:
    """The trunk that the `platform.carrier` key means: trusted, carrying outbound calls."""
    return Trunk(CARRIER, host, port, match, codecs, trusted=True, country_code=country_code,
                 outbound=True)


@dataclass(frozen=True)
class Notifications:
    """New-voicemail notifications (see docs/notifications.md). Passwords are generated secrets
    (`kannel`, `smtp` in secrets.json), never YAML."""

    timezone: str = "Europe/Helsinki"
    retry_backoff: tuple[int, ...] = (10, 60, 300, 1800)
    retry_max_attempts: int = 8
    sms_url: str | None = None  # Kannel sendsms URL; None: no SMS
    sms_username: str | None = None
    sms_sender: str | None = None
    sms_timeout: int = 10
    smtp_host: str | None = None  # None: no e-mail
    smtp_port: int = 25
    smtp_sender: str | None = None
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_timeout: int = 30
    smtp_max_attachment_bytes: int = 10 * 1024 * 1024


STATE_BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StateDatabase:
    """Where the call-state service keeps per-user state (see docs/callstate.md). SQLite is a file
    in VIPBX_HOME; PostgreSQL is shared by several Asterisk nodes. Its password is the generated
    secret `postgresql` in secrets.json, never YAML."""

    backend: str = "sqlite"
    host: str = "127.0.0.1"
    port: int = 5432
    name: str = "vipbx"
    user: str = "vipbx"
    connect_timeout: int = 5  # seconds
    statement_timeout: int = 10  # seconds; PostgreSQL cancels a statement that runs longer
    lock_timeout: int = 5  # seconds; ... or that waits longer for a lock


@dataclass(frozen=True)
class Node:
    """An Asterisk node of a cluster (docs/cluster.md): the edge sends its tenants' requests to
    `address`:`port`. A `standby` node takes no tenants of its own; it stands in for the nodes in
    `standby_for` (empty: every serving node) when they stop answering, so it carries their
    tenants' configuration."""

    name: str
    address: str
    port: int = 5060
    capacity: int = 20000  # users
    standby: bool = False
    standby_for: tuple[str, ...] = ()
    # Where a deploying host reaches this node's ARI (an operator's TLS reverse proxy); "": the
    # node's address on platform.http.port, which answers only on the node's own machine.
    ari_url: str = ""

    def stands_in_for(self, node: str) -> bool:
        return self.standby and (not self.standby_for or node in self.standby_for)


@dataclass(frozen=True)
class SipEdge:
    """The cluster's SIP edge (Kamailio): its listener and how often it probes the nodes."""

    address: str
    port: int = 5060
    probe_seconds: int = 2
    # The longest registration a node grants a device through the edge: after a node fails, its
    # devices are reachable again from the standby once they register anew (docs/cluster.md).
    register_seconds: int = 60


@dataclass(frozen=True)
class Web:
    """The users' home page and its JSON API (see docs/web.md), served by `vipbx serve`.

    Loopback by default: users reach it through a TLS reverse proxy. `secure_cookies: false` is
    for plain-HTTP tests only (the browser would not send a `Secure` cookie back over HTTP)."""

    enabled: bool = True
    listener: Listener = field(default_factory=lambda: Listener("127.0.0.1", 8090))
    secure_cookies: bool = True
    session_minutes: int = 30  # idle time after which a session ends
    session_max_hours: int = 12  # a session ends this long after login, however busy
    call_log_days: int = 180  # calls older than this leave the call log


@dataclass(frozen=True)
class Metrics:
    """`vipbx serve`'s Prometheus endpoint (docs/operations.md, "Monitoring"): loopback unless
    `allow_remote` with a `permit` list, like the other control listeners. Asterisk's own metrics
    (res_prometheus) are served by its HTTP listener, `platform.http`, at /metrics."""

    enabled: bool = True
    listener: Listener = field(default_factory=lambda: Listener("127.0.0.1", 9187))


DEFAULT_PIN_DIGITS = 6  # a 4-digit PIN falls to a few days of locked-out guessing; 6 digits to years
MIN_PIN_DIGITS = 4
MAX_PIN_DIGITS = 10


@dataclass(frozen=True)
class Platform:
    voicemail_number: str = "+358201243100"
    activity_number: str = "+358201243200"
    conference_number: str = "+358201243300"  # every user's conference room: room number + PIN
    default_language: str = "fi"
    feature_codes: FeatureCodes = field(default_factory=FeatureCodes)
    sip: Listener = field(default_factory=lambda: Listener("127.0.0.1", 5060))
    rtp_start: int = 10000
    rtp_end: int = 20000
    http: Listener = field(default_factory=lambda: Listener("127.0.0.1", 8088))
    ami: Listener = field(default_factory=lambda: Listener("127.0.0.1", 5038))
    agi: Listener = field(default_factory=lambda: Listener("127.0.0.1", 4573))
    ari_app: str = "vipbx"
    trunks: tuple[Trunk, ...] = ()
    no_answer_seconds: int = 20
    notifications: Notifications = field(default_factory=Notifications)
    state_database: StateDatabase = field(default_factory=StateDatabase)
    pin_digits: int = DEFAULT_PIN_DIGITS  # the shortest PIN a user may have (a tenant may differ)
    web: Web = field(default_factory=Web)
    metrics: Metrics = field(default_factory=Metrics)
    nodes: tuple[Node, ...] = ()  # none: one machine, as before
    sip_edge: SipEdge | None = None

    @property
    def carrier(self) -> Trunk | None:
        """The trunk that carries calls to outside numbers, if any (the old single carrier)."""
        return next((trunk for trunk in self.trunks if trunk.outbound), None)

    @property
    def mobile_core(self) -> Trunk | None:
        """The trunk that reaches users' handsets, if any (at most one)."""
        return next((trunk for trunk in self.trunks if trunk.mobile_core), None)

    def trunk(self, name: str) -> Trunk | None:
        return next((trunk for trunk in self.trunks if trunk.name == name), None)


@dataclass(frozen=True)
class Device:
    """A SIP softphone/desk phone of a user; registers with its id as user name."""

    id: str
    # Codec allow-list for the endpoint.
    codecs: tuple[str, ...] = ("alaw", "ulaw")


@dataclass(frozen=True)
class User:
    id: str
    name: str
    number: str  # E.164, the user's public (mobile) number
    extension: str
    email: str | None
    pin: str
    language: str
    groups: tuple[str, ...] = ()
    devices: tuple[Device, ...] = ()
    role: str = ""
    mobile: str = MOBILE_OFF  # MOBILE_WITH_DEVICES: the handset rings with the devices

    @property
    def rings_mobile(self) -> bool:
        return self.mobile == MOBILE_WITH_DEVICES

    @property
    def has_voicemail(self) -> bool:
        return NO_VOICEMAIL_GROUP not in self.groups

    @property
    def mailbox(self) -> str:
        """The app_voicemail mailbox id (in the tenant's voicemail context): the number without '+'."""
        return self.number[1:]


@dataclass(frozen=True)
class TenantNumber:
    """An extra public number of a tenant (e.g. a main number) that rings one user."""

    number: str
    user: str


# Asterisk presence states an activity may show as (func_presencestate).
PRESENCE_STATES = ("available", "away", "xa", "dnd", "chat", "unavailable")
AVAILABLE = "available"
# What an activity does to calls: ring as usual, straight to voicemail, or (an E.164 number)
# to a substitute.
RING = "ring"
TO_VOICEMAIL = "voicemail"


@dataclass(frozen=True)
class Activity:
    """One choice of a tenant's activity (presence) list."""

    key: str  # prompts act-<key> / act-is-<key>; "available" is the one an end time returns to
    digit: str  # chosen with this key at the activity-change number
    presence: str = AVAILABLE  # how SIP phones subscribed to the user see it
    route: str = RING  # RING, TO_VOICEMAIL or a substitute E.164 number


DEFAULT_ACTIVITIES: tuple[Activity, ...] = (
    Activity("available", "1", "available", RING),
    Activity("busy", "2", "dnd", RING),
    Activity("meeting", "3", "dnd", TO_VOICEMAIL),
    Activity("lunch", "4", "away", RING),
    Activity("off-work", "5", "xa", TO_VOICEMAIL),
    Activity("vacation", "6", "xa", TO_VOICEMAIL),
    Activity("sick", "7", "xa", TO_VOICEMAIL),
)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    domain: str
    country_code: str = "358"
    max_message_seconds: int = 180
    groups: tuple[str, ...] = (NO_VOICEMAIL_GROUP,)
    numbers: tuple[TenantNumber, ...] = ()
    users: tuple[User, ...] = ()
    outbound: OutboundPolicy | None = None  # None: OutboundPolicy.default (national, built-in deny)
    activities: tuple[Activity, ...] = DEFAULT_ACTIVITIES
    pin_digits: int | None = None  # None: the platform's
    call_recording: str = RECORDING_ALLOWED  # RECORDING_OFF: no user's calls are recorded
    node: str | None = None  # a cluster's node named for this tenant; None: placed by vipbx

    def activity(self, key: str) -> Activity | None:
        for activity in self.activities:
            if activity.key == key:
                return activity
        return None

    @property
    def outbound_policy(self) -> OutboundPolicy:
        """Where calls may go out for this tenant (devices, forwards, transfers, press 1,
        substitutes): see base/outbound.py."""
        return self.outbound or OutboundPolicy.default(self.country_code, len(self.users))

    def user(self, user_id: str) -> User:
        for user in self.users:
            if user.id == user_id:
                return user
        raise KeyError(user_id)


class TenantUser(NamedTuple):
    """A user together with their tenant: the one type for "whose mailbox, forwards, presence".

    A tuple, so `tenant, user = found` keeps working where only the parts are needed."""

    tenant: Tenant
    user: User

    @property
    def context(self) -> str:
        """The tenant's voicemail context (and dialplan prefix)."""
        return self.tenant.id

    @property
    def mailbox(self) -> str:
        return self.user.mailbox

    @property
    def label(self) -> str:
        """How operators see the user: `anna@acme (+358401110001)`."""
        return f"{self.user.id}@{self.tenant.id} ({self.user.number})"


@dataclass(frozen=True)
class Config:
    platform: Platform
    tenants: tuple[Tenant, ...]
    # The YAML files this came from, in the order given (for messages and `diff`).
    sources: tuple[str, ...] = ()

    def find_number(self, number: str) -> TenantUser | None:
        """The tenant and user that own a public number (user number or tenant number)."""
        return self._owners.get(number)

    def find_caller(self, raw: str, country_code: str | None) -> TenantUser | None:
        """The user a number belongs to as a trunk or caller writes it: E.164, 00-international,
        without its '+', or national in `country_code`: the country of the trunk the call came
        in on, or of the calling device's tenant. With None a national number names nobody:
        never guess a country from whichever tenant has a match."""
        digits = (raw or "").strip()
        if country_code is None and digits.startswith("0") and not digits.startswith("00"):
            return None
        number = to_e164(digits, country_code or "")
        return self.find_number(number) if number is not None else None

    def find_user(self, tenant_id: str, user_id: str) -> TenantUser | None:
        return self._users.get((tenant_id, user_id))

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self._tenants.get(tenant_id)

    # Indexes built on first use (per call lookups must not scan every user). The configuration is
    # immutable, so they never go stale; cached_property writes past the frozen __setattr__.
    @cached_property
    def _owners(self) -> dict[str, TenantUser]:
        owners: dict[str, TenantUser] = {}
        for tenant in self.tenants:
            by_id = {user.id: user for user in tenant.users}
            for user in tenant.users:
                owners.setdefault(user.number, TenantUser(tenant, user))
            for extra in tenant.numbers:
                if extra.user in by_id:
                    owners.setdefault(extra.number, TenantUser(tenant, by_id[extra.user]))
        return owners

    @cached_property
    def _tenants(self) -> dict[str, Tenant]:
        return {tenant.id: tenant for tenant in self.tenants}

    @cached_property
    def _users(self) -> dict[tuple[str, str], TenantUser]:
        return {(tenant.id, user.id): TenantUser(tenant, user) for tenant in self.tenants for user in tenant.users}
