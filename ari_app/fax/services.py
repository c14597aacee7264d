"""After a fax call: the TIFF Asterisk wrote becomes the fax's PDF, which is e-mailed to the
user's fax address; failures are tried again with a growing pause (the row in the call-state
database is the queue, so a restart loses nothing).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from base.offload import run_blocking
from base.paths import fax_pdf
from callstate import CallStateService
from callstate.fax_state import NONE, ReceivedFax
from notify import Messenger
from notify.errors import DeliveryError
from notify.messenger import Attachment

from .convert import ConversionError, tiff_to_pdf

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how soon a fax recorded by the dialplan is sent
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX_ATTEMPTS = 10  # then given up (about 17 hours of doubling pauses, capped at 4 hours)
RETRY_CAP = timedelta(hours=4)


class FaxService:
    def __init__(self, callstate: CallStateService, messenger: Messenger | None, fax_dir: Path) -> None:
        self.callstate = callstate
        self.messenger = messenger
        self.fax_dir = fax_dir  # <spool>/fax: the TIFFs Asterisk wrote, each user's PDFs below

    async def run(self) -> None:
        """Until cancelled: every few seconds, the faxes whose e-mail is due."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fax delivery round failed")
            await asyncio.sleep(POLL_SECONDS)

    async def run_once(self) -> int:
        due = await run_blocking(self.callstate.fax.due)
        for fax in due:
            await self.deliver(fax)
        return len(due)

    def pdf(self, fax: ReceivedFax) -> Path:
        return fax_pdf(self.fax_dir, fax.tenant_id, fax.user_id, fax.id)

    async def deliver(self, fax: ReceivedFax) -> None:
        state = self.callstate.fax
        try:
            data = await run_blocking(self.make_pdf, fax)
        except ConversionError as exc:
            log.warning("fax #%d of %s/%s: no PDF: %s", fax.id, fax.tenant_id, fax.user_id, exc)
            await run_blocking(state.delivery_failed, fax.id, f"no PDF: {exc}", None)
            return
        if fax.email is None:
            await run_blocking(state.delivery_failed, fax.id, "no e-mail address", None)
            return
        try:
            if self.messenger is None:
                raise DeliveryError("no messenger", permanent=True)
            await self.messenger.email(fax.email, _subject(fax), _body(fax),
                                       (Attachment(f"fax-{fax.id}.pdf", "application", "pdf", data),))
        except DeliveryError as exc:
            retry = None if exc.permanent or fax.attempts + 1 >= RETRY_MAX_ATTEMPTS else _pause(fax.attempts)
            log.warning("fax #%d to %s not sent (%s): %s", fax.id, fax.email,
                        "giving up" if retry is None else f"again in {retry}", exc)
            await run_blocking(state.delivery_failed, fax.id, str(exc), retry)
            return
        await run_blocking(state.delivered, fax.id)
        log.info("fax #%d of %s/%s e-mailed to %s", fax.id, fax.tenant_id, fax.user_id, fax.email)

    def make_pdf(self, fax: ReceivedFax) -> bytes:
        """The fax's PDF, made from its TIFF once (the TIFF is then removed)."""
        pdf = self.pdf(fax)
        if pdf.exists():
            return pdf.read_bytes()
        tiff = self.fax_dir / Path(fax.tiff).name
        data, _ = tiff_to_pdf(tiff)
        pdf.parent.mkdir(parents=True, exist_ok=True)
        partial = pdf.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(pdf)
        tiff.unlink(missing_ok=True)
        return data


def _pause(failed: int) -> timedelta:
    return min(RETRY_FIRST * (2 ** failed), RETRY_CAP)


def _subject(fax: ReceivedFax) -> str:
    return f"Fax from {fax.caller or fax.remote_id or 'unknown'} ({fax.pages} p.)"


def _body(fax: ReceivedFax) -> str:
    lines = [f"A fax was received on {fax.received_at:%Y-%m-%d %H:%M} UTC.",
             f"From: {fax.caller or '-'}" + (f" ({fax.remote_id})" if fax.remote_id else ""),
             f"Pages: {fax.pages}"]
    if fax.status != "received":
        lines.append("The transfer was interrupted: the pages that arrived are attached.")
    return "\n".join(lines) + "\n"


__all__ = ["NONE", "FaxService"]
