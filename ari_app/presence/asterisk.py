"""Users' presence as Asterisk presence states (`CustomPresence:` providers in the hints).

A phone subscribed to a colleague (`Event: presence`) gets Asterisk's PIDF: the standard part comes
from the colleague's device state (open / "Ready", "On the phone", closed); the activity's
presence state and the note are added by Asterisk's digium body supplement, which Asterisk 22
sends only to clients whose User-Agent names Digium (see docs/presence.md, "Limits").

Set over AMI (`Setvar` of `PRESENCE_STATE(...)`), which both the service and the CLI can reach.
Asterisk keeps the states in its own database across its restarts; the service re-publishes all
of them when it starts, so a change made while it or Asterisk was down is caught up.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterable

from base.ami import AmiSettings, ami_session
from base.model import AVAILABLE, Tenant
from callstate import Presence

log = logging.getLogger(__name__)

SEPARATOR = "+"  # in neither tenant nor user ids: "tenant+user" names one user unambiguously


def presence_id(tenant_id: str, user_id: str) -> str:
    """The hint's presence provider: `CustomPresence:<this>`."""
    return f"{tenant_id}{SEPARATOR}{user_id}"


def presence_value(tenant: Tenant, presence: Presence) -> str:
    """`state,subtype,message,e`: the note goes base64-encoded ('e'), so no text of a user's can
    change how Asterisk parses the value."""
    activity = tenant.activity(presence.activity)
    state = activity.presence if activity is not None else AVAILABLE
    note = base64.b64encode(presence.note.encode()).decode() if presence.note else ""
    return f"{state},,{note},e"


async def publish(ami: AmiSettings, states: Iterable[tuple[str, str]], *, timeout: float = 30.0) -> int:
    """Sets each (presence id, value) in one AMI session; how many were set. Never raises: the
    state is already stored, and the next change or start publishes it again."""
    done = 0
    try:
        async with asyncio.timeout(timeout):
            async with ami_session(ami, timeout=min(timeout, 5.0)) as session:
                for ident, value in states:
                    await session.action("Setvar", Variable=f"PRESENCE_STATE(CustomPresence:{ident})",
                                         Value=value)
                    done += 1
    except Exception as exc:  # noqa: BLE001 -- AmiError, OSError, timeout: all alike here
        log.warning("presence: %d state(s) published, then: %s", done, exc or type(exc).__name__)
    return done
