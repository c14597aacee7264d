"""The platform's notifications: time zone, retries, the SMS gateway (Kannel) and SMTP."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asterisk_conf.checks import Checker, Fields, Loc, list_items, string_value
from asterisk_conf.values import boolean, email, host, integer, pattern, port
from asterisk_conf.yamlsource import show
from base.model import Notifications

NOTIFICATION_KEYS = (
    "timezone", "retry_backoff", "retry_max_attempts",
    "sms_url", "sms_username", "sms_sender", "sms_timeout",
    "smtp_host", "smtp_port", "smtp_sender", "smtp_starttls", "smtp_username", "smtp_timeout",
    "smtp_max_attachment_bytes",
)
HTTP_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
SMS_SENDER = re.compile(r"\+?[A-Za-z0-9]{1,15}")
LOGIN_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
TIME_ZONE = re.compile(r"[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}")

sms_url = pattern(HTTP_URL, "an http(s) URL of Kannel's sendsms", "http://127.0.0.1:13013/cgi-bin/sendsms")
sms_sender = pattern(SMS_SENDER, "a number or up to 15 letters and digits", '"+358201243100"')
login_name = pattern(LOGIN_NAME, "letters, digits, '.', '_', '@' and '-', at most 64", "vipbx")


def notifications(chk: Checker, loc: Loc, value: Any) -> Notifications:
    f = Fields(chk, loc, value, NOTIFICATION_KEYS, "notifications")
    d = Notifications()
    result = Notifications(
        timezone=f.get("timezone", time_zone, d.timezone),
        retry_backoff=f.get("retry_backoff", backoff, d.retry_backoff),
        retry_max_attempts=f.get("retry_max_attempts", integer(1, 50), d.retry_max_attempts),
        sms_url=f.get("sms_url", sms_url, None) or None,
        sms_username=f.get("sms_username", login_name, None) or None,
        sms_sender=f.get("sms_sender", sms_sender, None) or None,
        sms_timeout=f.get("sms_timeout", integer(1, 120), d.sms_timeout),
        smtp_host=f.get("smtp_host", host, None) or None,
        smtp_port=f.get("smtp_port", port, d.smtp_port),
        smtp_sender=f.get("smtp_sender", email, None) or None,
        smtp_starttls=f.get("smtp_starttls", boolean, d.smtp_starttls),
        smtp_username=f.get("smtp_username", login_name, None) or None,
        smtp_timeout=f.get("smtp_timeout", integer(1, 300), d.smtp_timeout),
        smtp_max_attachment_bytes=f.get("smtp_max_attachment_bytes", integer(0, 50 * 1024 * 1024), d.smtp_max_attachment_bytes),
    )
    if f.has("sms_url") and not f.has("sms_username"):
        chk.report(loc / "sms_username", "missing: Kannel's sendsms needs a user name with sms_url")
    if f.has("smtp_host") and not f.has("smtp_sender"):
        chk.report(loc / "smtp_sender", "missing: e-mail needs a sender address with smtp_host")
    return result


def time_zone(chk: Checker, loc: Loc, value: Any) -> str:
    got = string_value(chk, loc, value, "Europe/Helsinki")
    if got is None:
        return Notifications().timezone
    try:
        if TIME_ZONE.fullmatch(got):
            ZoneInfo(got)
            return got
    except (ZoneInfoNotFoundError, ValueError):
        pass
    chk.report(loc, f"{show(got)} is not a time zone name (e.g. Europe/Helsinki)")
    return Notifications().timezone


def backoff(chk: Checker, loc: Loc, value: Any) -> tuple[int, ...]:
    items = list_items(chk, loc, value, "seconds")
    if not 1 <= len(items) <= 10:
        chk.report(loc, "must list 1 to 10 waits in seconds, e.g. [10, 60, 300]")
        return Notifications().retry_backoff
    return tuple(integer(1, 86400)(chk, item_loc, item) for item, item_loc in items)
