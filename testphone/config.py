"""The test phone's own Asterisk configuration, derived from the PBX's validated model.

One Asterisk plays two roles:
- every PBX user's SIP device: one endpoint per device that registers to the PBX with the
  device's id and generated password, from the `phones` address;
- the carrier: calls from outside numbers into the PBX, from the carrier's address (the PBX
  recognises the carrier by source IP, so device traffic must never come from there);
- every other trunk of the platform (e.g. the mobile core), each from its own address, so a test
  can call in as a user's mobile through the mobile core and see the handset calls the PBX makes.
Calls the PBX sends to a device enter Stasis(APP, incoming, TARGET); to a trunk
Stasis(APP, carrier-in, TARGET, TRUNK, MARK): MARK is the value of the mobile core's handset
header, if the platform marks handset calls with one.
"""

from __future__ import annotations

from dataclasses import dataclass

from asterisk_conf.conffilters import conf, hostport
from base.model import CARRIER, Config, Trunk
from base.secrets import SecretStore

APP = "testphone"
ARI_USER = "testphone"
ARI_SECRET = "testphone:ari"
PBX_ENDPOINT = "testphone-pbx"
CARRIER_ENDPOINT = "testphone-carrier"
PHONES_TRANSPORT = "testphone-phones"
CARRIER_TRANSPORT = "testphone-carrier"

# Exactly what the phone needs; `require` makes a missing module fail the start loudly.
MODULES = (
    "res_timing_timerfd", "res_sorcery_config", "res_sorcery_memory", "res_sorcery_astdb",
    "res_pjproject", "res_pjsip", "res_pjsip_session", "res_pjsip_pubsub", "chan_pjsip",
    "res_pjsip_authenticator_digest", "res_pjsip_outbound_authenticator_digest", "res_pjsip_outbound_registration",
    "res_pjsip_endpoint_identifier_ip", "res_pjsip_sdp_rtp", "res_pjsip_caller_id",
    "res_pjsip_diversion", "res_pjsip_header_funcs", "res_pjsip_rfc3326", "res_pjsip_logger",
    "res_rtp_asterisk", "res_rtp_multicast", "chan_rtp",
    "codec_ulaw", "codec_alaw", "codec_a_mu", "codec_gsm", "format_gsm", "format_wav",
    "format_pcm", "format_sln",
    "pbx_config", "func_channel", "func_cut", "func_callerid", "func_strings", "func_logic",
    "bridge_simple", "bridge_softmix", "bridge_holding",  # ARI dial needs a holding bridge
    "res_http_websocket", "res_websocket_client", "res_stasis", "res_stasis_answer",
    "res_stasis_playback", "res_stasis_recording", "res_stasis_snoop", "res_ari",
    "res_ari_model", "res_ari_applications", "res_ari_asterisk", "res_ari_bridges",
    "res_ari_channels", "res_ari_endpoints", "res_ari_events", "res_ari_playbacks",
    "res_ari_recordings", "app_stasis",
    "res_fax", "res_fax_spandsp",  # SendFax(): the phone as a fax machine (context tp-fax)
)
# Files Asterisk looks for at start whose defaults are fine: present and empty keeps the log clean.
QUIET_FILES = ("acl.conf", "udptl.conf", "pjproject.conf", "websocket_client.conf", "cdr.conf",
               "cel.conf", "ccss.conf", "features.conf", "stasis.conf",
               "manager.conf", "musiconhold.conf")


TRUNK_PREFIX = "testphone-trunk-"


@dataclass(frozen=True)
class TrunkSide:
    """A PBX trunk (other than the carrier) the phone plays, on the trunk's own address."""

    name: str  # the PBX's trunk name
    ip: str
    port: int
    mark_header: str = ""  # the handset header whose value incoming calls report

    @property
    def endpoint(self) -> str:
        return TRUNK_PREFIX + self.name


@dataclass(frozen=True)
class PhoneSettings:
    """Where the phone instance listens. The carrier address must be the PBX's carrier host."""

    phones_ip: str
    carrier_ip: str
    sip_port: int = 5060  # on both addresses
    carrier_port: int | None = None  # default: sip_port
    http_port: int = 8088  # ARI, on phones_ip
    rtp_start: int = 40000
    rtp_end: int = 40999
    app: str = APP
    carrier_name: str = CARRIER  # the PBX's name of the trunk the carrier side plays
    carrier_mark_header: str = ""
    trunks: tuple[TrunkSide, ...] = ()  # the platform's other trunks

    @classmethod
    def for_config(cls, config: Config, phones_ip: str, **overrides: object) -> PhoneSettings:
        """Settings whose carrier side is where the PBX sends outbound calls (the outbound trunk,
        else the first one), and whose other trunks are where the PBX sends theirs."""
        trunks = config.platform.trunks
        carrier = config.platform.carrier or (trunks[0] if trunks else None)
        if carrier is None:
            raise ValueError("the platform has no carrier: the phone could not reach outside numbers")
        values: dict[str, object] = {
            "carrier_ip": carrier.host, "carrier_port": carrier.port, "carrier_name": carrier.name,
            "carrier_mark_header": _mark_header(carrier),
            "trunks": tuple(TrunkSide(t.name, t.host, t.port, _mark_header(t))
                            for t in trunks if t is not carrier),
        }
        values.update(overrides)
        settings = cls(phones_ip=phones_ip, **values)  # type: ignore[arg-type]
        check_settings(config, settings)
        return settings

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PhoneSettings:
        """Back from `dataclasses.asdict` (as kept in the phone's state file)."""
        values = dict(data)
        sides = values.pop("trunks", ()) or ()
        return cls(**values, trunks=tuple(TrunkSide(**side) for side in sides))  # type: ignore[arg-type]

    def endpoint_for(self, trunk: str | None) -> str:
        """The phone's endpoint that calls the PBX as `trunk` (None: the carrier)."""
        if trunk is None or trunk == self.carrier_name:
            return CARRIER_ENDPOINT
        for side in self.trunks:
            if side.name == trunk:
                return side.endpoint
        raise ValueError(f"no trunk {trunk!r}; the phone plays: "
                         + ", ".join([self.carrier_name, *(t.name for t in self.trunks)]))

    def trunk_ip(self, trunk: str | None) -> str:
        side = next((t for t in self.trunks if t.name == trunk), None)
        return side.ip if side is not None else self.carrier_ip

    @property
    def carrier_sip_port(self) -> int:
        return self.carrier_port or self.sip_port

    @property
    def ari_url(self) -> str:
        return f"http://{hostport(self.phones_ip, self.http_port)}/ari"


def _mark_header(trunk: Trunk) -> str:
    return trunk.handset_header[0] if trunk.mobile_core and trunk.handset_header else ""


def pbx_address(config: Config) -> str:
    """The PBX's SIP address as seen from the phone: a wildcard bind is reached on loopback."""
    bind = config.platform.sip.bind
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind, bind)


def device_ids(config: Config) -> list[str]:
    return [device.id for tenant in config.tenants for user in tenant.users
            for device in user.devices]


def check_settings(config: Config, settings: PhoneSettings) -> None:
    """ValueError (one line, saying what to change) when the phone cannot work with `config`."""
    s = settings
    if s.phones_ip == s.carrier_ip:
        raise ValueError(f"the devices (--phones-ip) and the carrier (its trunk's host) are both "
                         f"{s.carrier_ip}: the PBX tells them apart by address; give "
                         f"--phones-ip another one")
    addresses = [s.phones_ip, s.carrier_ip, *(t.ip for t in s.trunks)]
    if len(set(addresses)) != len(addresses):
        raise ValueError("phones, carrier and every trunk need different addresses: the PBX "
                         f"tells them apart by IP (got {', '.join(addresses)})")
    clash = {PBX_ENDPOINT, CARRIER_ENDPOINT, *(t.endpoint for t in s.trunks)} & set(device_ids(config))
    if clash:
        raise ValueError(f"device id(s) {sorted(clash)} clash with the test phone's own endpoints")


def render_phone_config(config: Config, secrets: SecretStore, settings: PhoneSettings,
                        ari_password: str) -> dict[str, str]:
    """File name → text of every file of the phone instance."""
    s = settings
    check_settings(config, s)
    files = {
        "modules.conf": _modules(),
        "pjsip.conf": _pjsip(config, secrets, s),
        "extensions.conf": _extensions(s),
        "rtp.conf": f"[general]\nrtpstart={int(s.rtp_start)}\nrtpend={int(s.rtp_end)}\n",
        "logger.conf": "[general]\n[logfiles]\nconsole => notice,warning,error\n"
                       "messages => notice,warning,error\n",
        "http.conf": f"[general]\nenabled=yes\nbindaddr={conf(s.phones_ip)}\n"
                     f"bindport={int(s.http_port)}\nservername=vipbx-testphone\nsessionlimit=400\n",
        # Ringback and busy tones, should a test ask for them (ARI "tone:ring").
        "indications.conf": "[general]\ncountry=fi\n\n[fi]\ndescription=Finland\n"
                            "ringcadence=1000,4000\nring=425/1000,0/4000\n"
                            "busy=425/300,0/300\ncongestion=425/200,0/200\n",
        "ari.conf": f"[general]\nenabled=yes\npretty=no\n\n[{ARI_USER}]\ntype=user\n"
                    f"read_only=no\npassword={conf(ari_password)}\npassword_format=plain\n",
    }
    files.update({name: "" for name in QUIET_FILES})
    return files


def _modules() -> str:
    return "[modules]\nautoload=no\n" + "".join(f"require => {m}.so\n" for m in MODULES)


def _section(name: str, **options: str | int | list[str]) -> str:
    lines = [f"[{conf(name)}]"]
    for key, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key}={item}")
    return "\n".join(lines) + "\n\n"


def _media() -> dict[str, str]:
    # ulaw only: external media (and so what the tests hear) is ulaw, and one codec end to end
    # means no transcoding between the PBX and the recording.
    return {"disallow": "all", "allow": "ulaw", "dtmf_mode": "rfc4733", "direct_media": "no",
            "rtp_symmetric": "yes"}


def _pjsip(config: Config, secrets: SecretStore, s: PhoneSettings) -> str:
    pbx_host = pbx_address(config)
    pbx_port = config.platform.sip.port
    pbx_uri = f"sip:{hostport(pbx_host, pbx_port)}"
    out = [
        "; The vipbx test phone: every user's device and the carrier (generated).\n\n",
        _section("global", type="global", user_agent="vipbx-testphone",
                 endpoint_identifier_order="ip"),
        _section(PHONES_TRANSPORT, type="transport", protocol="udp",
                 bind=hostport(s.phones_ip, s.sip_port)),
        _section(CARRIER_TRANSPORT, type="transport", protocol="udp",
                 bind=hostport(s.carrier_ip, s.carrier_sip_port)),
        # Everything the PBX sends us: to a device (R-URI user = device id) or to the carrier.
        _section(PBX_ENDPOINT, type="endpoint", context="from-pbx", transport=PHONES_TRANSPORT,
                 **_media()),
        _section(PBX_ENDPOINT, type="identify", endpoint=PBX_ENDPOINT, match=conf(pbx_host)),
        # Outside callers: From = the caller's number, sent from the carrier's address.
        _section(CARRIER_ENDPOINT, type="endpoint", context="from-pbx",
                 transport=CARRIER_TRANSPORT, aors=CARRIER_ENDPOINT, send_diversion="no",
                 **_media()),
        _section(CARRIER_ENDPOINT, type="aor", contact=pbx_uri),
    ]
    for side in s.trunks:  # the other trunks: each calls from, and is called at, its own address
        out += [
            _section(side.endpoint, type="transport", protocol="udp",
                     bind=hostport(side.ip, side.port)),
            _section(side.endpoint, type="endpoint", context="from-pbx", transport=side.endpoint,
                     aors=side.endpoint, send_diversion="no", **_media()),
            _section(side.endpoint, type="aor", contact=pbx_uri),
        ]
    for device in device_ids(config):
        dev = conf(device)
        password = conf(secrets.get(f"device:{device}"))
        out += [
            _section(dev, type="endpoint", context="from-pbx", transport=PHONES_TRANSPORT,
                     aors=dev, outbound_auth=dev, from_user=dev, **_media()),
            _section(dev, type="aor", contact=pbx_uri),
            _section(dev, type="auth", auth_type="userpass", username=dev, password=password),
            # Register at once (no random start delay) and retry fast and forever: the PBX may
        # start after us or restart under us.
            _section(dev, type="registration", transport=PHONES_TRANSPORT, outbound_auth=dev,
                     server_uri=pbx_uri, client_uri=f"sip:{dev}@{hostport(pbx_host, pbx_port)}",
                     contact_user=dev, expiration=300, retry_interval=2,
                     forbidden_retry_interval=2, fatal_retry_interval=2, max_retries=1000000,
                     auth_rejection_permanent="no", line="no", max_random_initial_delay=0),
        ]
    return "".join(out)


def _extensions(s: PhoneSettings) -> str:
    # The PBX reaches a device at its registered contact (user part = device id) and a trunk at
    # the trunk's address: which local address the INVITE came to tells them apart.
    app = conf(s.app)
    sides = [(s.carrier_name, s.carrier_ip, s.carrier_mark_header),
             *((t.name, t.ip, t.mark_header) for t in s.trunks)]
    lines = ["[general]\nstatic=yes\nwriteprotect=yes\n\n[from-pbx]\n",
             "exten => _[+0-9a-zA-Z*#].,1,NoOp(test phone: call from the PBX)\n",
             " same => n,Set(TP_LOCAL=${CUT(CHANNEL(pjsip,local_addr),:,1)})\n"]
    lines += [f' same => n,GotoIf($["${{TP_LOCAL}}" = "{conf(ip)}"]?trunk-{conf(name)})\n'
              for name, ip, _ in sides]
    lines += [f" same => n,Stasis({app},incoming,${{EXTEN}})\n", " same => n,Hangup()\n"]
    for name, _, header in sides:
        mark = f"${{PJSIP_HEADER(read,{conf(header)})}}" if header else ""
        stasis = f"Stasis({app},carrier-in,${{EXTEN}},{conf(name)},{mark})"
        lines += [f" same => n(trunk-{conf(name)}),{stasis}\n", " same => n,Hangup()\n"]
    # A call the driver sends here (`Call.send_fax`) faxes the TIFF named by TP_FAX_FILE.
    lines += ["\n[tp-fax]\n", "exten => send,1,SendFax(${TP_FAX_FILE})\n", " same => n,Hangup()\n"]
    return "".join(lines)
