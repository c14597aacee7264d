"""What a SIP phone subscribed to a colleague is told: SUBSCRIBE / NOTIFY (Event: presence, PIDF)
against the product PBX, while the service's AMI publisher changes the colleague's presence.

The PBX of this module is its own (127.0.0.42, ports 17xxx); the watching devices talk to it from
127.0.0.43. The carrier is on 127.0.0.43 too, but only its port 17060 identifies it, so the
devices (other ports) are identified by their digest user name as real phones are.

What Asterisk puts in the PIDF (res_pjsip_pidf_body_generator and its supplements):
- `<tuple id="EXT"><status><basic>` and the top `<note>`: the hint's device state only:
  closed / "Unavailable" while the user's device is not registered, open / "Ready" when it is;
- `<tuple id="digium-presence"><status><digium_presence type="STATE">MESSAGE`: the hint's
  CustomPresence state and its message (the user's note), added only for watchers whose
  User-Agent contains "digium"; other phones are told the device state alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest
from conftest import Pbx, on_test_addresses, start_pbx
from sipsubscribe import Account, Notify, PresenceWatcher, Refused, Registration

from ari_app.presence.asterisk import presence_id, presence_value, publish
from asterisk_conf.render import AMI_USER
from asterisk_host import AsteriskRuntime
from base.ami import AmiSettings
from base.model import Config, Listener
from callstate import Presence

pytestmark = pytest.mark.asterisk

PBX_IP = "127.0.0.42"
DEVICES_IP = "127.0.0.43"  # the watching devices, and the carrier's (never used) address
SIP_PORT = 17060
CARRIER_PORT = 17060  # on DEVICES_IP: the only source that identifies the carrier
PORTS = itertools.count(17061)  # one per device socket, on DEVICES_IP
DIGIUM_PHONE = "Digium D65 2.9.9"  # a User-Agent Asterisk gives the presence state to
OTHER_PHONE = "Generic-SIP-Phone/1.0"

NOTE = "In a meeting until 3"
ANNA = ("acme", "anna.virtanen")


@dataclass
class PresencePbx:
    pbx: Pbx
    config: Config
    published: bool = False  # whether any presence was set since the PBX started

    @property
    def server(self) -> tuple[str, int]:
        sip = self.config.platform.sip
        return sip.bind, sip.port

    def account(self, device: str, password: str | None = None) -> Account:
        return Account(device, password if password is not None else self.pbx.secrets.get(f"device:{device}"))

    def watcher(self, device: str, extension: str, user_agent: str = DIGIUM_PHONE, *,
                password: str | None = None) -> PresenceWatcher:
        return PresenceWatcher(self.account(device, password), extension, server=self.server,
                               local=(DEVICES_IP, next(PORTS)), user_agent=user_agent)

    def registration(self, device: str) -> Registration:
        return Registration(self.account(device), server=self.server, local=(DEVICES_IP, next(PORTS)))

    async def publish(self, tenant_id: str, user_id: str, activity: str, note: str = "") -> None:
        """What the service does on a change: the user's presence to Asterisk over AMI."""
        tenant = next(t for t in self.config.tenants if t.id == tenant_id)
        ami = self.config.platform.ami
        settings = AmiSettings(ami.bind, ami.port, AMI_USER, self.pbx.secrets.get("ami"))
        value = presence_value(tenant, Presence(activity, None, note))
        self.published = True
        assert await publish(settings, [(presence_id(tenant_id, user_id), value)]) == 1


@pytest.fixture(scope="module")
def presence_pbx(asterisk_runtime: AsteriskRuntime, tmp_path_factory: pytest.TempPathFactory,
                 e2e_config: Config) -> Iterator[PresencePbx]:
    """The example tenants, rendered by the real renderer, on a PBX of this module's own."""
    platform = on_test_addresses(e2e_config.platform, pbx_ip=PBX_IP, carrier_ip=DEVICES_IP,
                                 rtp=(17100, 17199), carrier_port=CARRIER_PORT)
    assert platform.carrier is not None
    platform = replace(
        platform,
        sip=Listener(PBX_IP, SIP_PORT), http=Listener(PBX_IP, 17088), ami=Listener(PBX_IP, 17038),
        agi=Listener(PBX_IP, 17073),
        trunks=(replace(platform.carrier, match=(f"{DEVICES_IP}:{CARRIER_PORT}",)),),
    )
    config = replace(e2e_config, platform=platform)
    pbx = start_pbx(asterisk_runtime, tmp_path_factory.mktemp("presence-subscribe"), config)
    try:
        before = _errors(pbx)
        yield PresencePbx(pbx, config)
        new = _errors(pbx)[len(before):]
    finally:
        pbx.instance.stop()
    assert not new, "the PBX logged errors:\n" + "\n".join(new)


def _errors(pbx: Pbx) -> list[str]:
    text = pbx.instance.log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if "ERROR[" in line]


def presence_is(state: str) -> Callable[[Notify], bool]:
    return lambda n: n.pidf is not None and n.pidf.presence == state


def basic_is(state: str) -> Callable[[Notify], bool]:
    return lambda n: n.pidf is not None and n.pidf.basic == state


async def test_a_colleague_sees_anna_in_a_meeting_with_her_note_then_available(
        presence_pbx: PresencePbx) -> None:
    async with presence_pbx.watcher("acme-mikko-soft", "101") as mikko:
        assert mikko.response is not None and mikko.response.header("expires") == "120"
        # Anna's device not registered; nothing published yet (when this runs first).
        first = await mikko.next_notify()
        assert first.event == "presence" and first.subscription_state.startswith("active")
        assert first.content_type == "application/pidf+xml"
        pidf = first.pidf
        assert pidf is not None, first.body
        assert pidf.entity == f"sip:101@{PBX_IP}:{SIP_PORT}"
        assert (pidf.basic, pidf.note) == ("closed", "Unavailable"), pidf.xml
        initial = "available" if presence_pbx.published else "not_set"
        assert (pidf.presence, pidf.message) == (initial, None), pidf.xml

        async with presence_pbx.registration("acme-anna-soft"):
            # Her phone online: the device state part says open / Ready.
            online = await mikko.wait_for(basic_is("open"))
            assert online.pidf is not None and online.pidf.note == "Ready", online.body

            await presence_pbx.publish(*ANNA, "meeting", NOTE)
            meeting = await mikko.wait_for(presence_is("dnd"))
            pidf = meeting.pidf
            assert pidf is not None
            assert pidf.message == NOTE and pidf.subtype is None, pidf.xml
            assert f">{NOTE}</digium_presence>" in meeting.body
            # The presence state does not touch the device state part.
            assert (pidf.basic, pidf.note) == ("open", "Ready"), pidf.xml

            await presence_pbx.publish(*ANNA, "available")
            back = await mikko.wait_for(presence_is("available"))
            pidf = back.pidf
            assert pidf is not None
            assert pidf.message is None and NOTE not in back.body, pidf.xml
            assert (pidf.basic, pidf.note) == ("open", "Ready"), pidf.xml

        # Her phone gone again: closed, and the presence state stays what was published.
        offline = await mikko.wait_for(basic_is("closed"))
        assert offline.pidf is not None and offline.pidf.presence == "available", offline.body
    # Unsubscribed on close: Asterisk ended the subscription with a final NOTIFY.
    assert mikko.terminated and mikko.notifies[-1].terminated


async def test_a_note_with_markup_and_finnish_letters_arrives_intact(presence_pbx: PresencePbx) -> None:
    note = 'Neuvottelu & budjetti <Q3> "lopullinen" – ei häiriöitä'
    async with presence_pbx.watcher("acme-mikko-soft", "101") as mikko:
        await mikko.next_notify()
        try:
            await presence_pbx.publish(*ANNA, "busy", note)
            busy = await mikko.wait_for(presence_is("dnd"))
            assert busy.pidf is not None and busy.pidf.message == note, busy.body
            assert "&amp; budjetti &lt;Q3&gt; &quot;lopullinen&quot;" in busy.body  # escaped, not markup
        finally:
            await presence_pbx.publish(*ANNA, "available")


async def test_a_phone_that_is_not_a_digium_one_is_told_only_the_device_state(
        presence_pbx: PresencePbx) -> None:
    async with presence_pbx.watcher("acme-mikko-soft", "101", OTHER_PHONE) as mikko:
        await mikko.next_notify()
        try:
            await presence_pbx.publish(*ANNA, "meeting", NOTE)
            # The change is notified, but its body has neither the state nor the note.
            changed = await mikko.next_notify()
            pidf = changed.pidf
            assert pidf is not None, changed.body
            assert (pidf.basic, pidf.note, pidf.activities) == ("closed", "Unavailable", ()), pidf.xml
            assert pidf.presence is None and NOTE not in changed.body, pidf.xml
        finally:
            await presence_pbx.publish(*ANNA, "available")


async def test_another_tenant_never_sees_annas_presence(presence_pbx: PresencePbx) -> None:
    await presence_pbx.publish(*ANNA, "meeting", NOTE)
    try:
        # Borealis's 101 is its own user (James): that is what a Borealis phone watches.
        async with presence_pbx.watcher("borealis-aino-soft", "101") as aino:
            seen = [await aino.next_notify()] + await aino.quiet(1.0)
            for notify in seen:
                pidf = notify.pidf
                assert pidf is not None, notify.body
                assert pidf.presence != "dnd" and pidf.message is None, pidf.xml
                assert NOTE not in notify.body
        # Acme-only extensions and numbers do not exist in Borealis's subscribe context.
        for resource in ("109", "+358401110001"):
            watcher = presence_pbx.watcher("borealis-aino-soft", resource)
            with pytest.raises(Refused) as refused:
                async with watcher:
                    pass
            assert refused.value.status == 404, refused.value.response
            assert not watcher.notifies
        # ...while an Acme phone may watch 109.
        async with presence_pbx.watcher("acme-mikko-soft", "109") as mikko:
            assert (await mikko.next_notify()).pidf is not None
    finally:
        await presence_pbx.publish(*ANNA, "available")


async def test_a_wrong_password_gets_no_subscription(presence_pbx: PresencePbx) -> None:
    watcher = presence_pbx.watcher("acme-mikko-soft", "101", password="not-the-password")
    with pytest.raises(Refused) as refused:
        async with watcher:
            pass
    assert refused.value.status == 401
    assert not watcher.notifies
