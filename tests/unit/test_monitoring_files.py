"""The monitoring files operators import (docs/grafana-dashboard.json, docs/prometheus-alerts.yml)
load, have the structure Grafana and Prometheus expect, and name only metrics that exist: a
renamed metric in base/metrics.py breaks this test rather than a dashboard in production."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from base import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana-dashboard.json"
ALERTS = DOCS / "prometheus-alerts.yml"

# What prometheus_client adds to a family's name in the samples it exposes.
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created", "_info")

# Asterisk's res_prometheus (res/res_prometheus.c and res/prometheus/{channels,endpoints,bridges}.c
# of the Asterisk source). Add a name here only after checking it there.
ASTERISK_METRICS = frozenset({
    "asterisk_core_properties",
    "asterisk_core_uptime_seconds",
    "asterisk_core_last_reload_seconds",
    "asterisk_core_scrape_time_ms",
    "asterisk_channels_count",
    "asterisk_channels_state",
    "asterisk_channels_duration_seconds",
    "asterisk_calls_count",
    "asterisk_calls_sum",
    "asterisk_endpoints_count",
    "asterisk_endpoints_state",
    "asterisk_endpoints_channels_count",
    "asterisk_bridges_count",
    "asterisk_bridges_channels_count",
})

SEVERITIES = {"page", "ticket"}
VIPBX_NAME = re.compile(r"\bvipbx_[a-zA-Z0-9_]+")
ASTERISK_NAME = re.compile(r"\basterisk_[a-zA-Z0-9_]+")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


@pytest.fixture(scope="module")
def exported() -> Iterator[set[str]]:
    """Every name a scrape of `vipbx serve` can show: the registry's families with their suffixes."""
    handlers = list(logging.getLogger().handlers)
    metrics.prime(["access"])
    metrics.install({"home": Path("/")})
    try:
        families = {family.name for family in metrics.REGISTRY.collect()}
        yield families | {family + suffix for family in families for suffix in SUFFIXES}
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict) and isinstance(loaded.get("groups"), list) and loaded["groups"]
    found: list[dict[str, Any]] = []
    for group in loaded["groups"]:
        assert group.get("name"), group
        assert isinstance(group.get("rules"), list) and group["rules"], group["name"]
        found.extend(group["rules"])
    return found


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Panels in order, with those a collapsed row holds."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in all_panels(dashboard["panels"]) for target in panel.get("targets", [])]


def unknown_names(exprs: list[str], exported: set[str]) -> dict[str, list[str]]:
    """Metric name → the expressions naming it, for names neither vipbx nor Asterisk exports."""
    unknown: dict[str, list[str]] = {}
    for expr in exprs:
        for name in VIPBX_NAME.findall(expr):
            if name not in exported:
                unknown.setdefault(name, []).append(expr)
        for name in ASTERISK_NAME.findall(expr):
            if name not in ASTERISK_METRICS:
                unknown.setdefault(name, []).append(expr)
    return unknown


def test_the_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "vipbx-overview"
    assert dashboard["title"] == "vipbx: PBX overview"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["id"] is None  # an import makes its own
    [source] = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")


def test_every_panel_has_a_place_and_queries(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard["panels"]))
    assert len([p for p in panels if p["type"] != "row"]) >= 20
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels:
        where = panel.get("title", panel.get("id"))
        grid = panel.get("gridPos")
        assert grid and {"h", "w", "x", "y"} <= grid.keys(), f"{where}: no gridPos"
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, f"{where}: wider than the grid"
        if panel["type"] == "row":
            continue
        assert panel.get("title"), panel["id"]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", where
        assert panel.get("targets"), f"{where}: no targets"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{where}: a target without expr"
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", where
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"


def test_no_two_panels_overlap(dashboard: dict[str, Any]) -> None:
    boxes = [(p.get("title"), p["gridPos"]) for p in dashboard["panels"]]
    for i, (name, a) in enumerate(boxes):
        for other, b in boxes[i + 1:]:
            apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                     or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
            assert apart, f"{name!r} and {other!r} overlap"


def test_the_dashboard_shows_what_operators_need(dashboard: dict[str, Any]) -> None:
    exprs = "\n".join(dashboard_exprs(dashboard))
    for needed in ('up{job="vipbx"}', 'up{job="asterisk"}', "vipbx_ari_connected", "vipbx_ari_reconnects_total",
                   "vipbx_ivr_calls_active", "vipbx_ivr_calls_total", "vipbx_ivr_key_answer_seconds_bucket",
                   "vipbx_ivr_failures_total", "vipbx_voicemail_deposits_total", "vipbx_notifications_total",
                   "vipbx_notifier_queue", "vipbx_agi_requests_total", "vipbx_agi_request_seconds_bucket",
                   "vipbx_agi_refused_total", "vipbx_lockouts_total", "vipbx_log_messages_total",
                   "vipbx_disk_free_bytes", "vipbx_disk_size_bytes", "asterisk_channels_count",
                   "asterisk_calls_count"):
        assert needed in exprs, needed
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(vipbx_ivr_key_answer_seconds_bucket" in exprs, q


def test_every_rule_is_complete(rules: list[dict[str, Any]]) -> None:
    seen: set[tuple[str, str]] = set()
    for rule in rules:
        name = rule.get("alert")
        assert name and re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), rule
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), name
        assert DURATION.match(str(rule.get("for", ""))), f"{name}: for"
        assert rule["labels"]["severity"] in SEVERITIES, f"{name}: severity {rule['labels'].get('severity')!r}"
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
        key = (name, rule["labels"]["severity"])
        assert key not in seen, f"{name} twice at {key[1]}"
        seen.add(key)


def test_the_needed_alerts_are_there(rules: list[dict[str, Any]]) -> None:
    severities: dict[str, set[str]] = {}
    for rule in rules:
        severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    for name in ("VipbxDown", "AsteriskDown", "AriDisconnected", "AriReconnectStorm", "NotifierBacklog",
                 "NotificationsGivenUp", "DiskNearlyFull", "LockoutBurst", "FastAgiErrors", "IvrFailures",
                 "KeyAnswerSlow", "ErrorLogBurst"):
        assert name in severities, name
    assert severities["VipbxDown"] == {"page"}
    assert severities["AsteriskDown"] == {"page"}
    assert severities["DiskNearlyFull"] == {"ticket", "page"}


def test_every_metric_named_exists(dashboard: dict[str, Any], rules: list[dict[str, Any]],
                                   exported: set[str]) -> None:
    exprs = dashboard_exprs(dashboard) + [rule["expr"] for rule in rules]
    named = {name for expr in exprs for name in VIPBX_NAME.findall(expr)}
    assert len(named) >= 15  # the pattern finds them at all
    assert unknown_names(exprs, exported) == {}


def test_a_renamed_metric_would_be_caught(exported: set[str]) -> None:
    assert "vipbx_ivr_calls_total" in exported and "vipbx_build_info" in exported
    assert "vipbx_ivr_key_answer_seconds_bucket" in exported and "vipbx_disk_free_bytes" in exported
    caught = unknown_names(['rate(vipbx_ivr_call_total{job="vipbx"}[5m])', "asterisk_channel_count"], exported)
    assert set(caught) == {"vipbx_ivr_call_total", "asterisk_channel_count"}
