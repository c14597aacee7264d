"""Drive the test phone over its ARI: place calls into the PBX, take calls from it, listen.

    async with TestPhone.connect(settings, password, cli=instance.cli) as phone:
        call = await phone.call("600", device="acme-anna-soft")
        await call.wait_state("Up", 10)
        await call.send_dtmf("1#")
        assert await call.heard_audio(2.0)

What a call's channel receives is copied by a snoop channel and streamed by an external-media
channel to a Python socket (`Call.media`), from before dialling to the hangup. The call's own
channel stays alone in the application, so playing into it and sending DTMF work as on a phone.
One driver per phone instance at a time: on connecting it clears what an earlier one left.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from ari_app.client import AriClient, AriError
from testphone.config import ARI_USER, PhoneSettings
from testphone.media import RtpRecorder, write_tone

log = logging.getLogger(__name__)

IN_ENTRIES = ("incoming", "carrier-in")


def parse_registrations(text: str) -> dict[str, str]:
    """`pjsip show registrations` → registration id (= device id) → status."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and "/sip:" in words[0]:
            found[words[0].split("/sip:")[0]] = words[2]
    return found


class CallEnded(Exception):
    """The call ended before reaching what was awaited."""


class Call:
    def __init__(self, phone: TestPhone, channel_id: str, *, direction: str, target: str,
                 state: str = "Down") -> None:
        self.phone = phone
        self.id = channel_id
        self.direction = direction  # "out", or "in" for a call the PBX sent us
        self.target = target  # what was dialled, or the device / number the PBX called
        self.entry = ""  # for incoming calls: "incoming" (a device) or "carrier-in" (a trunk)
        self.trunk = ""  # for "carrier-in": the PBX's name of the trunk it came out of
        self.mark = ""  # for "carrier-in": the value of the handset header, if the trunk has one
        self.state = state
        self.states_seen: list[str] = [state]
        self.dialstatus = ""
        self.caller: dict[str, str] = {}  # {"name", "number"} the PBX presented, incoming calls
        self.hangup_cause: int | None = None
        self.hangup_cause_txt = ""
        self.hung_up_by: str | None = None  # "us" or "far"
        self.dtmf_received = ""  # digits the PBX sent us
        self.media: RtpRecorder | None = None
        self.bridge_id: str | None = None
        self._changed = asyncio.Event()
        self._ended = asyncio.Event()
        self._cleaned = asyncio.Event()  # helper channels and bridge removed
        self._detaching = False
        self._playbacks: dict[str, asyncio.Event] = {}

    def __repr__(self) -> str:
        return f"<Call {self.direction} {self.target} {self.state} cause={self.hangup_cause}>"

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    # -- state -----------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.states_seen.append(state)
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            if self.ended:
                raise CallEnded(f"{self!r} ended ({self.hangup_cause_txt}) before {what}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self!r}: no {what} within {timeout} s")
            changed = self._changed
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_state(self, state: str | tuple[str, ...], timeout: float = 10) -> str:
        """Wait until the channel has been in `state` ("Ringing", "Up", ...) at some point.

        With a tuple, the first of them reached is returned (e.g. ("Ringing", "Up")).
        """
        wanted = (state,) if isinstance(state, str) else state

        def reached() -> bool:
            return any(s in self.states_seen for s in wanted)

        await self._wait(reached, timeout, f"state {' or '.join(wanted)}")
        return next(s for s in self.states_seen if s in wanted)

    async def wait_hangup(self, timeout: float = 10) -> int | None:
        """Wait for the end of the call; returns the Q.850 cause."""
        await asyncio.wait_for(self._ended.wait(), timeout)
        return self.hangup_cause

    async def wait_dtmf(self, digits: str, timeout: float = 10) -> None:
        """Wait until the PBX has sent us `digits` (RFC 4733) in this call."""
        await self._wait(lambda: digits in self.dtmf_received, timeout, f"DTMF {digits}")

    # -- actions ---------------------------------------------------------------------------
    async def get_var(self, name: str) -> str:
        """A variable or function of this call's channel on the phone side, e.g.
        `REDIRECTING(from-num)`: the Diversion the PBX sent with an incoming call."""
        answer = await self.phone.client.get(f"/channels/{self.id}/variable", variable=name)
        return str((answer or {}).get("value", ""))

    async def send_fax(self, tiff: Path) -> None:
        """Leave the app for the phone's `tp-fax` context: SendFax() of `tiff` (a file the phone's
        Asterisk can read) on this answered call, then hang up."""
        await self.phone.client.post(f"/channels/{self.id}/variable", variable="TP_FAX_FILE", value=str(tiff))
        await self.phone.client.post(f"/channels/{self.id}/continue", context="tp-fax", extension="send", priority=1)

    async def answer(self) -> None:
        await self.phone._attach_media(self)
        await self.phone.client.post(f"/channels/{self.id}/answer")

    async def ring(self) -> None:
        await self.phone.client.post(f"/channels/{self.id}/ring")
        self._set_state("Ringing")

    async def send_dtmf(self, digits: str, *, duration_ms: int = 120, between_ms: int = 120,
                        wait: bool = True) -> None:
        """Send RFC 4733 digits; with `wait`, return once they should all have been sent."""
        # The far end may start talking a moment before our channel has seen the answer, and
        # ARI refuses DTMF on a channel that is not Up yet (412).
        await self.wait_state("Up", timeout=10)
        await self.phone.client.post(f"/channels/{self.id}/dtmf", dtmf=digits,
                                     duration=duration_ms, between=between_ms)
        if wait:
            await asyncio.sleep(len(digits) * (duration_ms + between_ms) / 1000 + 0.1)

    async def play_to(self, media: str | list[str], *, wait: bool = True,
                      timeout: float = 60) -> str:
        """Speak into the call, e.g. "sound:hello-world" or a recording; returns the playback id.

        Sound files may be absolute paths without extension (paths are the same inside the
        phone's Asterisk). A "tone:" never ends by itself and deafens the phone: use `play_tone`.
        """
        playback_id = uuid.uuid4().hex
        finished = asyncio.Event()
        self._playbacks[playback_id] = finished
        await self.phone.client.post(f"/channels/{self.id}/play", media=media,
                                     playbackId=playback_id)
        if wait:
            await asyncio.wait_for(finished.wait(), timeout)
        return playback_id

    async def play_tone(self, seconds: float, frequency: int = 1004, *, wait: bool = True) -> str:
        """Speak a sine tone for `seconds`: easy to recognise at the far end.

        Played from a WAV file, not ARI's "tone:": a tone generator on the channel makes Asterisk
        drop what the channel receives, so the phone would go deaf while it plays.
        """
        sounds = self.phone.sounds_dir
        if sounds is None:
            raise RuntimeError("play_tone needs the TestPhone's sounds_dir")
        name = sounds / f"tone-{int(frequency)}-{int(seconds * 1000)}"
        if not name.with_suffix(".wav").exists():
            write_tone(name.with_suffix(".wav"), frequency, seconds)
        return await self.play_to(f"sound:{name}", wait=wait)

    async def stop_playback(self, playback_id: str) -> None:
        with suppress(AriError):  # already finished
            await self.phone.client.delete(f"/playbacks/{playback_id}")

    async def hangup(self, reason: str = "normal") -> None:
        """Hang up; `reason` as ARI takes it ("busy" rejects a ringing call with 486)."""
        if self.ended:
            return
        self.hung_up_by = self.hung_up_by or "us"
        with suppress(AriError):  # gone in the meantime
            await self.phone.client.delete(f"/channels/{self.id}", reason=reason)

    # -- what was heard --------------------------------------------------------------------
    @property
    def audio_seconds(self) -> float:
        return self.media.audio_seconds if self.media else 0.0

    async def heard_audio(self, seconds: float, timeout: float | None = None) -> bool:
        """True once `seconds` of audio have arrived from the far end (within `timeout`)."""
        if self.media is None:
            return False
        return await self.media.wait_for(seconds, seconds + 10 if timeout is None else timeout)

    def segments(self, gap: float = 0.3) -> list[tuple[float, float]]:
        return self.media.segments(gap) if self.media else []

    # -- events ----------------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "ChannelStateChange":
            self._set_state(event["channel"]["state"])
        elif kind == "Dial":
            self.dialstatus = event.get("dialstatus", "")
            self._notify()
        elif kind == "ChannelDtmfReceived":
            self.dtmf_received += event.get("digit", "")
            self._notify()
        elif kind == "ChannelHangupRequest":
            if self.hung_up_by is None and not event.get("soft"):
                self.hung_up_by = "far"
            if "cause" in event:
                self.hangup_cause = event["cause"]
        elif kind == "PlaybackFinished":
            finished = self._playbacks.pop(event["playback"]["id"], None)
            if finished:
                finished.set()
        elif kind == "ChannelDestroyed" and not self.ended:
            self.hangup_cause = event.get("cause", self.hangup_cause)
            self.hangup_cause_txt = event.get("cause_txt", "")
            if self.hung_up_by is None:
                self.hung_up_by = "far"
            self._set_state("Down")
            self._ended.set()
            self._notify()


class TestPhone:
    """Every PBX user's device and the carrier, as one ARI application."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, client: AriClient, settings: PhoneSettings, *,
                 cli: Callable[[str], str] | None = None, sounds_dir: Path | None = None,
                 auto_ring: bool = True) -> None:
        self.client = client
        self.settings = settings
        self.cli = cli  # the phone instance's CLI: registration state is not in ARI
        self.sounds_dir = sounds_dir  # where generated audio goes; readable by the phone's Asterisk
        self.auto_ring = auto_ring
        self.calls: dict[str, Call] = {}
        self._helpers: dict[str, Call] = {}  # snoop and external-media channel → call
        # Channels we created, until their StasisStart: a REST answer can come before it, and
        # a bridge refuses a channel that is not in the application yet.
        self._starting: dict[str, asyncio.Event] = {}
        self._incoming: defaultdict[str, asyncio.Queue[Call]] = defaultdict(asyncio.Queue)
        self._any_incoming: asyncio.Queue[Call] = asyncio.Queue()
        client.on_event(self._on_event)
        client.on_connect(self._clear_leftovers)

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: PhoneSettings, password: str, *,
                      cli: Callable[[str], str] | None = None, sounds_dir: Path | None = None,
                      timeout: float = 15) -> AsyncIterator[TestPhone]:
        """Connect to the phone instance's ARI and keep its event socket running."""
        async with AriClient(settings.ari_url, ARI_USER, password, settings.app) as client:
            phone = cls(client, settings, cli=cli, sounds_dir=sounds_dir)
            runner = asyncio.create_task(client.run())
            try:
                await client.wait_connected(timeout)
                yield phone
            finally:
                await phone.hangup_all()
                await client.close()
                runner.cancel()
                with suppress(asyncio.CancelledError):
                    await runner

    # -- calls -----------------------------------------------------------------------------
    async def call(self, to: str, *, device: str | None = None, caller_number: str | None = None,
                   caller_name: str | None = None, diversion: str | None = None,
                   diversion_reason: str = "no-answer", trunk: str | None = None,
                   headers: dict[str, str] | None = None, timeout: int = 30) -> Call:
        """Call `to` at the PBX: from a user's `device`, or from outside (`caller_number`)
        through the carrier or the PBX's `trunk` of that name (e.g. a user's mobile through
        the mobile core).

        `diversion` (trunk calls) adds a Diversion header naming the number the call was
        diverted from, as a mobile network does for busy/no-answer/unreachable forwards.
        `headers` adds raw SIP headers to the INVITE as given (e.g. a History-Info, or garbage).
        """
        if (device is None) == (caller_number is None):
            raise ValueError("give exactly one of device= or caller_number=")
        if (diversion is not None or trunk is not None) and device is not None:
            raise ValueError("a Diversion header or a trunk is for outside calls: use caller_number=")
        endpoint = device if device is not None else self.settings.endpoint_for(trunk)
        variables: dict[str, str] = {}
        if caller_number is not None:
            # Set internally ("i"): the From of the INVITE carries the connected line.
            variables["CONNECTEDLINE(num,i)"] = caller_number
            if caller_name:
                variables["CONNECTEDLINE(name,i)"] = caller_name
        if diversion is not None:
            host = self.settings.trunk_ip(trunk)
            variables["PJSIP_HEADER(add,Diversion)"] = (
                f"<sip:{diversion}@{host}>;reason={diversion_reason};counter=1")
        for name, value in (headers or {}).items():
            variables[f"PJSIP_HEADER(add,{name})"] = value
        channel_id = "tp-" + uuid.uuid4().hex
        call = Call(self, channel_id, direction="out", target=to)
        self.calls[channel_id] = call
        try:
            started = self._expect_stasis(channel_id)
            await self.client.request(
                "POST", "/channels/create",
                params={"endpoint": f"PJSIP/{to}@{endpoint}", "app": self.settings.app,
                        "appArgs": "outgoing", "channelId": channel_id, "formats": "ulaw"},
                json={"variables": variables} if variables else None)
            await asyncio.wait_for(started.wait(), 10)
            # Listen before dialling: ringback and early media are heard too.
            await self._attach_media(call)
            await self.client.post(f"/channels/{channel_id}/dial", timeout=timeout)
        except BaseException:
            await call.hangup()
            self.calls.pop(channel_id, None)
            raise
        return call

    async def incoming(self, device_or_number: str, timeout: float = 10) -> Call:
        """The next call the PBX sends to a device (by id) or to the carrier (by number)."""
        return await asyncio.wait_for(self._incoming[device_or_number].get(), timeout)

    async def incoming_any(self, timeout: float = 10) -> Call:
        """The next call the PBX sends to any device or to the carrier (see `Call.target`)."""
        return await asyncio.wait_for(self._any_incoming.get(), timeout)

    async def hangup_all(self) -> None:
        """Hang up every live call, and forget calls nobody picked up: isolates tests."""
        for call in list(self.calls.values()):
            if not call.ended:
                await call.hangup()
        for call in list(self.calls.values()):
            with suppress(TimeoutError):
                await call.wait_hangup(5)
                if call.media is not None or call.bridge_id:
                    await asyncio.wait_for(call._cleaned.wait(), 5)
        self.calls = {cid: c for cid, c in self.calls.items() if not c.ended}
        self._incoming.clear()
        self._any_incoming = asyncio.Queue()

    # -- registration ----------------------------------------------------------------------
    async def registrations(self) -> dict[str, str]:
        """Device id → outbound registration status ("Registered", "Rejected", ...)."""
        if self.cli is None:
            raise RuntimeError("registration state needs the phone instance's CLI (cli=)")
        return parse_registrations(await asyncio.to_thread(self.cli, "pjsip show registrations"))

    async def registered(self, device: str) -> bool:
        return (await self.registrations()).get(device) == "Registered"

    async def wait_registered(self, devices: list[str], timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = await self.registrations()
            missing = [d for d in devices if state.get(d) != "Registered"]
            if not missing:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"not registered after {timeout} s: "
                                   + ", ".join(f"{d} ({state.get(d, 'absent')})" for d in missing))
            await asyncio.sleep(0.3)

    # -- internals -------------------------------------------------------------------------
    async def _attach_media(self, call: Call) -> None:
        """Stream what the call's channel receives to a local socket (`call.media`).

        The call's own channel stays out of any bridge: in one, a playback on it stops what it
        hears and a DTMF digit is held for seconds. A snoop channel copies the received audio
        instead, and is bridged with an external-media channel that sends it to us as RTP.
        """
        if call.media is not None:
            return
        call.media = await RtpRecorder.open(self.settings.phones_ip)
        host, port = call.media.address
        # Every helper's id starts with "tp-": leftovers of a crashed driver are recognisable.
        snoop_id, media_id = f"tp-snoop-{call.id}", f"tp-media-{call.id}"
        for helper in (snoop_id, media_id):
            self._helpers[helper] = call
        started = [self._expect_stasis(snoop_id), self._expect_stasis(media_id)]
        await self.client.post(f"/channels/{call.id}/snoop", spy="in", whisper="none",
                               app=self.settings.app, snoopId=snoop_id)
        await self.client.post("/channels/externalMedia", channelId=media_id,
                               app=self.settings.app, external_host=f"{host}:{port}",
                               format="ulaw", encapsulation="rtp", transport="udp")
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 10)
        bridge = await self.client.post("/bridges", type="mixing", bridgeId=f"tp-bridge-{call.id}")
        call.bridge_id = bridge["id"]
        await self.client.post(f"/bridges/{call.bridge_id}/addChannel",
                               channel=f"{snoop_id},{media_id}")

    async def _detach_media(self, call: Call) -> None:
        """Remove the helper channels and bridge of an ended call (once)."""
        if call._detaching:
            return
        call._detaching = True
        try:
            for helper in (f"tp-snoop-{call.id}", f"tp-media-{call.id}"):
                self._helpers.pop(helper, None)
                with suppress(AriError):  # already gone with the call
                    await self.client.delete(f"/channels/{helper}")
            if call.bridge_id:
                with suppress(AriError):
                    await self.client.delete(f"/bridges/{call.bridge_id}")
            if call.media:
                # Late packets may still be on their way; the recording stays readable.
                await asyncio.sleep(0.05)
                call.media.close()
        finally:
            call._cleaned.set()

    async def _clear_leftovers(self) -> None:
        """Hang up what an earlier, vanished driver left in the application (after a crash)."""
        try:
            channels = await self.client.get("/channels")
            bridges = await self.client.get("/bridges")
        except AriError:
            return
        known = set(self.calls) | set(self._helpers) | set(self._starting)
        for channel in channels:
            dialplan = channel.get("dialplan", {})
            ours = channel["id"].startswith("tp-") or (
                dialplan.get("app_name") == "Stasis"
                and dialplan.get("app_data", "").split(",")[0] == self.settings.app)
            if ours and channel["id"] not in known:
                with suppress(AriError):
                    await self.client.delete(f"/channels/{channel['id']}")
        for bridge in bridges:
            if bridge["id"].startswith("tp-bridge-") and bridge["id"][10:] not in known:
                with suppress(AriError):
                    await self.client.delete(f"/bridges/{bridge['id']}")

    def _expect_stasis(self, channel_id: str) -> asyncio.Event:
        self._starting[channel_id] = asyncio.Event()
        return self._starting[channel_id]

    async def _on_event(self, event: dict[str, Any]) -> None:
        channel = event.get("channel") or event.get("peer") or {}
        channel_id = channel.get("id", "")
        if event.get("type") == "StasisStart" and channel_id in self._starting:
            self._starting.pop(channel_id).set()
        if event.get("type") == "PlaybackFinished":
            target = event.get("playback", {}).get("target_uri", "")
            channel_id = target.removeprefix("channel:")
        if event.get("type") == "StasisStart" and channel_id not in self.calls:
            args = event.get("args") or []
            if channel_id in self._helpers or not args or args[0] not in IN_ENTRIES:
                return
            await self._new_incoming(channel, args[0], *(list(args[1:4]) + ["", "", ""])[:3])
            return
        call = self.calls.get(channel_id)
        if call is None:
            return
        call._on_event(event)
        if event.get("type") == "StasisEnd" and not call.ended:
            await asyncio.sleep(1)  # ChannelDestroyed is on its way, with the real cause
            if not call.ended:
                call._on_event({"type": "ChannelDestroyed", "cause": call.hangup_cause})
        if call.ended:
            await self._detach_media(call)

    async def _new_incoming(self, channel: dict[str, Any], entry: str, target: str,
                            trunk: str = "", mark: str = "") -> None:
        call = Call(self, channel["id"], direction="in", target=target, state=channel["state"])
        call.entry, call.trunk, call.mark = entry, trunk, mark
        call.caller = channel.get("caller", {})
        self.calls[call.id] = call
        # A channel that came in through Stasis() is followed only until StasisEnd; subscribing
        # keeps its ChannelDestroyed (with the hangup cause) coming after we hang it up.
        with suppress(AriError):
            await self.client.post(f"/applications/{self.settings.app}/subscription",
                                   eventSource=f"channel:{call.id}")
        if self.auto_ring:
            with suppress(AriError):
                await call.ring()
        self._incoming[target].put_nowait(call)
        self._any_incoming.put_nowait(call)
