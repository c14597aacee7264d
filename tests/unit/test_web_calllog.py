"""The call log: classification of call records (callstate/calllog.py) and the page and API over
the table, each user seeing only their own calls. The table itself: test_callstate_calllog.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_callstate_calllog import cdr, config_with_twin, entry
from webharness import WebHarness, example_config, make_harness

from callstate.calllog import (
    FORWARDED,
    INCOMING,
    MISSED,
    OUTGOING,
    RANK,
    VOICEMAIL,
    classify,
)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path, config_with_twin())
    yield harness
    harness.state.close()


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


# ------------------------------------------------------------------ recorded records

SAMPLES = Path(__file__).with_name("calllog_cdr_samples.json")


def test_records_recorded_from_real_calls_classify_as_the_calls_were() -> None:
    """Cdr events as Asterisk 22's cdr_manager sent them for the calls of
    tests/e2e/test_web_calllog_live.py: Mikko calls Anna, who answers; an outside caller gives up
    while she rings; another reaches her voicemail (two records: the ring, then Stasis); a third
    is forwarded at once to Sara, who answers."""
    config = example_config()
    rows = [row for event in json.loads(SAMPLES.read_text()) for row in classify(config, event)]
    merged: dict[tuple[str, str], tuple[str, str, str]] = {}
    for row in rows:
        key = (row.user_id, row.call_id)
        if key not in merged or RANK[row.kind] > RANK[merged[key][0]]:
            merged[key] = (row.kind, row.number, row.target)
    assert sorted(merged.values()) == sorted([
        (OUTGOING, "+358401110001", ""),  # Mikko's
        (INCOMING, "+358401110002", ""),  # Anna's, from Mikko
        (MISSED, "+358451234567", ""),
        (VOICEMAIL, "+358451234568", ""),
        (FORWARDED, "+358451234569", "+358401110003"),  # Anna's, to Sara
        (INCOMING, "+358451234569", ""),  # Sara's
    ])


async def test_the_page_goes_to_older_calls_and_back(site: WebHarness) -> None:
    site.state.call_log.record([entry("anna.virtanen", n, MISSED if n % 2 else INCOMING) for n in range(1, 31)])
    older = re.compile(r'<a href="([^"]+)" id="calllog-older"')
    async with site.client() as client:
        await site.login(client, site.who("acme", "anna.virtanen"))
        first = await client.get("/calls")
        assert len(ROW.findall(first.text)) == 25 and 'id="calllog-newest"' not in first.text
        link = older.search(first.text)
        assert link
        second = await client.get(link.group(1).replace("&amp;", "&"))
        assert len(ROW.findall(second.text)) == 5 and not older.search(second.text)
        assert 'id="calllog-newest"' in second.text
        # The filter stays with the pages.
        missed = await client.get("/calls", params={"kind": "missed"})
        assert ROW.findall(missed.text) == [MISSED] * 15 and not older.search(missed.text)
