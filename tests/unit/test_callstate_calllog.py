"""The call log's table through the call-state service: records of one call merged by rank, keyset
pages, filters, retention, and rows kept apart per tenant and user. Services come from
`make_service`, so that tests/e2e/test_callstate_calllog_postgres.py runs these on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import callstate_support as support
from callstate_support import FakeClock, MakeService
from webharness import example_config

from base.model import Config
from callstate.calllog import INCOMING, MISSED, VOICEMAIL, CallEntry

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
# The shared fixtures, by name (a PostgreSQL run replaces make_service and raw_db).
clock, db_path, make_service, raw_db = support.clock, support.db_path, support.make_service, support.raw_db


def config_with_twin() -> Config:
    """The examples, with a Borealis user whose id is the same as Acme's Anna."""
    config = example_config()
    tenants = []
    for tenant in config.tenants:
        if tenant.id == "borealis":
            tenant = replace(tenant, users=(replace(tenant.users[0], id="anna.virtanen"), *tenant.users[1:]))
        tenants.append(tenant)
    return replace(config, tenants=tuple(tenants))


CONFIG = config_with_twin()


def cdr(trail: str, *, linked: str = "1700000000.1", disposition: str = "NO ANSWER", billsec: int = 0,
        dst_channel: str = "", source: str = "+358451234567", clid: str = '"" <+358451234567>') -> dict[str, str]:
    """A Cdr event as cdr_manager sends it (only the headers the call log reads vary)."""
    return {"Event": "Cdr", "Source": source, "CallerID": clid, "Disposition": disposition,
            "BillableSeconds": str(billsec), "DestinationChannel": dst_channel, "LinkedID": linked,
            "VipbxLog": trail}


def entry(user: str, n: int, kind: str = INCOMING, tenant: str = "acme", number: str = "+358451234567",
          minutes: int = 0) -> CallEntry:
    return CallEntry(tenant, user, f"{1700000000 + n}.1/in", T0 + timedelta(minutes=minutes or n), kind,
                     0 if kind == MISSED else 30, number, "")


def test_the_records_of_one_call_merge_by_rank_in_any_order(make_service: MakeService) -> None:
    log = make_service().call_log
    ring = cdr("at/1793000000 in/acme+anna.virtanen", linked="9.1")
    to_vm = cdr("at/1793000000 in/acme+anna.virtanen vm/acme+anna.virtanen", linked="9.1",
                disposition="ANSWERED", billsec=15)
    log.record_cdr(to_vm)
    log.record_cdr(ring)
    log.record_cdr(to_vm)  # sent twice: no second row
    calls = log.page("acme", "anna.virtanen").calls
    assert [(c.kind, c.duration) for c in calls] == [(VOICEMAIL, 15)]
    assert make_service().call_log.page("acme", "anna.virtanen").calls == calls  # stored


def test_pages_are_newest_first_without_gaps_or_repeats(make_service: MakeService) -> None:
    log = make_service().call_log
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


def test_filters_and_retention(make_service: MakeService, clock: FakeClock) -> None:
    clock.now = T0
    log = make_service(clock=clock).call_log
    log.record([entry("anna.virtanen", 1, MISSED), entry("anna.virtanen", 2, INCOMING),
                entry("anna.virtanen", 3, MISSED, minutes=60 * 24 * 3)])
    assert [c.kind for c in log.page("acme", "anna.virtanen", kind=MISSED).calls] == [MISSED, MISSED]
    assert len(log.page("acme", "anna.virtanen", since=T0, until=T0 + timedelta(days=1)).calls) == 2
    clock.advance(days=180, hours=12)
    assert log.prune(180) == 2
    assert len(log.page("acme", "anna.virtanen").calls) == 1


def test_rows_are_kept_apart_per_tenant_and_user(make_service: MakeService) -> None:
    log = make_service().call_log
    log.record([entry("anna.virtanen", 1), entry("anna.virtanen", 2, tenant="borealis"),
                entry("mikko.korhonen", 3)])
    assert [c.call_id for c in log.page("acme", "anna.virtanen").calls] == ["1700000001.1/in"]
    assert [c.call_id for c in log.page("borealis", "anna.virtanen").calls] == ["1700000002.1/in"]
