"""The web application's services, built from those `vipbx serve` already runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ari_app.plugin_api import PluginDeps
from ari_app.voicemail.services import VoicemailService

from .deps import WebDeps


def web_deps(deps: PluginDeps, home: Path, ari: Any = None) -> WebDeps:
    """`ari`: the running service's ARI client (calls and conferences), None without Asterisk."""
    voicemail = VoicemailService(deps.config, deps.store, deps.callstate, deps.notifier, deps.ami,
                                 deps.recordings_dir, locks=deps.fallback_locks)
    return WebDeps(state=deps.callstate, store=deps.store, presence=deps.presence, voicemail=voicemail,
                   notifier=deps.notifier, messenger=deps.messenger, home=home, ari=ari, ami=deps.ami)
