"""Message waiting: ask app_voicemail to recount a mailbox and notify subscribed phones."""

from __future__ import annotations

import asyncio
import logging

from base.ami import AmiSettings, ami_session

log = logging.getLogger(__name__)


async def refresh_mwi(ami: AmiSettings, context: str, mailbox: str, *, timeout: float = 5.0) -> bool:
    """AMI `VoicemailRefresh` for `mailbox@context`. Never raises: the message is already stored,
    and phones catch up at the next change or poll. True when Asterisk acknowledged it."""
    try:
        async with asyncio.timeout(timeout):
            async with ami_session(ami, timeout=timeout) as session:
                await session.action("VoicemailRefresh", Context=context, Mailbox=mailbox)
        return True
    except Exception as exc:  # noqa: BLE001 -- AmiError, OSError, timeout, a protocol surprise: all alike
        log.warning("MWI refresh for %s@%s failed: %s", mailbox, context, exc or type(exc).__name__)
        return False


async def refresh_all_mwi(ami: AmiSettings, *, timeout: float = 10.0) -> bool:
    """AMI `VoicemailRefresh` without a mailbox: app_voicemail recounts every mailbox it knows and
    notifies the phones (after a restore replaced the spool under it). Never raises; True when
    Asterisk acknowledged it."""
    try:
        async with asyncio.timeout(timeout):
            async with ami_session(ami, timeout=timeout) as session:
                await session.action("VoicemailRefresh")
        return True
    except Exception as exc:  # noqa: BLE001 -- as in refresh_mwi
        log.warning("MWI refresh of every mailbox failed: %s", exc or type(exc).__name__)
        return False
