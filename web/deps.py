"""What the web application is given: the services `vipbx serve` already runs, so a change made
on the page is the same change a caller makes by phone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.model import Config, Web
from callstate import AsyncCallState, CallStateService
from notify import Messenger, Notifier
from vmstore import VoicemailStore


@dataclass
class WebDeps:
    state: CallStateService
    store: VoicemailStore  # the voicemail spool
    presence: Any  # ari_app.presence.services.PresenceService: changes that also tell the phones
    voicemail: Any  # ari_app.voicemail.services.VoicemailService: message changes that refresh MWI
    notifier: Notifier | None  # new-message notices (queued, retried)
    messenger: Messenger | None  # SMS and e-mail sent at once: login codes, the Home page's SMS
    home: Path  # VIPBX_HOME
    ari: Any = None  # ari_app.client.AriClient of the running service: calls, conferences
    ami: Any = None  # base.ami.AmiSettings, None when Asterisk is not told
    extras: dict[str, Any] = field(default_factory=dict)  # services a page adds in its own wiring

    @property
    def config(self) -> Config:
        return self.state.config  # reloads reach the pages too

    @property
    def settings(self) -> Web:
        return self.config.platform.web

    @property
    def aio(self) -> AsyncCallState:
        return AsyncCallState(self.state)

    def clock(self) -> Callable[[], Any]:
        return self.state.store.now
