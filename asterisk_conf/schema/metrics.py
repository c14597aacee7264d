"""`platform.metrics`: the Prometheus endpoint of `vipbx serve`."""

from __future__ import annotations

from typing import Any

from asterisk_conf.checks import Checker, Fields, Loc
from asterisk_conf.values import boolean
from base.model import Metrics

METRICS_KEYS = ("enabled", "bind", "port", "allow_remote", "permit")


def metrics(chk: Checker, loc: Loc, value: Any) -> Metrics:
    # Imported here: platform.py imports this module for its listener checks.
    from .platform import served_listener

    f = Fields(chk, loc, value, METRICS_KEYS, "metrics", "port: 9187")
    d = Metrics()
    return Metrics(enabled=f.get("enabled", boolean, d.enabled), listener=served_listener(chk, f, "metrics", d.listener))
