"""The Prometheus metrics: what the IVR, the lockouts and the disks count, and the endpoint that
serves them only to permitted addresses."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_stasis_app import Harness, h  # noqa: F401 - the harness fixture, used by `metered`

from ari_app.app import StasisApp
from ari_app.session import CallSession
from base import metrics
from base.metrics_http import MetricsServer, permitted
from base.model import Listener


def value(name: str, **labels: str) -> float:
    return metrics.sample(name, labels) or 0.0


@pytest.fixture
def metered(h: Harness) -> Harness:  # noqa: F811 - the imported fixture
    """The stasis harness whose client is the service's own, counted in the metrics."""
    h.client.metered = True
    return h


async def test_an_ivr_call_counts_its_keys_and_the_time_to_answer_them(metered: Harness) -> None:
    metered.auto_finish = False
    calls, keys = value("vipbx_ivr_calls_total", entry="m"), value("vipbx_ivr_keys_total", entry="m")
    answered = value("vipbx_ivr_key_answer_seconds_count", entry="m")
    heard: list[str | None] = []

    async def menu(call: CallSession) -> None:
        heard.append(await call.play("sound:menu"))
        assert value("vipbx_ivr_calls_active", entry="m") == 1
        await call.answer()  # the answer to the key

    await metered.start(StasisApp(metered.client, {"m": menu}))
    assert value("vipbx_ari_connected") == 1
    await metered.stasis_start("c1", "m")
    await metered.until(lambda: metered.calls("POST", r"/channels/c1/play/.+"))
    await metered.send("ChannelDtmfReceived", "c1", digit="5")
    await metered.until(lambda: metered.calls("DELETE", r"/playbacks/.+"))
    playback_id = metered.calls("DELETE", r"/playbacks/.+")[0].url.path.rsplit("/", 1)[1]
    await metered.finish(playback_id, "c1")
    await metered.idle()
    assert heard == ["5"]
    assert value("vipbx_ivr_calls_total", entry="m") == calls + 1
    assert value("vipbx_ivr_keys_total", entry="m") == keys + 1
    assert value("vipbx_ivr_key_answer_seconds_count", entry="m") == answered + 1
    assert 0 < value("vipbx_ivr_key_answer_seconds_sum", entry="m") < 5
    assert value("vipbx_ivr_calls_active", entry="m") == 0


async def test_a_key_the_caller_follows_with_silence_is_not_an_answer_time(metered: Harness) -> None:
    """The wait for a key that never comes is the caller's: it is not counted as our latency."""
    answered = value("vipbx_ivr_key_answer_seconds_count", entry="pin")

    async def pin(call: CallSession) -> None:
        await call.get_digits(4, timeout=0.2)
        await call.answer()

    await metered.start(StasisApp(metered.client, {"pin": pin}))
    await metered.stasis_start("c1", "pin")
    await metered.send("ChannelDtmfReceived", "c1", digit="1")
    await metered.idle()
    assert value("vipbx_ivr_key_answer_seconds_count", entry="pin") == answered


async def test_a_failing_handler_is_counted(metered: Harness) -> None:
    failures = value("vipbx_ivr_failures_total", entry="bad")

    async def bad(call: CallSession) -> None:
        raise RuntimeError("bug")

    await metered.start(StasisApp(metered.client, {"bad": bad}))
    await metered.stasis_start("c1", "bad")
    await metered.until(lambda: metered.calls("POST", "/channels/c1/continue"))
    await metered.idle()
    assert value("vipbx_ivr_failures_total", entry="bad") == failures + 1
    assert value("vipbx_ivr_calls_active", entry="bad") == 0


def test_lock_events_are_counted_and_other_audit_events_are_not() -> None:
    before = value("vipbx_lockouts_total", event="pin_locked")
    metrics.lock_event("pin_locked")
    metrics.lock_event("pin_failed")
    assert value("vipbx_lockouts_total", event="pin_locked") == before + 1
    assert metrics.sample("vipbx_lockouts_total", {"event": "pin_failed"}) is None


def test_disk_space_is_read_at_each_scrape(tmp_path: Path) -> None:
    metrics.watch_disks({"spool": tmp_path, "gone": tmp_path / "missing"})
    assert value("vipbx_disk_free_bytes", volume="spool") > 0
    assert value("vipbx_disk_size_bytes", volume="spool") >= value("vipbx_disk_free_bytes", volume="spool")
    assert metrics.sample("vipbx_disk_free_bytes", {"volume": "gone"}) is None


def test_only_loopback_and_permitted_networks_may_scrape() -> None:
    closed = Listener("127.0.0.1", 9187)
    open_to = Listener("0.0.0.0", 9187, allow_remote=True, permit=("192.0.2.0/24",))
    assert permitted("127.0.0.1", closed) and permitted("::1", closed)
    assert not permitted("192.0.2.7", closed)
    assert permitted("192.0.2.7", open_to) and permitted("::ffff:192.0.2.7", open_to)
    assert not permitted("198.51.100.1", open_to) and not permitted("not an address", open_to)


async def test_the_endpoint_serves_the_registry() -> None:
    metrics.prime(["access"])
    server = MetricsServer(Listener("127.0.0.1", 0))
    server.start()
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/metrics")
        # Another host's connection is dropped before a thread is started for it.
        assert server._server is not None
        assert not server._server.verify_request(None, ("192.0.2.1", 40000))
        assert server._server.verify_request(None, ("127.0.0.1", 40000))
    finally:
        server.stop()
    assert answer.status_code == 200
    assert 'vipbx_ivr_calls_total{entry="access"}' in answer.text


async def test_a_key_nobody_waits_for_is_not_timed(metered: Harness) -> None:
    """A key pressed during a prompt that cannot be interrupted waits for the prompt's end: that
    wait is the prompt's length, not the IVR's slowness."""
    metered.auto_finish = False
    answered = value("vipbx_ivr_key_answer_seconds_count", entry="np")

    async def notice(call: CallSession) -> None:
        await call.play("sound:notice", barge_in=False)
        await call.answer()

    await metered.start(StasisApp(metered.client, {"np": notice}))
    await metered.stasis_start("c1", "np")
    await metered.until(lambda: metered.calls("POST", r"/channels/c1/play/.+"))
    await metered.send("ChannelDtmfReceived", "c1", digit="3")
    playback_id = metered.calls("POST", r"/channels/c1/play/.+")[0].url.path.rsplit("/", 1)[1]
    await metered.finish(playback_id, "c1")
    await metered.idle()
    assert value("vipbx_ivr_keys_total", entry="np") >= 1
    assert value("vipbx_ivr_key_answer_seconds_count", entry="np") == answered
