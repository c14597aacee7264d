"""The call log: classification of call records, the per-user table (merging, pages, filters,
retention) and the page and API over it, each user seeing only their own calls."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from webharness import WebHarness, example_config, make_harness

from base.model import Config
from callstate.calllog import (
    FORWARDED,
    INCOMING,
    MISSED,
    OUTGOING,
    VOICEMAIL,
    CallEntry,
    classify,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def cdr(trail: str, *, linked: str = "1700000000.1", disposition: str = "NO ANSWER", billsec: int = 0,
        dst_channel: str = "", source: str = "+358451234567", clid: str = '"" <+358451234567>') -> dict[str, str]:
    """A Cdr event as cdr_manager sends it (only the headers the call log reads vary)."""
    return {"Event": "Cdr", "Source": source, "CallerID": clid, "Disposition": disposition,
            "BillableSeconds": str(billsec), "DestinationChannel": dst_channel, "LinkedID": linked,
            "VipbxLog": trail}


def config_with_twin() -> Config:
    """The examples, with a Borealis user whose id is the same as Acme's Anna."""
    config = example_config()
    tenants = []
    for tenant in config.tenants:
        if tenant.id == "borealis":
            users = (replace(tenant.users[0], id="anna.virtanen"), *tenant.users[1:])
            tenant = replace(tenant, users=users)
        tenants.append(tenant)
    return replace(config, tenants=tuple(tenants))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path, config_with_twin())
    yield harness
    harness.state.close()


def entry(user: str, n: int, kind: str = INCOMING, tenant: str = "acme", number: str = "+358451234567",
          minutes: int = 0) -> CallEntry:
    return CallEntry(tenant, user, f"{1700000000 + n}.1/in", T0 + timedelta(minutes=minutes or n), kind,
                     0 if kind == MISSED else 30, number, "")


# ------------------------------------------------------------------ classification


def test_a_call_between_colleagues_is_outgoing_for_one_and_incoming_for_the_other() -> None:
    config = example_config()
    rows = classify(config, cdr("at/1793000000 out/acme+mikko.korhonen in/acme+anna.virtanen",
                                disposition="ANSWERED", billsec=42, dst_channel="PJSIP/acme-anna-soft-0001",
                                source="+358401110002", clid='"Mikko Korhonen" <+358401110002>'))
    by_user = {r.user_id: r for r in rows}
    assert by_user["mikko.korhonen"].kind == OUTGOING
    assert by_user["mikko.korhonen"].number == "+358401110001"  # whom he called
    assert by_user["mikko.korhonen"].duration == 42
    assert by_user["anna.virtanen"].kind == INCOMING and by_user["anna.virtanen"].number == "+358401110002"
    assert by_user["anna.virtanen"].started_at == datetime.fromtimestamp(1793000000, UTC)


def test_unanswered_forwarded_and_voicemail() -> None:
    config = example_config()
    missed = classify(config, cdr("at/1 in/acme+anna.virtanen"))
    assert [(r.kind, r.duration) for r in missed] == [(MISSED, 0)]
    forwarded = classify(config, cdr("at/1 in/acme+anna.virtanen fwd/acme+anna.virtanen in/acme+sara.lindqvist",
                                     disposition="ANSWERED", billsec=9, dst_channel="PJSIP/acme-sara-soft-1"))
    by_user = {r.user_id: r for r in forwarded}
    assert by_user["anna.virtanen"].kind == FORWARDED and by_user["anna.virtanen"].target == "+358401110003"
    assert by_user["sara.lindqvist"].kind == INCOMING and by_user["sara.lindqvist"].duration == 9
    outside = classify(config, cdr("at/1 in/acme+anna.virtanen fwd/acme+anna.virtanen dial/+358505550101"))
    assert outside[0].target == "+358505550101"
    voicemail = classify(config, cdr("at/1 in/acme+anna.virtanen vm/acme+anna.virtanen", disposition="ANSWERED",
                                     billsec=12))
    assert [(r.kind, r.duration) for r in voicemail] == [(VOICEMAIL, 12)]


def test_records_without_a_trail_or_of_unknown_users_make_no_rows() -> None:
    config = example_config()
    assert classify(config, cdr("")) == []
    assert classify(config, cdr("at/1 in/acme+anna.virtanen", linked="")) == []
    assert classify(config, cdr("at/1 in/acme+nobody in/ghost+anna.virtanen garbage /x")) == []


def test_the_records_of_one_call_merge_by_rank_in_any_order(site: WebHarness) -> None:
    log = site.state.call_log
    ring = cdr("at/1793000000 in/acme+anna.virtanen", linked="9.1")
    to_vm = cdr("at/1793000000 in/acme+anna.virtanen vm/acme+anna.virtanen", linked="9.1",
                disposition="ANSWERED", billsec=15)
    log.record_cdr(to_vm)
    log.record_cdr(ring)
    log.record_cdr(to_vm)  # sent twice: no second row
    calls = log.page("acme", "anna.virtanen").calls
    assert [(c.kind, c.duration) for c in calls] == [(VOICEMAIL, 15)]


# ------------------------------------------------------------------ pages, filters, retention


def test_pages_are_newest_first_without_gaps_or_repeats(site: WebHarness) -> None:
    log = site.state.call_log
    log.record([entry("anna.virtanen", n, minutes=n // 2 + 1) for n in range(1, 24)])  # equal times too
    seen: list[str] = []
    before = None
    while True:
        page = log.page("acme", "anna.virtanen", limit=5, before=before)
        seen += [c.call_id for c in page.calls]
        if page.next_cursor is None:
            break
        before = page.next_cursor
    assert len(seen) == len(set(seen)) == 23
    everything = log.page("acme", "anna.virtanen", limit=100).calls
    assert [c.call_id for c in everything] == seen
    assert all(a.started_at >= b.started_at for a, b in pairwise(everything))


def test_filters_and_retention(site: WebHarness) -> None:
    log = site.state.call_log
    log.record([entry("anna.virtanen", 1, MISSED), entry("anna.virtanen", 2, INCOMING),
                entry("anna.virtanen", 3, MISSED, minutes=60 * 24 * 3)])
    assert [c.kind for c in log.page("acme", "anna.virtanen", kind=MISSED).calls] == [MISSED, MISSED]
    day = log.page("acme", "anna.virtanen", since=T0, until=T0 + timedelta(days=1)).calls
    assert len(day) == 2
    site.state.store._clock = lambda: T0 + timedelta(days=180, hours=12)
    assert log.prune(180) == 2
    assert len(log.page("acme", "anna.virtanen").calls) == 1


# ------------------------------------------------------------------ the page and the API

ROW = re.compile(r'<tr class="call" data-kind="([a-z]+)">')


async def test_the_page_lists_own_calls_with_colleagues_named(site: WebHarness) -> None:
    site.state.call_log.record([entry("anna.virtanen", 1, INCOMING, number="+358401110002"),
                                entry("anna.virtanen", 2, MISSED, number="+358451234567"),
                                entry("mikko.korhonen", 3, MISSED)])
    async with site.client() as client:
        await site.login(client, site.who("acme", "anna.virtanen"))
        page = await client.get("/calls")
        assert page.status_code == 200
        assert ROW.findall(page.text) == [MISSED, INCOMING]
        assert "Mikko Korhonen" in page.text and "+358451234567" in page.text
        missed = await client.get("/calls", params={"kind": "missed"})
        assert ROW.findall(missed.text) == [MISSED]
        bad = await client.get("/calls", params={"kind": "everything"})
        assert bad.status_code == 422 and ROW.findall(bad.text) == []
        backwards = await client.get("/calls", params={"date_from": "2026-11-03", "date_to": "2026-11-01"})
        assert backwards.status_code == 422
        api = (await client.get("/api/v1/calls", params={"limit": 1})).json()
        assert [c["kind"] for c in api["calls"]] == [MISSED] and api["next"]
        rest = (await client.get("/api/v1/calls", params={"before": api["next"]})).json()
        assert [(c["kind"], c["name"]) for c in rest["calls"]] == [(INCOMING, "Mikko Korhonen")]
        assert rest["next"] is None
        assert (await client.get("/api/v1/calls", params={"before": "nonsense"})).status_code == 422
        assert (await client.get("/api/v1/calls", params={"date_from": "yesterday"})).status_code == 422


async def test_only_own_calls_not_a_colleagues_nor_a_same_id_user_of_another_tenant(site: WebHarness) -> None:
    site.state.call_log.record([entry("anna.virtanen", 1), entry("anna.virtanen", 2, MISSED)])
    for tenant, user in (("borealis", "anna.virtanen"), ("acme", "mikko.korhonen")):
        async with site.client() as client:
            await site.login(client, site.who(tenant, user))
            page = await client.get("/calls")
            assert page.status_code == 200 and ROW.findall(page.text) == []
            assert (await client.get("/api/v1/calls")).json() == {"calls": [], "next": None}
            # Anna's page cursor gives nothing either: the cursor is only a position.
            cursor = site.state.call_log.page("acme", "anna.virtanen", limit=1).next_cursor
            assert (await client.get("/api/v1/calls", params={"before": cursor})).json()["calls"] == []
    assert len(site.state.call_log.page("acme", "anna.virtanen").calls) == 2  # nothing changed


async def test_anonymous_requests_are_refused(site: WebHarness) -> None:
    async with site.client() as client:
        page = await client.get("/calls")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=/calls")
        assert (await client.get("/api/v1/calls")).status_code == 401
