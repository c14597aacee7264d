"""Voicemail IVR under load: key press → next prompt latency, and CPU per call, for the vipbx
access IVR (ARI) beside Asterisk's own VoiceMailMain on the same mailboxes, in the same run.

    python3 bench/bench_ivr.py                          # N = 1, 50, 100 listeners, both IVRs
    python3 bench/bench_ivr.py --sizes 1,10 --keys 3    # a quick look
    python3 bench/bench_ivr.py --tap                    # also time the test phone's RTP tap
    python3 bench/bench_ivr.py --report rows.json       # the tables of an earlier --json run

Figures and how to read them: bench/README.md ("Voicemail IVR").

What it starts (each stopped by its pid at the end, also on failure or Ctrl-C):
  * a PBX rendered from a bench tenant (`make_tenants.py`: 1 tenant × USERS users, each with a
    mailbox holding MESSAGES new messages) on 127.0.0.60: SIP 21060, ARI/HTTP 21088, AMI 21038,
    RTP 21100-21399 (150 even ports: one RTP+RTCP pair per call);
  * the test phone: devices on 127.0.0.61 (SIP 21160, ARI 21188), carrier on 127.0.0.62 (SIP
    21170), RTP 21400-21999 (300 pairs: per call the call's own stream and, with --tap, the
    external-media stream of its snoop tap);
  * `vipbx serve` as a child process (FastAGI on 127.0.0.63:21073), so that its CPU is its own;
    `--in-process` runs the service in this process instead, as the e2e tests do.
The prompt catalogue is built once into the PBX home's `sounds` (prompts.build.build).

A bench-only dialplan addition (the product templates are untouched): the carrier number
+358201249990 goes to the product's own `vipbx-vm-access-fallback` context, i.e. Asterisk's
VoiceMailMain(<mailbox>@<tenant>) for the caller's mailbox, which asks for the PIN. The access
number +358201243100 goes to the vipbx IVR (caller-ID login, straight to the main menu).

For N in SIZES, first the vipbx IVR, then VoiceMailMain: N carrier calls from N users' own
numbers (started --ramp-per-call s apart), each
  vipbx:         waits for the first prompt burst (message count + main menu) to end, then
                 --keys times (--keys-single with one listener): presses "0" (main menu:
                 repeat) → the main menu plays again;
  VoiceMailMain: waits for "password", types the PIN and #, waits for the intro + instructions,
                 then as many times: presses "*" (help: the options are said again).
A key is pressed QUIET_S + --think-min..--think-max s after the previous prompt ended (no RTP
from the PBX for QUIET_S), as a listener who heard the menu out. Before each run the bench waits
(--wait-quiet) until other processes use under --quiet-cores: it measures on a shared machine.

Measurement point: the PBX's own RTP, captured on the loopback interface by a raw packet socket
(kernel time stamps, SO_TIMESTAMPNS) with a BPF filter on the PBX's RTP port range. The latency of
a key is from the phone's RFC 4733 end-of-event packet (the moment both IVRs act on a digit: they
react to DTMF end) to the first RTP packet the PBX sends on that call afterwards (the next prompt
starts: both IVRs send nothing while they wait for a key). Its own error is below a millisecond
(kernel stamps on one host); what it leaves out is the test phone's side (its DTMF generation,
its jitter, its tap). With --tap the phone's RTP tap (snoop → bridge → external media → Python)
is timed against it as well: the tap's own delay and jitter are reported per run.

CPU: utime+stime from /proc/<pid>/stat of the PBX Asterisk, of `vipbx serve`, of the test phone's
Asterisk and of this process, from the first call placed to the last call gone, divided by N.

Needs root (Asterisk in a chroot, raw packet socket). Every wait has a timeout; a run that does
not finish in time is cut, its calls hung up, and reported with the samples it got.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import math
import os
import platform as pyplatform
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from make_tenants import write as write_tenants

from asterisk_conf import confcheck
from asterisk_conf.deploy import Generations
from asterisk_conf.render import AMI_USER, ARI_USER, render_config
from asterisk_conf.validate import load_config
from asterisk_host import AsteriskInstance, AsteriskRuntime
from base.ami import AmiSettings
from base.model import Config, Tenant, User
from base.paths import Paths
from base.secrets import SecretStore
from testphone import PhoneInstance, PhoneSettings, TestPhone
from testphone.driver import Call
from vmstore import Envelope, VoicemailStore, new_msg_id

PBX_IP, PHONES_IP, CARRIER_IP, AGI_IP = "127.0.0.60", "127.0.0.61", "127.0.0.62", "127.0.0.63"
PBX_RTP = (21100, 21399)
PHONE_RTP = (21400, 21999)
ACCESS_NUMBER = "+358201243100"  # the product's voicemail number (platform default)
VMM_NUMBER = "+358201249990"  # bench only: straight to VoiceMailMain
PLATFORM = f"""platform:
  sip: {{bind: {PBX_IP}, port: 21060}}
  http: {{bind: {PBX_IP}, port: 21088}}
  ami: {{bind: {PBX_IP}, port: 21038}}
  agi: {{bind: {AGI_IP}, port: 21073}}
  rtp: {{start: {PBX_RTP[0]}, end: {PBX_RTP[1]}}}
  carrier: {{host: {CARRIER_IP}, port: 21170, match: [{CARRIER_IP}]}}
"""
# Bench-only dialplan: the carrier's VMM_NUMBER → the product's native VoiceMailMain fallback.
BENCH_CONTEXT = f"""
; ===== bench only (bench/bench_ivr.py): {VMM_NUMBER} → VoiceMailMain of the caller's mailbox =====
[vipbx-bench-vmm]
exten => {VMM_NUMBER},1,Set(VIPBX_CALLER=${{FILTER(0-9+,${{CALLERID(num)}})}})
 same => n,GotoIf(${{DIALPLAN_EXISTS(vipbx-vm-access-fallback,${{VIPBX_CALLER}},1)}}?vipbx-vm-access-fallback,${{VIPBX_CALLER}},1)
 same => n,Hangup(1)
"""

QUIET_S = 0.5  # no RTP from the PBX for this long: the prompt has ended
STALL_S = 0.06  # a hole this long between two packets of a prompt (20 ms apart) is a stall
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the measurement point: the PBX's RTP on the wire -------------------------------------------

def _bpf_program(low: int, high: int, snap: int = 96) -> bytes:
    """Classic BPF: the incoming copy of IPv4 UDP packets to or from ports low..high (on `lo`
    every packet is seen twice, outgoing and incoming), cut to `snap` bytes."""
    ins = [
        (0x30, 0, 0, 0xFFFFF004),  # ldb pkttype
        (0x15, 14, 0, 4),  # PACKET_OUTGOING → drop
        (0x28, 0, 0, 12),  # ldh ethertype
        (0x15, 0, 12, 0x0800),
        (0x30, 0, 0, 23),  # ldb ip proto
        (0x15, 0, 10, 17),
        (0x28, 0, 0, 20),  # ldh ip flags/fragment offset
        (0x45, 8, 0, 0x1FFF),  # a fragment → drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)
        (0x48, 0, 0, 14),  # ldh [x+14]: source port
        (0x35, 0, 1, low),
        (0x25, 0, 3, high),  # in range → accept
        (0x48, 0, 0, 16),  # ldh [x+16]: destination port
        (0x35, 0, 2, low),
        (0x25, 1, 0, high),
        (0x06, 0, 0, snap),  # accept
        (0x06, 0, 0, 0),  # drop
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


@dataclass
class Sample:
    key_begin: float  # kernel time of the first RFC 4733 packet of the key
    key_end: float  # ... of its first end-of-event packet
    audio: float  # first RTP audio packet from the PBX after key_end
    quiet_before: bool  # nothing from the PBX between key_begin and key_end (a clean sample)
    last_before: float  # the PBX's last packet before this one
    marker: bool = False  # the RTP marker bit of the first packet (a new talk spurt)

    @property
    def latency(self) -> float:
        return self.audio - self.key_end


class Stream:
    """One call's media as seen at the PBX's RTP port (updated by the sniffer thread)."""

    def __init__(self) -> None:
        self.last_audio = 0.0
        self.audio_packets = 0
        self.armed = False  # the next key is a measured one
        self.pending: tuple[float, float] | None = None  # (begin, end) of the armed key
        self.samples: list[Sample] = []
        self.stalls: list[float] = []
        self.markers = 0
        self.events: dict[int, list[float]] = {}  # RTP timestamp → [begin, end or 0]

    def on_audio(self, t: float, marker: bool = False) -> None:
        gap = t - self.last_audio
        if STALL_S <= gap < QUIET_S and self.pending is None:
            self.stalls.append(gap)  # a hole inside a prompt: the PBX sent late
        if self.pending is not None and t > self.pending[1]:
            begin, end = self.pending
            self.samples.append(Sample(begin, end, t, self.last_audio < begin, self.last_audio, marker))
            self.pending = None
        if marker:
            self.markers += 1
        self.last_audio = t
        self.audio_packets += 1

    def on_event(self, t: float, rtp_ts: int, end: bool) -> None:
        times = self.events.setdefault(rtp_ts, [t, 0.0])
        if end and not times[1]:
            times[1] = t
            if self.armed:
                self.armed = False
                self.pending = (times[0], t)


class Sniffer:
    """RTP to and from the PBX's port range on `lo`, kernel-time-stamped, per PBX port."""

    SO_TIMESTAMPNS = 35

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.streams: dict[int, Stream] = {}
        self.packets = 0
        self.lock = threading.Lock()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        program = _bpf_program(low, high)
        self._filter = ctypes.create_string_buffer(program)
        fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(self._filter))
        self._sock.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
        self._sock.setsockopt(socket.SOL_SOCKET, self.SO_TIMESTAMPNS, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 2**20)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._stopped = False
        self.dropped_before_filter = self._drain()
        self._thread = threading.Thread(target=self._run, name="rtp-sniffer", daemon=True)
        self._thread.start()

    def _drain(self) -> int:
        # Packets queued before the filter was attached are not ours to count.
        self._sock.setblocking(False)
        count = 0
        with suppress(BlockingIOError):
            while True:
                self._sock.recv(65535)
                count += 1
        self._sock.settimeout(0.2)
        return count

    def stream(self, pbx_port: int) -> Stream:
        with self.lock:
            return self.streams.setdefault(pbx_port, Stream())

    def forget(self, pbx_port: int) -> None:
        with self.lock:
            self.streams.pop(pbx_port, None)

    def _run(self) -> None:
        sock, low, high = self._sock, self.low, self.high
        while not self._stopped:
            try:
                data, anc, _, _ = sock.recvmsg(256, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            stamp = next((d for lvl, typ, d in anc if typ == self.SO_TIMESTAMPNS), None)
            if stamp is None:
                continue
            sec, nsec = struct.unpack("qq", stamp[:16])
            t = sec + nsec / 1e9
            ihl = (data[14] & 0x0F) * 4
            udp = 14 + ihl
            sport, dport = struct.unpack_from("!HH", data, udp)
            rtp = udp + 8
            if len(data) < rtp + 12 or data[rtp] >> 6 != 2:
                continue
            pt = data[rtp + 1] & 0x7F
            self.packets += 1
            if low <= sport <= high:  # from the PBX: a prompt's audio
                if pt >= 64:  # not audio (the PBX sends no DTMF here, but be safe)
                    continue
                with self.lock:
                    stream = self.streams.get(sport)
                if stream is not None:
                    stream.on_audio(t, bool(data[rtp + 1] & 0x80))
            elif low <= dport <= high and pt >= 96:  # RFC 4733 from the phone
                csrc = data[rtp] & 0x0F
                payload = rtp + 12 + 4 * csrc
                if len(data) < payload + 4:
                    continue
                rtp_ts = struct.unpack_from("!I", data, rtp + 4)[0]
                with self.lock:
                    stream = self.streams.get(dport)
                if stream is not None:
                    stream.on_event(t, rtp_ts, bool(data[payload + 1] & 0x80))

    def close(self) -> None:
        self._stopped = True
        self._thread.join(2)
        self._sock.close()


# --- CPU -----------------------------------------------------------------------------------------

def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), every process included."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --- the stack ------------------------------------------------------------------------------------

def bench_render(config: Config, secrets: SecretStore) -> dict[str, str]:
    """The product's files, plus the bench's VoiceMailMain number for the carrier."""
    files = render_config(config, secrets)
    text = files["extensions.conf"]
    header = "[vipbx-from-carrier]\n"
    if header not in text:
        raise SystemExit("extensions.conf has no [vipbx-from-carrier] context: update bench_ivr.py")
    files["extensions.conf"] = text.replace(header, header + "include => vipbx-bench-vmm\n", 1) + BENCH_CONTEXT
    return files


def write_tone(path: Path, frequency: float, seconds: float) -> None:
    count = int(seconds * 8000)
    samples = [int(6000 * math.sin(2 * math.pi * frequency * i / 8000)) for i in range(count)]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(struct.pack(f"<{count}h", *samples))


def seed_mailboxes(store: VoicemailStore, tenant: Tenant, users: list[User], messages: int, tmp: Path) -> None:
    """MESSAGES new messages (2 s tones) in each mailbox, as a deposit leaves them."""
    tone = tmp / "seed.wav"
    write_tone(tone, 440, 2.0)
    now = datetime.now(UTC)
    for user in users:
        for index in range(messages):
            copy = tmp / f"seed-{index}.wav"
            shutil.copyfile(tone, copy)
            envelope = Envelope(caller_number=f"+35845123{index:04d}", caller_name=None,
                                called_number=user.number, orig_time=now - timedelta(minutes=10 + index),
                                duration=2, msg_id=new_msg_id())
            store.add(tenant.id, user.number[1:], copy, envelope)


class Stack:
    def __init__(self, work: Path, users: int, messages: int, in_process: bool, tap: bool,
                 pbx_verbose: int = 0) -> None:
        self.work, self.users_count, self.messages = work, users, messages
        self.pbx_verbose = pbx_verbose
        self.in_process, self.tap = in_process, tap
        self.home = work / "home"
        self.runtime = AsteriskRuntime.locate()
        self.pbx: AsteriskInstance | None = None
        self.phone: PhoneInstance | None = None
        self.serve: subprocess.Popen[bytes] | None = None
        self.service_task: asyncio.Task[None] | None = None
        self.service_deps: Any = None

    def start(self) -> None:
        yaml_dir = self.work / "yaml"
        self.files = [str(p) for p in write_tenants(1, self.users_count, yaml_dir)]
        (yaml_dir / "platform.yaml").write_text(PLATFORM, encoding="utf-8")
        self.config = load_config(self.files)
        self.tenant = self.config.tenants[0]
        self.users = list(self.tenant.users)
        self.secrets = SecretStore(self.home / "secrets.json")
        files = bench_render(self.config, self.secrets)
        problems = confcheck.check(files)
        if problems:
            raise SystemExit("rendered configuration fails its check:\n" + "\n".join(problems))
        generations = Generations(Paths(self.home))
        generations.point(generations.current, generations.stage(files))

        from prompts.build import build
        started = time.monotonic()
        build(self.home / "sounds")
        log(f"prompt catalogue built in {time.monotonic() - started:.1f} s")
        self.pbx = AsteriskInstance(self.runtime, self.home / "pbx", generations.current, name="bench-ivr-pbx",
                                    shared=[self.home / "sounds"], verbose=self.pbx_verbose)
        self.pbx.start()
        self.store = VoicemailStore(self.pbx.spool_dir)
        seed_mailboxes(self.store, self.tenant, self.users, self.messages, self.work)
        log(f"PBX pid {self.pbx.pid}: {len(self.users)} users, {self.messages} new messages each")

        settings = PhoneSettings.for_config(self.config, PHONES_IP, sip_port=21160, http_port=21188,
                                            rtp_start=PHONE_RTP[0], rtp_end=PHONE_RTP[1])
        self.phone = PhoneInstance(self.runtime, self.home / "phone", self.secrets)
        self.phone.configure(self.config, settings)
        self.phone.start()
        state = self.phone.wait_registered(timeout=60)
        missing = [d for d in self.phone.devices if state.get(d) != "Registered"]
        if missing:
            raise SystemExit(f"{len(missing)} devices did not register, e.g. {missing[:3]}")
        log(f"test phone pid {self.phone.asterisk.pid}: {len(self.phone.devices)} devices registered")

    def start_serve(self) -> None:
        if self.in_process:
            return
        env = {**os.environ, "VIPBX_HOME": str(self.home)}
        env.pop("VIPBX_CONFIG", None)
        with open(self.work / "serve.log", "ab") as out:
            self.serve = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", *self.files],
                                          env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        assert self.pbx is not None
        while "vipbx" not in self.pbx.cli("ari show apps"):
            if self.serve.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("vipbx serve did not register its ARI app:\n"
                                 + (self.work / "serve.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        log(f"vipbx serve pid {self.serve.pid}")

    async def start_in_process(self) -> None:
        if not self.in_process:
            return
        from ari_app import plugins
        from ari_app.service import Service
        ami = AmiSettings(PBX_IP, 21038, AMI_USER, self.secrets.get("ami"))
        plugin, deps = plugins.load(self.config, Paths(self.home), ami, self.secrets.get)
        http = self.config.platform.http
        service = Service(self.config, f"http://{http.bind}:{http.port}/ari", ARI_USER, self.secrets.get("ari"),
                          handlers=plugin.handlers, background=plugin.background)
        self.service_task = asyncio.create_task(service.run(), name="vipbx-service")
        self.service_deps = deps
        await service.client.wait_connected(15)
        log("vipbx service running in this process")

    async def stop_in_process(self) -> None:
        if self.service_task is not None:
            self.service_task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self.service_task
            with suppress(Exception):
                self.service_deps.callstate.close()

    def pids(self) -> dict[str, int | None]:
        return {"asterisk": self.pbx.pid if self.pbx else None, "app": self.app_pid,
                "phone": self.phone.asterisk.pid if self.phone else None, "bench": os.getpid()}

    @property
    def app_pid(self) -> int | None:
        return self.serve.pid if self.serve is not None and self.serve.poll() is None else None

    def stop(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(20)
            except subprocess.TimeoutExpired:
                self.serve.kill()
                self.serve.wait(5)
        for instance in (self.phone, self.pbx):
            if instance is not None:
                with suppress(Exception):
                    instance.stop()

    def channel_count(self) -> int:
        assert self.pbx is not None
        text = self.pbx.cli("core show channels count")
        return int(next(line.split()[0] for line in text.splitlines() if "active channel" in line))

    def wait_idle(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.channel_count():
            if time.monotonic() > deadline:
                log("calls still up on the PBX after the run:\n" + self.pbx.cli("core show channels"))  # type: ignore[union-attr]
                return
            time.sleep(0.3)


class NoTapPhone(TestPhone):
    """The test phone without its snoop → bridge → external-media tap: the wire is the
    measurement point, and the tap would cost the phone's Asterisk and this process CPU."""

    async def _attach_media(self, call: Call) -> None:
        return None


# --- one run --------------------------------------------------------------------------------------

@dataclass
class CallResult:
    user: str
    samples: list[Sample] = field(default_factory=list)
    tap_delays: list[float] = field(default_factory=list)  # tap's first voiced packet − wire
    audio_packets: int = 0  # RTP packets of prompts the PBX sent in this call
    stalls: list[float] = field(default_factory=list)
    call_s: float = 0.0  # answered → hung up
    markers: int = 0  # RTP packets with the marker bit
    error: str = ""


async def pbx_port(call: Call) -> int:
    """The PBX's RTP port of this call, from the phone's side of it."""
    answer = await call.phone.client.get(f"/channels/{call.id}/variable", variable="CHANNEL(rtp,dest)")
    return int(str(answer["value"]).rsplit(":", 1)[1])


async def wait_prompt_end(stream: Stream, since: float, timeout: float) -> None:
    """Until the PBX has sent audio after `since` and then nothing for QUIET_S."""
    deadline = time.time() + timeout
    while True:
        now = time.time()
        if stream.last_audio > since and now - stream.last_audio >= QUIET_S:
            return
        if now > deadline:
            raise TimeoutError(f"no prompt that ended within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def wait_sample(stream: Stream, count: int, timeout: float) -> Sample:
    deadline = time.time() + timeout
    while len(stream.samples) < count:
        if time.time() > deadline:
            raise TimeoutError(f"no prompt within {timeout:.0f} s of the key")
        await asyncio.sleep(0.02)
    return stream.samples[count - 1]


def tap_delay(call: Call, sample: Sample, clock_offset: float) -> float | None:
    """When the phone's tap heard the first non-silent packet after the key, minus the wire's
    first packet: the tap's own delay (`clock_offset` turns loop time into wall time)."""
    if call.media is None:
        return None
    for packet in call.media.packets:
        arrival = packet.arrival + clock_offset
        if arrival > sample.key_end and not packet.silent:
            return arrival - sample.audio
    return None


async def one_call(phone: TestPhone, sniffer: Sniffer, system: str, user: User, keys: int,
                   think: tuple[float, float], delay: float, clock_offset: float) -> CallResult:
    result = CallResult(user.id)
    await asyncio.sleep(delay)
    number = ACCESS_NUMBER if system == "vipbx" else VMM_NUMBER
    key = "0" if system == "vipbx" else "*"
    call = None
    port = None
    answered = 0.0
    try:
        call = await phone.call(number, caller_number=user.number)
        await call.wait_state("Up", 30)
        answered = time.monotonic()
        port = await pbx_port(call)
        stream = sniffer.stream(port)
        start = time.time() - 1
        if system == "voicemailmain":
            await wait_prompt_end(stream, start, 30)  # "password"
            mark = time.time()
            await call.send_dtmf(user.pin + "#", duration_ms=80, between_ms=80, wait=False)
            start = mark
        await wait_prompt_end(stream, start, 60)  # count (+ intro) + menu
        for index in range(keys):
            await asyncio.sleep(random.uniform(*think))
            stream.armed = True
            mark = time.time()
            await call.send_dtmf(key, duration_ms=100, wait=False)
            sample = await wait_sample(stream, index + 1, 15)
            result.samples.append(sample)
            await wait_prompt_end(stream, mark, 60)
    except Exception as exc:  # noqa: BLE001 - reported per call, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if call is not None:
            with suppress(Exception):
                await call.hangup()
                await call.wait_hangup(10)
            if answered:
                result.call_s = time.monotonic() - answered
            for sample in result.samples:
                delay_s = tap_delay(call, sample, clock_offset)
                if delay_s is not None:
                    result.tap_delays.append(delay_s)
        if port is not None:
            result.audio_packets = sniffer.stream(port).audio_packets
            result.stalls = sniffer.stream(port).stalls
            result.markers = sniffer.stream(port).markers
            sniffer.forget(port)
    return result


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank: with few samples, p99 is simply the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


async def run(stack: Stack, phone: TestPhone, sniffer: Sniffer, system: str, n: int, keys: int,
              think: tuple[float, float], ramp: float, timeout: float,
              idle_rate: dict[str, float]) -> dict[str, Any]:
    users = stack.users[:n]
    pids = stack.pids()
    clock_offset = time.time() - asyncio.get_running_loop().time()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before = machine_busy()
    packets_before = sniffer.packets
    started = time.monotonic()
    started_wall = time.time()
    tasks = [asyncio.create_task(one_call(phone, sniffer, system, user, keys, think,
                                          ramp * i / max(1, n - 1) if n > 1 else 0.0, clock_offset))
             for i, user in enumerate(users)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        await phone.hangup_all()
    results = [t.result() for t in done if not t.cancelled() and t.exception() is None]
    # The last calls' hang-ups are part of the run.
    deadline = time.monotonic() + 20
    while stack.channel_count() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    wall = time.monotonic() - started
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpu = {name: after[name] - before[name] for name in pids}
    busy = machine_busy() - busy_before
    stalls = [g * 1000 for r in results for g in r.stalls]
    samples = [s for r in results for s in r.samples]
    clean = [s.latency * 1000 for s in samples if s.quiet_before]
    from_begin = [(s.audio - s.key_begin) * 1000 for s in samples if s.quiet_before]
    taps = [d * 1000 for r in results for d in r.tap_delays]
    errors = [f"{r.user}: {r.error}" for r in results if r.error] + [f"{len(pending)} calls cut at the run timeout"] * bool(pending)
    row = {
        "system": system, "n": n, "keys": keys, "calls_ok": sum(1 for r in results if not r.error),
        "samples": len(clean), "unclean": len(samples) - len(clean),
        "p50_ms": pct(clean, 0.5), "p90_ms": pct(clean, 0.9), "p99_ms": pct(clean, 0.99),
        "max_ms": max(clean, default=float("nan")), "mean_ms": statistics.fmean(clean) if clean else float("nan"),
        "p50_from_key_down_ms": pct(from_begin, 0.5), "p99_from_key_down_ms": pct(from_begin, 0.99),
        "tap_p50_ms": pct(taps, 0.5), "tap_p99_ms": pct(taps, 0.99), "tap_samples": len(taps),
        "wall_s": wall, "cpu_s": cpu, "idle_cpu_s": {k: idle_rate.get(k, 0.0) * wall for k in cpu},
        "audio_s": sum(r.audio_packets for r in results) * 0.02,
        "call_s": sum(r.call_s for r in results), "cpu_per_call_s": {k: v / n for k, v in cpu.items()},
        "sniffed_packets": sniffer.packets - packets_before,
        "machine_busy_s": busy, "others_cpu_s": busy - sum(cpu.values()),
        "stalls": len(stalls), "stall_p99_ms": pct(stalls, 0.99), "stall_max_ms": max(stalls, default=0.0),
        # Per sample: latency ms, ms from the PBX's previous packet to the key, s into the run.
        "raw": [(round(s.latency * 1000, 2), round((s.key_begin - s.last_before) * 1000, 1),
                 round(s.key_end - started_wall, 3), s.marker) for s in samples],
        "markers": sum(r.markers for r in results), "errors": errors[:10], "error_count": len(errors),
    }
    return row


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _name(system: str) -> str:
    return "vipbx (ARI)" if system == "vipbx" else "VoiceMailMain"


def latency_table(rows: list[dict[str, Any]]) -> str:
    lines = [("| IVR | listeners | keys timed | left out | p50 ms | p90 ms | p99 ms | max ms | PBX media stalls "
              "| failed calls | others' load, cores |"),
             "|---|" + "---:|" * 10]
    for r in rows:
        lines.append("| " + " | ".join([
            _name(r["system"]), str(r["n"]), str(r["samples"]), str(r["unclean"]), fmt(r["p50_ms"], 1),
            fmt(r["p90_ms"], 1), fmt(r["p99_ms"], 1), fmt(r["max_ms"], 1), str(r["stalls"]), str(r["n"] - r["calls_ok"]),
            fmt(max(0.0, r["others_cpu_s"] / r["wall_s"]), 2)]) + " |")
    return "\n".join(lines)


def cpu_table(rows: list[dict[str, Any]]) -> str:
    by = {(r["system"], r["n"]): r for r in rows}

    def ours(r: dict[str, Any]) -> float:
        return (r["cpu_s"]["asterisk"] + r["cpu_s"]["app"]) / r["n"]

    def per_minute(r: dict[str, Any]) -> float:
        return (r["cpu_s"]["asterisk"] + r["cpu_s"]["app"]) / max(r["call_s"] / 60, 1e-9)

    lines = [("| IVR | listeners | call s | prompt audio s | Asterisk s/call | app s/call | Asterisk + app s/call "
              "| × VoiceMailMain | Asterisk + app s per call-minute | × VoiceMailMain | phone s/call | bench s/call |"),
             "|---|" + "---:|" * 11]
    for r in rows:
        n = r["n"]
        other = by.get(("voicemailmain", n))
        ratio = ratio_min = float("nan")
        if other is not None and ours(other) > 0:
            ratio, ratio_min = ours(r) / ours(other), per_minute(r) / per_minute(other)
        lines.append("| " + " | ".join([
            _name(r["system"]), str(n), fmt(r["call_s"] / n), fmt(r["audio_s"] / n),
            fmt(r["cpu_s"]["asterisk"] / n, 3), fmt(r["cpu_s"]["app"] / n, 3), fmt(ours(r), 3),
            fmt(ratio, 2), fmt(per_minute(r), 3), fmt(ratio_min, 2),
            fmt(r["cpu_s"]["phone"] / n, 3), fmt(r["cpu_s"]["bench"] / n, 3)]) + " |")
    return "\n".join(lines)


async def bench(args: argparse.Namespace, stack: Stack) -> list[dict[str, Any]]:
    await stack.start_in_process()
    sniffer = Sniffer(*PBX_RTP)
    rows: list[dict[str, Any]] = []
    assert stack.phone is not None
    phone_cls = TestPhone if args.tap else NoTapPhone
    instance = stack.phone
    try:
        from testphone.config import ARI_SECRET
        async with phone_cls.connect(instance.settings, stack.secrets.get(ARI_SECRET), cli=instance.asterisk.cli,
                                     sounds_dir=instance.sounds_dir) as phone:
            # What each process costs with no call at all (timers, registrations): for the notes.
            pids = stack.pids()
            before = {k: cpu_seconds(pid) for k, pid in pids.items()}
            await asyncio.sleep(args.idle)
            idle_rate = {k: (cpu_seconds(pid) - before[k]) / args.idle for k, pid in pids.items()}
            log("idle CPU, % of one core: " + ", ".join(f"{k} {v * 100:.2f}" for k, v in idle_rate.items()))
            for n in args.sizes:
                for system in args.systems:
                    log(f"{system}: {n} listeners × {args.keys_single if n == 1 else args.keys} keys")
                    await asyncio.to_thread(stack.wait_idle)
                    await asyncio.sleep(args.settle)
                    if args.wait_quiet:
                        await wait_quiet(stack, args.wait_quiet, args.quiet_cores)
                    keys = args.keys_single if n == 1 else args.keys
                    row = await run(stack, phone, sniffer, system, n, keys, (args.think_min, args.think_max),
                                    min(args.ramp_per_call * n, args.ramp_max), args.run_timeout, idle_rate)
                    rows.append(row)
                    log(f"  p50 {fmt(row['p50_ms'])} ms, p99 {fmt(row['p99_ms'])} ms over {row['samples']} samples; "
                        f"CPU/call Asterisk {row['cpu_per_call_s']['asterisk']:.3f} s, app "
                        f"{row['cpu_per_call_s']['app']:.3f} s; {row['error_count']} errors")
                    for error in row["errors"][:3]:
                        log(f"  ! {error}")
                    if args.json:
                        args.json.write_text(json.dumps(rows, indent=1))
    finally:
        sniffer.close()
        await stack.stop_in_process()
    return rows


async def wait_quiet(stack: Stack, longest: float, cores: float, window: float = 3.0) -> None:
    """Wait (at most `longest` s) until processes other than ours use under `cores` cores: other
    people's builds and tests on the same machine skew both the latency and the CPU figures."""
    deadline = time.monotonic() + longest
    while True:
        pids = stack.pids()
        ours, busy = sum(cpu_seconds(p) for p in pids.values()), machine_busy()
        await asyncio.sleep(window)
        others = (machine_busy() - busy - (sum(cpu_seconds(p) for p in pids.values()) - ours)) / window
        if others < cores:
            return
        if time.monotonic() > deadline:
            log(f"  the machine is still busy ({others:.2f} cores used by others): running anyway")
            return
        log(f"  waiting for a quieter machine: others use {others:.2f} cores")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 2**20
    return f"{os.cpu_count()} × {model}, {mem:.0f} GiB, Linux {pyplatform.release()}, Python {pyplatform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,50,100", help="simultaneous listeners (default: %(default)s)")
    parser.add_argument("--systems", default="vipbx,voicemailmain", help="which IVRs, in order (default: %(default)s)")
    parser.add_argument("--keys", type=int, default=6, help="measured key presses per call (default: %(default)s)")
    parser.add_argument("--keys-single", type=int, default=12, help="... with a single listener (default: %(default)s)")
    parser.add_argument("--idle", type=float, default=10.0, help="s of idle CPU measured before the runs")
    parser.add_argument("--users", type=int, default=100, help="bench tenant users, ≥ the largest size")
    parser.add_argument("--messages", type=int, default=2, help="new messages seeded in each mailbox")
    parser.add_argument("--think-min", type=float, default=0.1, help="s after QUIET_S before a key (min)")
    parser.add_argument("--think-max", type=float, default=0.6, help="... (max)")
    parser.add_argument("--ramp-per-call", type=float, default=0.1, help="s between call starts")
    parser.add_argument("--ramp-max", type=float, default=10.0, help="longest ramp, s")
    parser.add_argument("--settle", type=float, default=3.0, help="idle s between runs")
    parser.add_argument("--run-timeout", type=float, default=420.0, help="a run is cut after this many s")
    parser.add_argument("--wait-quiet", type=float, default=300.0,
                        help="before each run, wait up to this many s for other processes to calm down (0: never)")
    parser.add_argument("--quiet-cores", type=float, default=0.3, help="... to under this many cores")
    parser.add_argument("--tap", action="store_true", help="keep the phone's RTP tap and time it against the wire")
    parser.add_argument("--in-process", action="store_true", help="run the vipbx service in this process")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, spool)")
    parser.add_argument("--json", type=Path, help="write the rows here as they come")
    parser.add_argument("--pbx-verbose", type=int, default=0, help=argparse.SUPPRESS)  # for debugging
    parser.add_argument("--report", type=Path, help="only print the tables of an earlier --json file")
    args = parser.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()))
        return 0
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.systems = [s.strip() for s in args.systems.split(",")]
    if max(args.sizes) > args.users:
        parser.error("--users must be at least the largest size")
    if os.geteuid() != 0:
        parser.error("needs root (Asterisk in a chroot, a raw packet socket)")

    work = Path(tempfile.mkdtemp(prefix="vipbx-bench-ivr-"))
    log(f"work folder {work}; {machine()}")
    stack = Stack(work, args.users, args.messages, args.in_process, args.tap, args.pbx_verbose)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    rows: list[dict[str, Any]] = []
    try:
        stack.start()
        stack.start_serve()
        log(f"Asterisk {stack.runtime.version()}")
        rows = asyncio.run(bench(args, stack))
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
    finally:
        stack.stop()
        if args.keep or not rows:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if rows:
        print(f"machine: {machine()}")
        report(rows)
    return 0 if rows else 1


def report(rows: list[dict[str, Any]]) -> None:
    print(latency_table(rows))
    print()
    print(cpu_table(rows))
    if any(r["tap_samples"] for r in rows):
        print("\ntap delay (phone's tap first voiced packet − wire first packet), ms:")
        for r in rows:
            print(f"  {r['system']} N={r['n']}: p50 {fmt(r['tap_p50_ms'])} p99 {fmt(r['tap_p99_ms'])} "
                  f"({r['tap_samples']} samples)")


if __name__ == "__main__":
    sys.exit(main())
