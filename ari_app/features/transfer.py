"""`Stasis(app,transfer,TENANT,DIGITS)`: the party a user transferred with *1 + number + #.

The same rules as a forward (the tenant's allow-list, never the service numbers) decide; an allowed
number is dialled as if the transferred party had dialled it, a refused one is explained.
"""

from __future__ import annotations

import logging

from ari_app.connect import connect
from ari_app.session import CallSession
from ari_app.voice import Voice
from callstate import TargetRefused

from .services import FeatureService

log = logging.getLogger(__name__)


class Transfer:
    def __init__(self, service: FeatureService, voice: Voice) -> None:
        self.service = service
        self.voice = voice

    async def __call__(self, call: CallSession) -> None:
        tenant_id, dialled = (list(call.args) + ["", ""])[:2]
        try:
            target = self.service.transfer_target(tenant_id, dialled)
        except (TargetRefused, LookupError) as exc:
            log.warning("%r: transfer to %r refused: %s", call, dialled, exc)
            lang = self.service.config.platform.default_language
            await call.play(self.voice.media(lang, ["xfer-refused"]), barge_in=False)
            await call.hangup()
            return
        log.info("%r: transferred to %s", call, target)
        # A fresh forward chain: the transferred call starts again at the target.
        await call.set_var("VIPBX_CHAIN", "")
        await connect(call, target, tenant_id)
