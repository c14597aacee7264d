"""Wiring of the call log: no Stasis entry, one background job (the recorder)."""

from __future__ import annotations

from ari_app.plugin_api import Plugin, PluginDeps

from .services import CallLogRecorder


def load(deps: PluginDeps) -> Plugin:
    recorder = CallLogRecorder(deps.callstate, deps.ami)
    return Plugin(background=[recorder.run])
