"""The fax page's logic: the user's fax settings and received faxes, always the viewer's own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from base.offload import run_blocking
from base.paths import Paths
from callstate.fax_state import EMAIL, EMAIL_MAX, FaxSettings, ReceivedFax

from .auth.sessions import Viewer
from .deps import WebDeps


class FaxRefused(Exception):
    """A change the page shows beside the form; `key` is its locale text."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class FaxView:
    settings: FaxSettings
    own_email: str  # what the address field shows: the chosen address, else empty
    faxes: list[ReceivedFax]


def problem(enabled: bool, email: str, yaml_email: str | None) -> str | None:
    """The locale key of what is wrong with a change, or None."""
    email = email.strip()
    if email and (len(email) > EMAIL_MAX or not EMAIL.fullmatch(email)):
        return "fax_bad_email"
    if enabled and not (email or yaml_email):
        return "fax_needs_email"
    return None


async def view(deps: WebDeps, who: Viewer) -> FaxView:
    fax = deps.state.fax
    settings = await run_blocking(fax.settings, who.tenant_id, who.user_id)
    faxes = await run_blocking(fax.received, who.tenant_id, who.user_id)
    return FaxView(settings, settings.email if settings.own_email and settings.email else "", faxes)


async def change(deps: WebDeps, who: Viewer, *, enabled: bool, email: str) -> FaxSettings:
    key = problem(enabled, email, who.who.user.email)
    if key:
        raise FaxRefused(key)
    return await run_blocking(lambda: deps.state.fax.set_settings(
        who.tenant_id, who.user_id, enabled=enabled, email=email.strip() or None, actor=who.actor, source="web"))


# Row ids are 64-bit integers in SQLite and PostgreSQL: a larger number in a URL is nobody's fax
# (and must not reach the driver, which would fail on it).
MAX_ID = 2 ** 63 - 1


async def own_fax(deps: WebDeps, who: Viewer, fax_id: int) -> ReceivedFax | None:
    if not 0 < fax_id <= MAX_ID:
        return None
    return await run_blocking(deps.state.fax.find, who.tenant_id, who.user_id, fax_id)


def pdf_path(deps: WebDeps, fax: ReceivedFax) -> Path:
    return Paths(deps.home).fax_pdf(fax.tenant_id, fax.user_id, fax.id)


async def delete(deps: WebDeps, who: Viewer, fax_id: int) -> bool:
    if not 0 < fax_id <= MAX_ID:
        return False
    gone = await run_blocking(lambda: deps.state.fax.delete(who.tenant_id, who.user_id, fax_id,
                                                            actor=who.actor, source="web"))
    if gone is None:
        return False
    await run_blocking(pdf_path(deps, gone).unlink, missing_ok=True)
    return True
