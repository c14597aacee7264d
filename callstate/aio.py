"""AsyncCallState: the call-state service for asyncio code, run off the event loop.

Every `CallStateService` method is one database transaction, which can wait seconds when the
database is locked or far away. Called from an IVR or feature-code handler it would stop every
other call's keys meanwhile. Each method here runs its synchronous twin in the process's bounded
thread pool (`base.offload.run_blocking`) and is awaited instead:

    state = AsyncCallState(call_state_service)
    check = await state.check_pin(tenant_id, user_id, digits, source="ivr", actor=caller_number)
    routing = await state.set_call_waiting(tenant_id, user_id, True, actor=caller, source="code")

Arguments, results and errors (`SettingsError`, `StorageError`, ...) are those of the same-named
`CallStateService` method. `config` and `reload` stay synchronous: they touch no database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from base.model import Config
from base.offload import run_blocking

from .audit import AuditEntry
from .pin import PinCheck, PinStatus
from .presence import Presence
from .routing import Routing
from .service import CallStateService
from .voicemail import VoicemailSettings


class AsyncCallState:
    def __init__(self, service: CallStateService) -> None:
        self.service = service  # the synchronous service, for code that already runs in a thread

    @property
    def config(self) -> Config:
        return self.service.config

    def reload(self, config: Config) -> None:
        self.service.reload(config)

    # ------------------------------------------------------------------ voicemail settings, PIN

    async def voicemail_settings(self, tenant_id: str, user_id: str) -> VoicemailSettings:
        return await run_blocking(self.service.voicemail_settings, tenant_id, user_id)

    async def update_voicemail_settings(self, tenant_id: str, user_id: str, *, actor: str, source: str,
                                        **changes: Any) -> VoicemailSettings:
        return await run_blocking(self.service.update_voicemail_settings, tenant_id, user_id,
                                  actor=actor, source=source, **changes)

    async def pin_status(self, tenant_id: str, user_id: str) -> PinStatus:
        return await run_blocking(self.service.pin_status, tenant_id, user_id)

    async def check_pin(self, tenant_id: str, user_id: str, pin: str, *, source: str,
                        actor: str = "caller") -> PinCheck:
        return await run_blocking(self.service.check_pin, tenant_id, user_id, pin, source=source,
                                  actor=actor)

    async def reset_pin_lockout(self, tenant_id: str, user_id: str, *, actor: str,
                                source: str) -> PinStatus:
        return await run_blocking(self.service.reset_pin_lockout, tenant_id, user_id, actor=actor,
                                  source=source)

    async def count_pin_failures(self, tenant_id: str, user_id: str, count: int, *, actor: str,
                                 source: str) -> PinStatus:
        return await run_blocking(self.service.count_pin_failures, tenant_id, user_id, count,
                                  actor=actor, source=source)

    async def pin_locks(self) -> list[tuple[str, str, PinStatus]]:
        return await run_blocking(self.service.pin_locks)

    # ------------------------------------------------------------------ forwards, call waiting

    async def routing(self, tenant_id: str, user_id: str) -> Routing:
        return await run_blocking(self.service.routing, tenant_id, user_id)

    async def set_forward(self, tenant_id: str, user_id: str, kind: str, target: str, *, actor: str,
                          source: str, no_answer_seconds: int | None = None) -> Routing:
        return await run_blocking(self.service.set_forward, tenant_id, user_id, kind, target,
                                  actor=actor, source=source, no_answer_seconds=no_answer_seconds)

    async def reset_routing(self, tenant_id: str, user_id: str, *, actor: str, source: str) -> Routing:
        return await run_blocking(self.service.reset_routing, tenant_id, user_id, actor=actor,
                                  source=source)

    async def set_call_waiting(self, tenant_id: str, user_id: str, enabled: bool, *, actor: str,
                               source: str) -> Routing:
        return await run_blocking(self.service.set_call_waiting, tenant_id, user_id, enabled,
                                  actor=actor, source=source)

    # ------------------------------------------------------------------ presence

    async def presence(self, tenant_id: str, user_id: str) -> Presence:
        return await run_blocking(self.service.presence, tenant_id, user_id)

    async def set_presence(self, tenant_id: str, user_id: str, activity: str, *, actor: str,
                           source: str, until: datetime | None = None,
                           note: str | None = None) -> Presence:
        return await run_blocking(self.service.set_presence, tenant_id, user_id, activity,
                                  actor=actor, source=source, until=until, note=note)

    async def end_presences(self) -> list[tuple[str, str]]:
        return await run_blocking(self.service.end_presences)

    async def next_presence_end(self) -> datetime | None:
        return await run_blocking(self.service.next_presence_end)

    async def call_state(self, tenant_id: str, user_id: str) -> tuple[Routing, Presence]:
        return await run_blocking(self.service.call_state, tenant_id, user_id)

    # ------------------------------------------------------------------ audit

    async def audit(self, tenant_id: str | None = None, user_id: str | None = None,
                    limit: int = 100) -> list[AuditEntry]:
        return await run_blocking(self.service.audit, tenant_id, user_id, limit)
