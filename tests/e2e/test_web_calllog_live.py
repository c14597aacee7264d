"""The call log from real calls: answered between users, missed, to voicemail and forwarded
calls reach the call-state database through Asterisk's call records (cdr_manager over AMI), and
the page in a real browser lists them with their kinds and the other party."""

from __future__ import annotations

import asyncio

import pytest
from selenium.webdriver.support.ui import Select
from support import Person, Rig, eventually
from webrig import Site

from callstate.calllog import (
    FORWARDED,
    INCOMING,
    MISSED,
    OUTGOING,
    VOICEMAIL,
    CallEntry,
)

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support", "webrig")

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
MIKKO = Person("acme", "mikko.korhonen", "+358401110002", "acme-mikko-soft", "")
SARA = Person("acme", "sara.lindqvist", "+358401110003", "acme-sara-soft", "")
OUTSIDE = "+358451234567"
OUTSIDE_2 = "+358451234568"
OUTSIDE_3 = "+358451234569"


def calls_of(rig: Rig, person: Person) -> list[CallEntry]:
    return rig.state.call_log.page(person.tenant, person.user, limit=50).calls


def long_ami_sessions(rig: Rig) -> int:
    """AMI sessions logged in for 2 s or more: the service's other sessions last a moment."""
    rows = [line.split() for line in rig.pbx.cli("manager show connected").splitlines()]
    return sum(1 for row in rows if len(row) >= 4 and row[0] == "vipbx" and row[3].isdigit() and int(row[3]) >= 2)


async def recorder_connected(rig: Rig) -> None:
    """The service's call-log session is logged in to AMI (the one that lasts)."""
    await eventually(lambda: long_ami_sessions(rig) >= 1, 15, "the call log's AMI session")


async def place_calls(rig: Rig) -> None:
    # Mikko calls Anna's number from his device; she answers and they talk a moment.
    call = await rig.phone.call(ANNA.number, device=MIKKO.device)
    leg = await rig.phone.incoming(ANNA.device, 10)
    await leg.answer()
    await call.wait_state("Up", 5)
    await asyncio.sleep(2.2)
    await call.hangup()
    await leg.wait_hangup(5)

    # An outside caller gives up while Anna's phone rings: missed.
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE)
    await rig.phone.incoming(ANNA.device, 10)
    await call.hangup()

    # Unanswered within her delay: her voicemail takes it.
    rig.state.set_forward(ANNA.tenant, ANNA.user, "no_answer", "voicemail", actor="e2e", source="test",
                          no_answer_seconds=5)
    since = rig.observer.mark()
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE_2)
    await rig.phone.incoming(ANNA.device, 10)
    await call.wait_state("Up", 15)
    await rig.observer.wait_prompt(OUTSIDE_2, "vm-default-greeting-pre", since=since)
    await call.hangup()

    # Forwarded at once to Sara (extension 103), who answers.
    rig.state.set_forward(ANNA.tenant, ANNA.user, "immediate", "103", actor="e2e", source="test")
    call = await rig.phone.call(ANNA.number, caller_number=OUTSIDE_3)
    sara = await rig.phone.incoming(SARA.device, 10)
    await sara.answer()
    await call.wait_state("Up", 5)
    await asyncio.sleep(1.2)
    await call.hangup()
    await sara.wait_hangup(5)
    rig.state.reset_routing(ANNA.tenant, ANNA.user, actor="e2e", source="test")


async def test_real_calls_are_in_the_log_and_on_the_page(site: Site) -> None:
    rig = site.rig
    await recorder_connected(rig)
    await place_calls(rig)

    def anna_done() -> list[CallEntry] | None:
        calls = calls_of(rig, ANNA)
        return calls if {c.kind for c in calls} >= {INCOMING, MISSED, VOICEMAIL, FORWARDED} else None

    anna = await eventually(anna_done, 20, "Anna's four calls in the log")
    by_kind = {c.kind: c for c in anna}
    assert len(anna) == 4, anna
    assert by_kind[INCOMING].number == MIKKO.number and by_kind[INCOMING].duration >= 2
    assert by_kind[MISSED].number == OUTSIDE and by_kind[MISSED].duration == 0
    assert by_kind[VOICEMAIL].number == OUTSIDE_2
    assert by_kind[FORWARDED].number == OUTSIDE_3 and by_kind[FORWARDED].target == SARA.number
    # Newest first: the forward was the last call.
    assert [c.kind for c in anna] == [FORWARDED, VOICEMAIL, MISSED, INCOMING]

    mikko = await eventually(lambda: calls_of(rig, MIKKO), 10, "Mikko's call")
    assert [(c.kind, c.number) for c in mikko] == [(OUTGOING, ANNA.number)]
    assert mikko[0].duration >= 2
    sara = await eventually(lambda: calls_of(rig, SARA), 10, "Sara's call")
    assert [(c.kind, c.number) for c in sara] == [(INCOMING, OUTSIDE_3)]

    # The page, in the browser.
    b = site.browser
    await site.log_in(site.who(ANNA.tenant, ANNA.user))
    await asyncio.to_thread(b.open, "/calls")
    rows = await asyncio.to_thread(b.find_all, "tr.call")
    kinds = [row.get_attribute("data-kind") for row in rows]
    assert kinds == [FORWARDED, VOICEMAIL, MISSED, INCOMING]
    answered = rows[3].text
    assert "Mikko Korhonen" in answered and MIKKO.number in answered  # a colleague, by name
    assert OUTSIDE in rows[2].text
    assert "Sara Lindqvist" in rows[0].text  # where the forward went
    await asyncio.to_thread(b.screenshot, "calllog")

    # Filtered to the missed ones, through the form.
    await asyncio.to_thread(lambda: Select(b.find("#calllog-kind")).select_by_value(MISSED))
    await asyncio.to_thread(b.click, "#calllog-filter")
    await asyncio.to_thread(b.wait_for, "#calllog-table")
    rows = await asyncio.to_thread(b.find_all, "tr.call")
    assert [row.get_attribute("data-kind") for row in rows] == [MISSED]
    await asyncio.to_thread(b.open, "/calls")
    await asyncio.to_thread(b.screenshot, "calllog-phone", phone=True)
