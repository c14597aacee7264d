"""What the Home page shows and does, apart from HTTP: the presence form's values, the SMS rules
(length, target, hourly limit) and the instructions (service numbers, codes, softphone accounts).

Changes go through the services the phone uses: the presence through `PresenceService.change`
(which also tells subscribed phones over AMI), the SMS through the messenger of the login codes,
counted and audited by the call-state service (`state.sms`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from base.model import AVAILABLE, Tenant, TenantUser
from base.offload import run_blocking
from base.paths import Paths
from callstate import SettingsError
from callstate import presence as presence_rules
from callstate.targets import TargetRefused, check_outbound, resolve
from notify import DeliveryError
from notify.sms import is_gsm7
from prompts import catalogue

from .deps import WebDeps

log = logging.getLogger(__name__)

SMS_LIMIT = 10  # per user and SMS_WINDOW: a home page is not a bulk sender
SMS_WINDOW = timedelta(hours=1)
GSM7_MAX, UCS2_MAX = 160, 70  # one SMS, as the gateway sends it (no concatenation)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")  # two septets each (escape + character)
SOURCE = "web"


class SmsRefused(Exception):
    """An SMS the page will not send; `key` names the reason's text in the locale."""

    def __init__(self, key: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.key = key
        self.status = status


# --------------------------------------------------------------------------- presence

@dataclass(frozen=True)
class ActivityChoice:
    key: str
    name: str  # in the viewer's language


def activity_name(lang: str, key: str) -> str:
    """The activity's name as the activity menu speaks it; a tenant's own key stands for itself."""
    try:
        return catalogue.text(lang, f"act-{key}")
    except (KeyError, ValueError):
        return key


def activity_choices(tenant: Tenant, lang: str) -> list[ActivityChoice]:
    return [ActivityChoice(a.key, activity_name(lang, a.key)) for a in tenant.activities]


def zone(deps: WebDeps) -> ZoneInfo:
    """The time zone end times are typed and shown in (the platform's, as the phone menu speaks)."""
    return ZoneInfo(deps.config.platform.notifications.timezone)


def parse_until(day: str, clock: str, tz: ZoneInfo) -> datetime | None:
    """The form's end date and time → an aware instant in `tz`; no date means no end time, a
    date without a time means the end of that day (the next midnight)."""
    day, clock = day.strip(), clock.strip()
    if not day:
        if clock:
            raise SettingsError("an end time needs a date")
        return None
    try:
        when = date.fromisoformat(day)
        at = time.fromisoformat(clock) if clock else None
    except ValueError as exc:
        raise SettingsError("the end date or time is not a valid date and time") from exc
    if at is None:
        return datetime.combine(when + timedelta(days=1), time(0, 0), tz)
    return datetime.combine(when, at.replace(second=0, microsecond=0), tz)


async def change_presence(deps: WebDeps, who: TenantUser, actor: str, activity: str,
                          until: datetime | None, note: str | None) -> None:
    """The same change as the activity number's, with the note; SettingsError when refused.
    Available has no end time: one left in the form from the previous activity is dropped."""
    if activity == AVAILABLE:
        until = None
    await deps.presence.change(who.tenant, who.user, activity, until, actor=actor, source=SOURCE, note=note)


# --------------------------------------------------------------------------- SMS

def sms_fits(text: str) -> bool:
    """Whether `text` goes as one SMS: 160 GSM-7 septets (the extension table's characters take
    two), or 70 UCS-2 characters when anything is outside GSM-7."""
    if is_gsm7(text):
        return len(text) + sum(ch in GSM7_EXTENSION for ch in text) <= GSM7_MAX
    return len(text.encode("utf-16-le")) // 2 <= UCS2_MAX


def sms_target(deps: WebDeps, tenant: Tenant, dialled: str) -> str:
    """The E.164 number an SMS may go to: the tenant's outbound policy decides, as for calls
    (premium and barred ranges refused). TargetRefused with the reason otherwise."""
    number = resolve(tenant, dialled)
    return check_outbound(deps.config, tenant, number)


async def send_sms(deps: WebDeps, who: TenantUser, actor: str, to: str, text: str) -> str:
    """Sends one SMS from the user's page; the E.164 number it went to, or SmsRefused."""
    messenger = deps.messenger
    if messenger is None or not messenger.can_sms:
        raise SmsRefused("home_sms_unavailable", "SMS is not available", 503)
    text = text.strip()
    if not text:
        raise SmsRefused("home_sms_empty", "the message is empty")
    if not sms_fits(text):
        raise SmsRefused("home_sms_too_long", f"the message is longer than one SMS ({GSM7_MAX} "
                         f"GSM characters, or {UCS2_MAX} with other characters)")
    try:
        number = sms_target(deps, who.tenant, to)
    except TargetRefused as exc:
        raise SmsRefused(f"home_sms_refused_{exc.reason.replace('-', '_')}", str(exc)) from exc
    tenant_id, user_id = who.tenant.id, who.user.id
    try:
        await run_blocking(deps.state.sms.claim, tenant_id, user_id, number, limit=SMS_LIMIT,
                           window=SMS_WINDOW, actor=actor, source=SOURCE)
    except SettingsError as exc:
        raise SmsRefused("home_sms_limit", str(exc), 429) from exc
    try:
        # From the user's own number: the recipient sees who wrote and can answer (an operator
        # may still force a sender in Kannel's sendsms-user).
        await messenger.sms(number, text, sender=who.user.number)
    except DeliveryError as exc:  # NoGateway is one too
        log.warning("SMS from %s/%s to %s not sent: %s", tenant_id, user_id, number, exc)
        await run_blocking(deps.state.sms.failed, tenant_id, user_id, number, str(exc), actor=actor,
                           source=SOURCE)
        raise SmsRefused("home_sms_failed", "the SMS gateway did not take the message, try again", 502) from exc
    return number


# --------------------------------------------------------------------------- instructions

@dataclass(frozen=True)
class Softphone:
    device: str  # SIP user name
    password: str | None  # None: not generated yet (the configuration was not rendered)
    host: str
    port: int


def device_secret_name(device_id: str) -> str:
    """How the generated secrets name a device's SIP password (see asterisk_conf/render.py)."""
    return f"device:{device_id}"


def _stored_secrets(deps: WebDeps) -> dict[str, str]:
    """The generated secrets, read only: the page never creates one (rendering does)."""
    try:
        values = json.loads(Paths(deps.home).secrets.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) else {}


def sip_host(deps: WebDeps, page_host: str) -> str:
    """Where a softphone registers: the SIP listener's address, or, when it listens on every
    address, the host name the user reached this page by."""
    bind = deps.config.platform.sip.bind
    try:
        unspecified = ipaddress.ip_address(bind).is_unspecified
    except ValueError:
        unspecified = False
    return (page_host or bind) if unspecified else bind


def softphones(deps: WebDeps, who: TenantUser, page_host: str) -> list[Softphone]:
    """The viewer's own devices only, each with its SIP password."""
    secrets = _stored_secrets(deps)
    host, port = sip_host(deps, page_host), deps.config.platform.sip.port
    return [Softphone(d.id, secrets.get(device_secret_name(d.id)), host, port) for d in who.user.devices]


def presence_refusal(tenant: Tenant, activity: str, until: datetime | None, note: str | None,
                     now: datetime) -> str:
    """The locale key of the rule a refused presence change broke (the same rules, one at a time)."""
    rules = (("home_refused_activity", lambda: presence_rules.check_activity(tenant, activity)),
             ("home_refused_until", lambda: presence_rules.check_until(activity, until, now)),
             ("home_refused_note", lambda: presence_rules.check_note(note or "")))
    for key, rule in rules:
        try:
            rule()
        except SettingsError:
            return key
    return "home_refused"
