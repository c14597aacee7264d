"""Wiring of the presence features: the activity-change number, the end-time timer (which also
publishes every user's presence to Asterisk at start)."""

from __future__ import annotations

from ari_app.plugin_api import Plugin, PluginDeps
from ari_app.voice import Voice

from .ivr import ActivityIvr


def load(deps: PluginDeps) -> Plugin:
    service = deps.presence
    voice = Voice(deps.sounds_dir, deps.config.platform.default_language)
    return Plugin(handlers={"activity": ActivityIvr(service, voice, deps.fallback_locks)}, background=[service.run_timer],
                  on_connect=[service.on_ari_connect])
