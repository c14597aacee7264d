"""The call log page's logic: the filter (kind, date range in the platform's time zone), one page
of the viewer's calls from the call-state service, and the other party named when a colleague."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from base.model import Config, Tenant, TenantUser
from base.offload import run_blocking
from callstate import CallStateService, SettingsError
from callstate.calllog import KINDS, CallEntry
from callstate.calllog_state import CallPage

ALL = "all"
FILTER_KINDS = (ALL, *KINDS)
PAGE_SIZE = 25


class FilterRefused(ValueError):
    """A filter value that is not one; `key` is its locale text."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class CallFilter:
    kind: str = ALL
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    before: str | None = None  # the page cursor


@dataclass(frozen=True)
class CallRow:
    call_id: str
    kind: str
    started: datetime  # in the platform's time zone
    duration: int
    number: str
    name: str | None  # the colleague's name when the number is one of the tenant's users
    target: str
    target_name: str | None


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterRefused("calllog_bad_date") from None


def parse_filter(kind: str | None, date_from: str | None, date_to: str | None,
                 before: str | None) -> CallFilter:
    kind = kind or ALL
    if kind not in FILTER_KINDS:
        raise FilterRefused("calllog_bad_kind")
    first, last = _date(date_from), _date(date_to)
    if first and last and last < first:
        raise FilterRefused("calllog_bad_range")
    return CallFilter(kind, first, last, before or None)


def zone(config: Config) -> ZoneInfo:
    return ZoneInfo(config.platform.notifications.timezone)


def _names(tenant: Tenant) -> dict[str, str]:
    """The tenant's users by number and by extension (never another tenant's)."""
    names: dict[str, str] = {}
    for user in tenant.users:
        names[user.number] = user.name
        names[user.extension] = user.name
    return names


def calls_page(state: CallStateService, who: TenantUser, chosen: CallFilter,
               limit: int = PAGE_SIZE) -> tuple[list[CallRow], str | None]:
    """One page of the viewer's calls, newest first, and the cursor of the next; FilterRefused
    for a cursor that is not one."""
    tz = zone(state.config)
    since = datetime.combine(chosen.date_from, time(), tz) if chosen.date_from else None
    until = datetime.combine(chosen.date_to + timedelta(days=1), time(), tz) if chosen.date_to else None
    try:
        page: CallPage = state.call_log.page(who.tenant.id, who.user.id,
                                             kind=None if chosen.kind == ALL else chosen.kind,
                                             since=since, until=until, before=chosen.before, limit=limit)
    except SettingsError:
        raise FilterRefused("calllog_bad_page") from None
    names = _names(who.tenant)
    return [_row(call, tz, names) for call in page.calls], page.next_cursor


def _row(call: CallEntry, tz: ZoneInfo, names: dict[str, str]) -> CallRow:
    return CallRow(call.call_id, call.kind, call.started_at.astimezone(tz), call.duration, call.number,
                   names.get(call.number), call.target, names.get(call.target) if call.target else None)


async def load_calls(state: CallStateService, who: TenantUser, chosen: CallFilter,
                     limit: int = PAGE_SIZE) -> tuple[list[CallRow], str | None]:
    return await run_blocking(calls_page, state, who, chosen, limit)
