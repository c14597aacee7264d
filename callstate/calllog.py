"""The call log's rules: which users a call record (Asterisk CDR) concerns, and how.

The dialplan leaves a trail on the calling channel, copied into the CDR variable `vipbx_log`
(templates/extensions.conf.j2, `vipbx-calllog`): space-separated entries

    at/EPOCH.MS       when the call began (always the first entry)
    out/TENANT+USER   a device of this user placed the call (then always the second)
    in/TENANT+USER    the call rang this user (vipbx-call-user)
    fwd/TENANT+USER   this user's forward sent it on (the next entry is where to)
    vm/TENANT+USER    it went to this user's voicemail
    dial/+NUMBER      it left the platform for this number

Asterisk writes one CDR per attempt of a call (a ring that failed, then voicemail, ...), all
with the same `linkedid`. Each record is classified alone; the rows of one call are merged by
rank (voicemail > forwarded > answered > missed), so the order and repetition of records (and a
record sent twice) do not change the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from base.model import Config

INCOMING = "incoming"  # rang the user and the user answered
OUTGOING = "outgoing"
MISSED = "missed"
FORWARDED = "forwarded"
VOICEMAIL = "voicemail"
KINDS = (INCOMING, OUTGOING, MISSED, FORWARDED, VOICEMAIL)
# Which outcome of an incoming call wins when several records of one call disagree.
RANK = {MISSED: 1, INCOMING: 2, FORWARDED: 3, VOICEMAIL: 4, OUTGOING: 0}
# The CDR headers read (cdr_manager: the standard ones and those of its [mappings]).
TRAIL = "VipbxLog"
LINKED_ID = "LinkedID"
NUMBER_MAX = 40
NAME_MAX = 80


@dataclass(frozen=True)
class CallEntry:
    """One row of one user's call log."""

    tenant_id: str
    user_id: str
    call_id: str  # linkedid + "/in" or "/out": a call to oneself is both
    started_at: datetime
    kind: str
    duration: int  # seconds talked (billsec); 0 when unanswered
    number: str  # the other party's number ('' when unknown)
    name: str  # the other party's caller name ('' when none)
    target: str = ""  # forwarded: where to


def parse_trail(text: str) -> list[tuple[str, str]]:
    """(kind, value) of each well-formed entry; anything else is skipped."""
    entries = []
    for item in text.split():
        kind, _, value = item.partition("/")
        if kind in ("at", "out", "in", "fwd", "vm", "dial") and value:
            entries.append((kind, value))
    return entries


def _who(value: str) -> tuple[str, str] | None:
    tenant, plus, user = value.partition("+")
    return (tenant, user) if plus and tenant and user else None


def _started(trail: list[tuple[str, str]]) -> datetime:
    try:
        return datetime.fromtimestamp(float(next(v for k, v in trail if k == "at")), UTC)
    except (StopIteration, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _seconds(text: str | None) -> int:
    try:
        return max(0, int(str(text)))
    except ValueError:
        return 0


def _caller(event: dict[str, str]) -> tuple[str, str]:
    """The calling party's number and name from the CDR (`Source`, `CallerID` as "name" <num>)."""
    number = event.get("Source", "").strip()
    clid = event.get("CallerID", "")
    name = clid.split("<", 1)[0].strip().strip('"').strip() if "<" in clid else ""
    return number[:NUMBER_MAX], ("" if name == number else name[:NAME_MAX])


def _party(config: Config, kind: str, value: str) -> str:
    """The number an entry stands for: a user's public number, or the dialled one."""
    if kind == "dial":
        return value[:NUMBER_MAX]
    who = _who(value)
    found = config.find_user(*who) if who else None
    return found.user.number if found else ""


def classify(config: Config, event: dict[str, str]) -> list[CallEntry]:
    """The rows one CDR event makes; none for a record without a trail (not a user's call) or
    without a linkedid. Users no longer in the configuration are skipped."""
    trail = parse_trail(event.get(TRAIL, ""))
    linked = event.get(LINKED_ID, "").strip()[:64]
    if not trail or not linked:
        return []
    started = _started(trail)
    trail = [entry for entry in trail if entry[0] != "at"]
    if not trail:
        return []
    answered = event.get("Disposition", "") == "ANSWERED" and bool(event.get("DestinationChannel"))
    billsec = _seconds(event.get("BillableSeconds"))
    number, name = _caller(event)
    entries: dict[tuple[str, str, str], CallEntry] = {}

    def add(entry: CallEntry) -> None:
        if config.find_user(entry.tenant_id, entry.user_id) is None:
            return
        key = (entry.tenant_id, entry.user_id, entry.call_id)
        old = entries.get(key)
        if old is None or RANK[entry.kind] > RANK[old.kind]:
            entries[key] = entry

    rang = [i for i, (kind, _) in enumerate(trail) if kind == "in"]
    last_rang = rang[-1] if rang else -1
    kind0, value0 = trail[0]
    caller = _who(value0) if kind0 == "out" else None
    if caller:
        dialled = next(((k, v) for k, v in trail[1:] if k in ("in", "dial")), None)
        party = _party(config, *dialled) if dialled else ""
        add(CallEntry(*caller, f"{linked}/out", started, OUTGOING, billsec if answered else 0, party, ""))
    for i in rang:
        who = _who(trail[i][1])
        if who is None:
            continue
        later = trail[i + 1:]
        if ("vm", trail[i][1]) in later:
            add(CallEntry(*who, f"{linked}/in", started, VOICEMAIL, billsec, number, name))
            continue
        if ("fwd", trail[i][1]) in later:
            at = i + 1 + later.index(("fwd", trail[i][1]))
            onward = trail[at + 1] if at + 1 < len(trail) else None
            target = _party(config, *onward) if onward else ""
            add(CallEntry(*who, f"{linked}/in", started, FORWARDED, 0, number, name, target))
            continue
        if i == last_rang and answered:
            add(CallEntry(*who, f"{linked}/in", started, INCOMING, billsec, number, name))
        else:
            add(CallEntry(*who, f"{linked}/in", started, MISSED, 0, number, name))
    return list(entries.values())
