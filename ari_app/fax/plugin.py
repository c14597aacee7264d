"""Wiring of fax delivery: a background loop that converts and e-mails received faxes."""

from __future__ import annotations

from ari_app.plugin_api import Plugin, PluginDeps

from .services import FaxService


def load(deps: PluginDeps) -> Plugin:
    # recordings_dir is <spool>/recording; the faxes are in <spool>/fax (base/paths.py).
    service = FaxService(deps.callstate, deps.messenger, deps.recordings_dir.parent / "fax")
    return Plugin(background=[service.run])
