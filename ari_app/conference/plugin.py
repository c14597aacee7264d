"""Wiring of the conference rooms: the conference number's IVR."""

from __future__ import annotations

from ari_app.plugin_api import Plugin, PluginDeps
from ari_app.voice import Voice

from .ivr import ConferenceIvr
from .services import ConferenceService


def load(deps: PluginDeps) -> Plugin:
    voice = Voice(deps.sounds_dir, deps.config.platform.default_language)
    return Plugin(handlers={"conference": ConferenceIvr(ConferenceService(deps.callstate), voice)})
