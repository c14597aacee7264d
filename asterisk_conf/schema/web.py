"""`platform.web`: the users' home page listener and its session settings."""

from __future__ import annotations

from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc
from asterisk_conf.values import boolean, integer
from base.model import Web

WEB_KEYS = ("enabled", "bind", "port", "allow_remote", "permit", "secure_cookies", "session_minutes",
            "session_max_hours", "call_log_days")


def web(chk: Checker, loc: Loc, value: Any) -> Web:
    # Imported here: platform.py imports this module for its listener checks.
    from .platform import served_listener

    f = Fields(chk, loc, value, WEB_KEYS, "web", "port: 8090")
    d = Web()
    return Web(
        enabled=f.get("enabled", boolean, d.enabled),
        listener=served_listener(chk, f, "web", d.listener),
        secure_cookies=f.get("secure_cookies", boolean, d.secure_cookies),
        session_minutes=f.get("session_minutes", integer(5, 24 * 60), d.session_minutes),
        session_max_hours=f.get("session_max_hours", integer(1, 24 * 30), d.session_max_hours),
        call_log_days=f.get("call_log_days", integer(1, 3660), d.call_log_days),
    )
