"""`Stasis(app,outbound-refused,REASON,TENANT,USER)`: a call the outbound check refused (a barred
number, the fraud throttle, or no answer from the check). The caller hears why, as early media
without the call being answered, and the call ends with the matching SIP cause."""

from __future__ import annotations

import logging

from agi.outbound import ERROR, LIMIT, REASONS
from ari_app.session import CallSession, ChannelGone
from ari_app.voice import Voice
from base.model import Config

log = logging.getLogger(__name__)

# ARI hangup reasons: "rejected" is Q.850 21 (SIP 403), "congestion" 34 (SIP 503).
HANGUP_REASONS = {LIMIT: "congestion"}


class OutboundRefused:
    def __init__(self, config: Config, voice: Voice) -> None:
        self.config = config
        self.voice = voice

    async def __call__(self, call: CallSession) -> None:
        reason, tenant_id, user_id = (list(call.args) + ["", "", ""])[:3]
        if reason not in REASONS:
            reason = ERROR
        found = self.config.find_user(tenant_id, user_id)
        lang = found.user.language if found is not None else self.config.platform.default_language
        try:
            if call.channel.get("state") != "Up":
                await call.progress()
            await call.play(self.voice.media(lang, [f"out-refused-{reason}"]), barge_in=False)
            await call.hangup(reason=HANGUP_REASONS.get(reason, "rejected"))
        except ChannelGone:
            pass  # the caller hung up first
