"""`platform.web`: the users' home page listener and its session settings."""

from __future__ import annotations

from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc
from asterisk_conf.values import boolean, integer, ip_address, port
from base.model import Listener, Web

WEB_KEYS = ("enabled", "bind", "port", "allow_remote", "permit", "secure_cookies", "session_minutes",
            "session_max_hours", "call_log_days")


def web(chk: Checker, loc: Loc, value: Any) -> Web:
    # Imported here: platform.py imports this module for its listener checks.
    from .platform import _check_exposure, _permit_network

    f = Fields(chk, loc, value, WEB_KEYS, "web", "port: 8090")
    d = Web()
    bind = f.get("bind", ip_address, d.listener.bind)
    allow_remote = f.get("allow_remote", boolean, False)
    permit = tuple(net for item, item_loc in f.items("permit", "IP networks")
                   if (net := _permit_network(chk, item_loc, item)))
    _check_exposure(chk, f, "web", bind, allow_remote, permit)
    return Web(
        enabled=f.get("enabled", boolean, d.enabled),
        listener=Listener(bind, f.get("port", port, d.listener.port), allow_remote, permit),
        secure_cookies=f.get("secure_cookies", boolean, d.secure_cookies),
        session_minutes=f.get("session_minutes", integer(5, 24 * 60), d.session_minutes),
        session_max_hours=f.get("session_max_hours", integer(1, 24 * 30), d.session_max_hours),
        call_log_days=f.get("call_log_days", integer(1, 3660), d.call_log_days),
    )
