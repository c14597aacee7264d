"""What a plugin gets (shared services) and gives (Stasis entries, background tasks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from base.ami import AmiSettings
from base.model import Config
from callstate import CallStateService
from notify import Messenger, Notifier
from vmstore import VoicemailStore

from .app import Handler
from .pinlocks import FallbackLocks
from .presence.services import PresenceService


@dataclass(frozen=True)
class PluginDeps:
    """The services every plugin shares, built once by `plugins.load`."""

    config: Config
    store: VoicemailStore
    callstate: CallStateService
    presence: PresenceService  # shared: the voicemail greeting reads what the activity IVR sets
    notifier: Notifier | None  # None: no notices (unit tests)
    ami: AmiSettings | None  # None: Asterisk is not told (MWI, presence)
    recordings_dir: Path  # <astspooldir>/recording
    sounds_dir: Path  # the prompt catalogue
    fallback_locks: FallbackLocks | None = None  # None: the native fallback is not told of locks
    messenger: Messenger | None = None  # texts that are not notices (login codes, faxes); None: none


@dataclass
class Plugin:
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Run after every (re)connection to Asterisk's ARI: Asterisk may have restarted meanwhile.
    on_connect: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Entries whose calls a restarted app takes up again (see StasisApp.resume_orphan).
    resumers: Mapping[str, Handler] = field(default_factory=dict)


def merge(plugins: list[Plugin]) -> Plugin:
    handlers: dict[str, Any] = {}
    background: list[Callable[[], Awaitable[None]]] = []
    on_connect: list[Callable[[], Awaitable[None]]] = []
    resumers: dict[str, Handler] = {}
    for plugin in plugins:
        clash = set(handlers) & set(plugin.handlers)
        if clash:
            raise ValueError(f"two plugins serve the Stasis entries {sorted(clash)}")
        handlers.update(plugin.handlers)
        background += plugin.background
        on_connect += plugin.on_connect
        resumers.update(plugin.resumers)
    return Plugin(handlers, background, on_connect, resumers)
