"""What a plugin gets (shared services) and gives (Stasis entries, background tasks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.ami import AmiSettings
from base.model import Config

from .app import Handler


@dataclass
class PluginDeps:
    config: Config
    store: Any  # vmstore.VoicemailStore
    callstate: Any  # callstate.CallStateService
    notifier: Any  # notify.Notifier | None
    ami: AmiSettings | None
    recordings_dir: Path  # <astspooldir>/recording
    sounds_dir: Path  # the prompt catalogue
    presence: Any = None  # ari_app.presence.services.PresenceService, shared by the plugins


@dataclass
class Plugin:
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Run after every (re)connection to Asterisk's ARI: Asterisk may have restarted meanwhile.
    on_connect: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def merge(plugins: list[Plugin]) -> Plugin:
    handlers: dict[str, Any] = {}
    background: list[Callable[[], Awaitable[None]]] = []
    on_connect: list[Callable[[], Awaitable[None]]] = []
    for plugin in plugins:
        clash = set(handlers) & set(plugin.handlers)
        if clash:
            raise ValueError(f"two plugins serve the Stasis entries {sorted(clash)}")
        handlers.update(plugin.handlers)
        background += plugin.background
        on_connect += plugin.on_connect
    return Plugin(handlers, background, on_connect)
