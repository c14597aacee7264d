"""Builds the shared services from the configuration and VIPBX_HOME, and loads every plugin."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from base.ami import AmiSettings
from base.model import Config
from base.paths import Paths
from callstate import AsyncCallState, open_service
from notify import (
    KannelGateway,
    KannelSettings,
    Messenger,
    Notifier,
    RetryPolicy,
    SmtpSender,
    SmtpSettings,
)
from vmstore import VoicemailStore

from .calllog import plugin as calllog_plugin
from .fax import plugin as fax_plugin
from .conference import plugin as conference_plugin
from .features import plugin as features_plugin
from .pinlocks import FallbackLocks
from .plugin_api import Plugin, PluginDeps, merge
from .presence import plugin as presence_plugin
from .presence.services import PresenceService
from .voicemail import plugin as voicemail_plugin

PLUGINS = (voicemail_plugin, features_plugin, presence_plugin, conference_plugin, calllog_plugin, fax_plugin)

SecretGetter = Callable[[str], str]


def build_notifier(config: Config, paths: Paths, secret: SecretGetter) -> Notifier:
    """Always a notifier: with no gateway configured, notices are logged as not sendable."""
    sms, email = build_gateways(config, secret)
    n = config.platform.notifications
    policy = RetryPolicy(backoff=n.retry_backoff, max_attempts=n.retry_max_attempts)
    return Notifier(paths.outbox_db, sms=sms, email=email, policy=policy, tz=ZoneInfo(n.timezone))


def build_gateways(config: Config, secret: SecretGetter) -> tuple[KannelGateway | None, SmtpSender | None]:
    """The SMS gateway and the SMTP relay of `platform.notifications`; None for one not set."""
    n = config.platform.notifications
    sms = email = None
    if n.sms_url and n.sms_username:
        sms = KannelGateway(KannelSettings(url=n.sms_url, username=n.sms_username, password=secret("kannel"),
                                           sender=n.sms_sender, timeout=n.sms_timeout))
    if n.smtp_host and n.smtp_sender:
        email = SmtpSender(SmtpSettings(
            host=n.smtp_host, port=n.smtp_port, sender=n.smtp_sender, starttls=n.smtp_starttls,
            username=n.smtp_username, password=secret("smtp") if n.smtp_username else None,
            timeout=n.smtp_timeout, max_attachment_bytes=n.smtp_max_attachment_bytes,
        ))
    return sms, email


def load(config: Config, paths: Paths, ami: AmiSettings | None, secret: SecretGetter) -> tuple[Plugin, PluginDeps]:
    notifier = build_notifier(config, paths, secret)
    callstate = open_service(config, paths.home, secret)  # SQLite or PostgreSQL, as configured
    locks = (FallbackLocks(ami, AsyncCallState(callstate), lambda: callstate.config)
             if ami is not None else None)
    deps = PluginDeps(
        config=config,
        store=VoicemailStore(paths.spool),
        callstate=callstate,
        presence=PresenceService(config, callstate, ami),
        notifier=notifier,
        ami=ami,
        recordings_dir=paths.recordings,
        sounds_dir=paths.sounds,
        fallback_locks=locks,
        messenger=Messenger(*build_gateways(config, secret)),
    )
    plugin = merge([module.load(deps) for module in PLUGINS])
    plugin.background.append(notifier.run)
    return plugin, deps
