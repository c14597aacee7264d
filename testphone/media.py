"""What a test phone hears: RTP from an ARI external-media channel, received and kept in Python.

The stream is continuous (a snoop channel feeds it on a timer) and carries digital silence, all
samples zero, whenever the far end sends nothing. Those packets are not "heard": the runs of the
others are the prompts, and `segments()` turns them into (start, length) pairs a test can check.
"""

from __future__ import annotations

import asyncio
import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import cast

ULAW_PT = 0
RATE = 8000  # ulaw: one byte per sample


def _ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = ((mantissa << 3) + 0x84) << exponent
    sample -= 0x84
    return -sample if sign else sample


_ULAW = [_ulaw_to_linear(b) for b in range(256)]


@dataclass(frozen=True)
class Packet:
    arrival: float  # loop time
    seq: int
    timestamp: int
    payload: bytes

    @property
    def seconds(self) -> float:
        return len(self.payload) / RATE

    @property
    def silent(self) -> bool:
        """Digital silence: what is streamed while nothing arrives (0xFF and 0x7F are ulaw 0)."""
        return not self.payload.strip(b"\xff\x7f")

    def rms(self) -> float:
        if not self.payload:
            return 0.0
        return math.sqrt(sum(_ULAW[b] ** 2 for b in self.payload) / len(self.payload))


class RtpRecorder(asyncio.DatagramProtocol):
    """A UDP socket that keeps every ulaw RTP packet it receives."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []
        self.dtmf_packets = 0  # RFC 4733 events relayed by the bridge; not audio
        self.address: tuple[str, int] = ("", 0)
        self._transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    @classmethod
    async def open(cls, host: str) -> RtpRecorder:
        loop = asyncio.get_running_loop()
        # Port 0: the kernel picks a free one, so parallel calls and instances never collide.
        _, recorder = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return recorder

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (The selector loop's datagram transport does not subclass DatagramTransport in 3.11.)
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.address = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        csrc, has_ext, pt = data[0] & 0x0F, data[0] & 0x10, data[1] & 0x7F
        seq, timestamp = struct.unpack("!HI", data[2:8])
        start = 12 + 4 * csrc
        if has_ext and len(data) >= start + 4:
            start += 4 + 4 * struct.unpack("!H", data[start + 2:start + 4])[0]
        if pt != ULAW_PT:
            self.dtmf_packets += 1
            return
        self.packets.append(Packet(self._loop.time(), seq, timestamp, data[start:]))
        self._changed.set()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- what was heard --------------------------------------------------------------------
    @property
    def audio_seconds(self) -> float:
        """Seconds of audio heard: every packet that is not digital silence."""
        return sum(p.seconds for p in self.packets if not p.silent)

    @property
    def stream_seconds(self) -> float:
        """Seconds streamed, silence included: how long we have been listening."""
        return sum(p.seconds for p in self.packets)

    def voiced_seconds(self, threshold: float = 200.0) -> float:
        """Seconds of packets louder than `threshold` (16-bit RMS): sent silence left out."""
        return sum(p.seconds for p in self.packets if p.rms() > threshold)

    def segments(self, gap: float = 0.3) -> list[tuple[float, float]]:
        """(start, length) of each burst of audio, in seconds from the start of the stream.

        Positions come from RTP timestamps, so they do not depend on scheduling delays here. A
        new burst starts after at least `gap` seconds without audio.
        """
        if not self.packets:
            return []
        first = self.packets[0].timestamp
        out: list[list[float]] = []
        last_end = -math.inf
        for p in self.packets:
            if p.silent:
                continue
            start = ((p.timestamp - first) % 2**32) / RATE
            if start - last_end >= gap:
                out.append([start, 0.0])
            out[-1][1] = start + p.seconds - out[-1][0]
            last_end = start + p.seconds
        return [(round(s, 3), round(length, 3)) for s, length in out]

    async def wait_for(self, seconds: float, timeout: float) -> bool:
        """Wait until `seconds` of audio have been heard; False on timeout."""
        deadline = self._loop.time() + timeout
        while self.audio_seconds < seconds:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return self.audio_seconds >= seconds
        return True

    def pcm(self) -> bytes:
        """The whole stream as 16-bit little-endian linear PCM."""
        samples = [_ULAW[b] for p in self.packets for b in p.payload]
        return struct.pack(f"<{len(samples)}h", *samples)

    def write_wav(self, path: Path) -> None:
        """For a human to listen to what a test heard."""
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(self.pcm())


def write_tone(path: Path, frequency: float, seconds: float, amplitude: int = 8000) -> None:
    """A sine tone as an 8 kHz 16-bit WAV file that Asterisk can play (format_wav)."""
    count = int(seconds * RATE)
    samples = [int(amplitude * math.sin(2 * math.pi * frequency * i / RATE)) for i in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(struct.pack(f"<{count}h", *samples))
