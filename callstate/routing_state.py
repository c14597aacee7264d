"""RoutingState: a user's forwards (immediate, busy, no answer, unreachable) and call waiting.

The rules are in `routing.py` and `targets.py`; this module reads and writes them in one short,
audited transaction each (see `store.py`).
"""

from __future__ import annotations

from base.model import User

from . import routing as routing_rules
from . import rows
from .audit import SETTING_CHANGED
from .db import Tx
from .errors import SettingsError
from .routing import CALL_WAITING_FIELD, Routing
from .store import Event, StateStore, log_changes
from .targets import LOOP, TargetRefused
from .users import Origin, find_user

_ROUTING_FIELDS = ("immediate", "busy", "no_answer", "unreachable", "no_answer_seconds", "call_waiting")


class RoutingState:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def routing(self, tenant_id: str, user_id: str) -> Routing:
        """The user's forwards and call waiting (defaults where nothing was changed)."""
        config = self._store.config
        _, user = find_user(config, tenant_id, user_id)
        stored = self._store.read(lambda tx: rows.load_routing(tx, tenant_id, user_id))
        return routing_rules.effective(config, user, stored)

    def set_forward(self, tenant_id: str, user_id: str, kind: str, target: str, *, actor: str,
                    source: str, no_answer_seconds: int | None = None) -> Routing:
        """Sets one forward: `target` is a number as dialled (national, E.164 or a colleague's
        extension), 'voicemail' or 'none'. TargetRefused (a SettingsError with a `reason`) when the
        number may not be used; nothing is written then."""
        config = self._store.config
        tenant, user = find_user(config, tenant_id, user_id)
        origin = Origin(actor, source)
        stored_target = routing_rules.check_forward(config, tenant, user, kind, target)
        if kind == routing_rules.IMMEDIATE and stored_target.startswith("+"):
            self._refuse_loop(tenant_id, user_id, stored_target)
        changes: dict[str, object] = {f"fwd_{kind}": stored_target}
        if no_answer_seconds is not None:
            if kind != "no_answer":
                raise SettingsError("a delay belongs to the no_answer forward only")
            changes["no_answer_seconds"] = routing_rules.check_delay(no_answer_seconds)
        return self._change(tenant_id, user_id, user, origin, changes)

    def reset_routing(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> Routing:
        """Back to the defaults: every forward, the no-answer delay and call waiting."""
        _, user = find_user(self._store.config, tenant_id, user_id)
        return self._change(tenant_id, user_id, user, Origin(actor, source),
                            {column: None for column in rows.ROUTING_COLUMNS})

    def set_call_waiting(self, tenant_id: str, user_id: str, enabled: bool, *, actor: str,
                         source: str) -> Routing:
        _, user = find_user(self._store.config, tenant_id, user_id)
        if not isinstance(enabled, bool):
            raise SettingsError(f"call waiting is on or off (true or false), not {enabled!r}")
        return self._change(tenant_id, user_id, user, Origin(actor, source),
                            {"call_waiting": int(enabled)})

    def _refuse_loop(self, tenant_id: str, user_id: str, target: str) -> None:
        """TargetRefused when the target's immediate forwards lead back to this user (A→B→A).
        The router stops loops anyway; refusing here tells the user at once."""
        config = self._store.config
        seen = {(tenant_id, user_id)}
        for _ in range(routing_rules.LOOP_CHECK_HOPS):
            owner = config.find_number(target)
            if owner is None:
                return
            key = (owner[0].id, owner[1].id)
            if key in seen:
                raise TargetRefused(LOOP, f"{target} forwards calls back to {user_id}")
            seen.add(key)
            target = self.routing(*key).immediate
            if not target.startswith("+"):
                return

    def _change(self, tenant_id: str, user_id: str, user: User, origin: Origin,
                changes: dict[str, object]) -> Routing:
        store = self._store
        config = store.config

        def work(tx: Tx) -> tuple[Routing, list[Event]]:
            stored = rows.load_routing(tx, tenant_id, user_id)
            before = routing_rules.effective(config, user, stored)
            after = routing_rules.effective(config, user, {**stored, **changes})
            events = [Event(SETTING_CHANGED, _audit_field(name), _text(getattr(before, name)),
                            _text(getattr(after, name)))
                      for name in _ROUTING_FIELDS if getattr(before, name) != getattr(after, name)]
            # Stored even when the effective value is unchanged: an explicit choice outlives a
            # later change of the defaults.
            if any(stored.get(column) != value for column, value in changes.items()):
                now = store.now()
                rows.store_routing(tx, tenant_id, user_id, {**stored, **changes}, now)
                store.record(tx, now, tenant_id, user_id, origin, events)
            return after, events

        after, events = store.write(work)
        log_changes(tenant_id, user_id, origin, events)
        return after


def _audit_field(name: str) -> str:
    return CALL_WAITING_FIELD if name == "call_waiting" else routing_rules.AUDIT_PREFIX + name


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
