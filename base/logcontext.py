"""Which call a log line is about: the call id, tenant and user, carried in context variables.

An asyncio task copies the context it was created in, so what a call's task binds is seen by
every line logged while serving that call (and by the tasks it starts), and by nothing else. The
log handler adds the three to each line (text: `[call=... tenant=... user=...]`; JSON: fields).
"""

from __future__ import annotations

import contextvars
import logging

FIELDS = ("call_id", "tenant", "user")
# Replaced, never changed in place: a task's copy of the context must not see another's binds.
_current: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("vipbx_log_context", default=None)


def bind(**values: str | None) -> None:
    """Add to what the current call's lines carry (`call_id`, `tenant`, `user`); empty values are
    left out."""
    merged = {**(_current.get() or {}), **{k: str(v) for k, v in values.items() if v and k in FIELDS}}
    _current.set(merged)


def clear() -> None:
    _current.set({})


def current() -> dict[str, str]:
    return dict(_current.get() or {})


class AddCallContext(logging.Filter):
    """Puts the bound values on each record (`record.call_id`, ...; "" when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _current.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name, ""))
        return True
