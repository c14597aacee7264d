"""What `vipbx serve` tells Prometheus: one registry of the process's metrics (docs/operations.md
lists them, docs/grafana-dashboard.json and docs/prometheus-alerts.yml use them).

The instruments are module-level so the code that counts only imports this module; counting costs
a lock and an addition, nothing on a call's path waits for a scrape. Label values are fixed words
(IVR entries, scripts, outcomes), never numbers or user names, so the series stay few.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

# From 1 ms (what the IVR answers a key in at normal load) to the 2.5 s no caller should wait.
KEY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
AGI_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

build_info = Info("vipbx_build", "The running vipbx version.", registry=REGISTRY)

ivr_calls = Counter("vipbx_ivr_calls", "Calls that entered an IVR (Stasis entry).", ["entry"], registry=REGISTRY)
ivr_active = Gauge("vipbx_ivr_calls_active", "Calls in an IVR now.", ["entry"], registry=REGISTRY)
ivr_failures = Counter("vipbx_ivr_failures", "IVR handlers that failed; the call went on in the dialplan's fallback.",
                       ["entry"], registry=REGISTRY)
ivr_keys = Counter("vipbx_ivr_keys", "DTMF keys received in an IVR.", ["entry"], registry=REGISTRY)
ivr_key_answer = Histogram("vipbx_ivr_key_answer_seconds",
                           "From a key's event to the IVR's next request to Asterisk (its answer).",
                           ["entry"], buckets=KEY_BUCKETS, registry=REGISTRY)

deposits = Counter("vipbx_voicemail_deposits", "Voicemail deposits by outcome (saved, too_short, failed).",
                   ["outcome"], registry=REGISTRY)
notifications = Counter("vipbx_notifications", "Notification attempts by channel (sms, email) and outcome "
                        "(sent, retry, given_up).", ["channel", "outcome"], registry=REGISTRY)
notifier_queue = Gauge("vipbx_notifier_queue", "Notifications waiting in the outbox, by channel.",
                       ["channel"], registry=REGISTRY)

agi_requests = Counter("vipbx_agi_requests", "FastAGI requests by script and answer.", ["script", "answer"],
                       registry=REGISTRY)
agi_seconds = Histogram("vipbx_agi_request_seconds", "Time to answer a FastAGI request.", ["script"],
                        buckets=AGI_BUCKETS, registry=REGISTRY)
agi_refused = Counter("vipbx_agi_refused", "FastAGI connections refused (address, key, overload, no script).",
                      ["reason"], registry=REGISTRY)

ari_connected = Gauge("vipbx_ari_connected", "1 while the ARI event socket is connected.", registry=REGISTRY)
ari_reconnects = Counter("vipbx_ari_reconnects", "ARI event socket connections after the first.", registry=REGISTRY)

lockouts = Counter("vipbx_lockouts", "Locks set after wrong PINs or passwords (pin_locked, login_locked).",
                   ["event"], registry=REGISTRY)
log_messages = Counter("vipbx_log_messages", "Log lines at WARNING and above, by level.", ["level"],
                       registry=REGISTRY)

LOCK_EVENTS = frozenset({"pin_locked", "login_locked"})


def package_version() -> str:
    try:
        return version("vipbx")
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


class DiskCollector(Collector):
    """Free and total bytes of the file systems vipbx writes to, read at each scrape."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        free = GaugeMetricFamily("vipbx_disk_free_bytes", "Bytes free for vipbx's data.", labels=["volume"])
        size = GaugeMetricFamily("vipbx_disk_size_bytes", "Size of the file system of vipbx's data.",
                                 labels=["volume"])
        for name, path in self.paths.items():
            try:
                usage = shutil.disk_usage(path)
            except OSError:
                continue  # not there (yet): no sample rather than a wrong one
            free.add_metric([name], usage.free)
            size.add_metric([name], usage.total)
        yield free
        yield size


class CountWarnings(logging.Handler):
    """Counts log lines at WARNING and above: the errors panel and alert read it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        log_messages.labels(record.levelname.lower()).inc()


_disk: DiskCollector | None = None


def watch_disks(paths: dict[str, Path]) -> None:
    """Report these volumes' space (called once by `vipbx serve`; again, it replaces the set)."""
    global _disk
    if _disk is not None:
        REGISTRY.unregister(_disk)
    _disk = DiskCollector(paths)
    REGISTRY.register(_disk)


def install(paths: dict[str, Path]) -> None:
    """What a serving process adds to the instruments: its version, disk space, and a count of its
    warnings. Idempotent."""
    build_info.info({"version": package_version()})
    watch_disks(paths)
    root = logging.getLogger()
    if not any(isinstance(handler, CountWarnings) for handler in root.handlers):
        root.addHandler(CountWarnings())


def lock_event(event: str) -> None:
    if event in LOCK_EVENTS:
        lockouts.labels(event).inc()


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample's value from the registry (for tests and `vipbx doctor`)."""
    return REGISTRY.get_sample_value(name, labels or {})


def prime(entries: Iterable[str]) -> None:
    """Series that exist before the first call, so a dashboard shows 0 rather than nothing."""
    for entry in entries:
        ivr_calls.labels(entry)
        ivr_active.labels(entry)
        ivr_failures.labels(entry)
        ivr_keys.labels(entry)
    for outcome in ("saved", "too_short", "failed"):
        deposits.labels(outcome)
    for channel in ("sms", "email"):
        notifier_queue.labels(channel)
        for outcome in ("sent", "retry", "given_up"):
            notifications.labels(channel, outcome)
    for event in sorted(LOCK_EVENTS):
        lockouts.labels(event)
    for level in ("warning", "error", "critical"):
        log_messages.labels(level)
