"""Wiring of the feature codes, the transfer handler and the outbound refusal."""

from __future__ import annotations

from ari_app.plugin_api import Plugin, PluginDeps
from ari_app.voice import Voice

from .codes import CallWaitingCode, ForwardCode
from .refused import OutboundRefused
from .services import FeatureService
from .transfer import Transfer


def load(deps: PluginDeps) -> Plugin:
    service = FeatureService(deps.config, deps.callstate)
    voice = Voice(deps.sounds_dir, deps.config.platform.default_language)
    return Plugin(handlers={
        "forward": ForwardCode(service, voice),
        "callwaiting": CallWaitingCode(service, voice),
        "transfer": Transfer(service, voice),
        "outbound-refused": OutboundRefused(deps.config, voice),
    })
