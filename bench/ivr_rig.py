"""The rig the voicemail and activity IVR benchmarks share: a PBX rendered from a bench tenant, the
test phone, `vipbx serve`, the RTP capture on the loopback interface that is their measurement
point, CPU accounting per process, and a bounded run of N simultaneous calls.

bench_ivr.py (access calls, 1/50/100 listeners) and bench_ivr_load.py (200/400 access calls,
deposits, activity calls, one run) are its users; each says what its calls do.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import platform as pyplatform
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
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
from asterisk_conf.render import AGI_KEY, AMI_USER, ARI_USER, render_config
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
# RTP: one even port (RTP, RTCP on the next) per call at the PBX; at the phone one per call and,
# with --tap, one more for the tap's external media. 1,000 pairs at the PBX and 2,000 at the phone
# leave room for 400 calls (Asterisk picks ports at random and retries a taken one).
PBX_RTP = (22000, 23999)
PHONE_RTP = (24000, 27999)
# Room for 400 calls in each Asterisk (the bench's asterisk.conf only): a call holds several
# descriptors (RTP, RTCP, timers, the Stasis control). The HTTP session limit is the product's own
# (templates/http.conf.j2, and the test phone's http.conf).
ASTERISK_OPTIONS = {"maxfiles": "65536", "maxcalls": "2000"}
ACCESS_NUMBER = "+358201243100"  # the product's voicemail number (platform default)
ACTIVITY_NUMBER = "+358201243200"  # the product's activity-change number (platform default)
VMM_NUMBER = "+358201249990"  # bench only: straight to VoiceMailMain
VMD_NUMBER = "+358201249991"  # bench only: a diverted call straight to VoiceMail()
PLATFORM = f"""platform:
  sip: {{bind: {PBX_IP}, port: 21060}}
  http: {{bind: {PBX_IP}, port: 21088}}
  ami: {{bind: {PBX_IP}, port: 21038}}
  agi: {{bind: {AGI_IP}, port: 21073}}
  rtp: {{start: {PBX_RTP[0]}, end: {PBX_RTP[1]}}}
  carrier: {{host: {CARRIER_IP}, port: 21170, match: [{CARRIER_IP}]}}
"""
# Bench-only dialplan: the carrier's VMM_NUMBER → the product's native VoiceMailMain fallback,
# VMD_NUMBER with a Diversion header → its native VoiceMail() fallback for the diverted number.
BENCH_CONTEXT = f"""
; ===== bench only (bench/ivr_rig.py): the product's native voicemail fallbacks, reached directly =====
[vipbx-bench-vmm]
exten => {VMM_NUMBER},1,Set(VIPBX_CALLER=${{FILTER(0-9+,${{CALLERID(num)}})}})
 same => n,GotoIf(${{DIALPLAN_EXISTS(vipbx-vm-access-fallback,${{VIPBX_CALLER}},1)}}?vipbx-vm-access-fallback,${{VIPBX_CALLER}},1)
 same => n,Hangup(1)
exten => {VMD_NUMBER},1,Set(VIPBX_DIVERTED=${{FILTER(0-9+,${{REDIRECTING(from-num)}})}})
 same => n,GotoIf(${{DIALPLAN_EXISTS(vipbx-vm-deposit-fallback,${{VIPBX_DIVERTED}},1)}}?vipbx-vm-deposit-fallback,${{VIPBX_DIVERTED}},1)
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
    """The product's files, plus the bench's numbers for the carrier and its HTTP session limit."""
    files = render_config(config, secrets)
    text = files["extensions.conf"]
    header = "[vipbx-from-carrier]\n"
    if header not in text:
        raise SystemExit("extensions.conf has no [vipbx-from-carrier] context: update ivr_rig.py")
    files["extensions.conf"] = text.replace(header, header + "include => vipbx-bench-vmm\n", 1) + BENCH_CONTEXT
    return files


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit (inherited by `vipbx serve`) to `wanted` or the hard
    limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
                                    shared=[self.home / "sounds"], verbose=self.pbx_verbose,
                                    options=ASTERISK_OPTIONS)
        self.pbx.start()
        self.store = VoicemailStore(self.pbx.spool_dir)
        seed_mailboxes(self.store, self.tenant, self.users, self.messages, self.work)
        log(f"PBX pid {self.pbx.pid}: {len(self.users)} users, {self.messages} new messages each")

        settings = PhoneSettings.for_config(self.config, PHONES_IP, sip_port=21160, http_port=21188,
                                            rtp_start=PHONE_RTP[0], rtp_end=PHONE_RTP[1])
        self.phone = PhoneInstance(self.runtime, self.home / "phone", self.secrets)
        self.phone.configure(self.config, settings)
        # The same room for calls as the PBX (bench only: the phone's own files stay as rendered).
        self.phone.asterisk.options.update(ASTERISK_OPTIONS)
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
                          agi_key=self.secrets.get(AGI_KEY), handlers=plugin.handlers, background=plugin.background)
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

    def take_stream(self, sniffer: Sniffer, port: int | None) -> None:
        """Keep what the capture saw of this call's media, and stop following its port."""
        if port is not None:
            stream = sniffer.stream(port)
            self.audio_packets, self.stalls, self.markers = stream.audio_packets, stream.stalls, stream.markers
            sniffer.forget(port)


async def timed_key(call: Call, stream: Stream, key: str, think: tuple[float, float]) -> Sample:
    """As a listener who heard the prompt out: after a think time, press `key` (RFC 4733, 100 ms);
    the sample of it once the PBX answers, returned when that answer has ended."""
    await asyncio.sleep(random.uniform(*think))
    count = len(stream.samples)
    stream.armed = True
    mark = time.time()
    await call.send_dtmf(key, duration_ms=100, wait=False)
    sample = await wait_sample(stream, count + 1, 15)
    await wait_prompt_end(stream, mark, 60)
    return sample


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


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank: with few samples, p99 is simply the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def fmt(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


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



# --- a run of N simultaneous calls ---------------------------------------------------------------

@dataclass
class Outcome:
    """What a run of N calls produced, with the CPU each process used from the first call placed
    to the last call gone."""

    results: list[Any]  # one per call that finished in time, whatever it returned
    cut: int  # calls cut at the run's timeout (hung up, no result)
    wall: float  # s
    cpu: dict[str, float]  # process name (Stack.pids) → CPU s
    busy: float  # CPU s of the whole machine
    sniffed: int  # RTP packets the capture saw
    started_wall: float  # time.time() at the start

    @property
    def others_cpu(self) -> float:
        return self.busy - sum(self.cpu.values())


async def run_calls(stack: Stack, phone: TestPhone, sniffer: Sniffer, n: int, ramp: float, timeout: float,
                    call: Callable[[int, float], Awaitable[Any]]) -> Outcome:
    """`call(index, delay)` for index 0..n-1, started together, each told to wait `delay` s (the
    ramp spread evenly); the run is cut after `timeout` s (calls left are hung up) and ends when
    the PBX has no channel left (at most 20 s more)."""
    pids = stack.pids()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before = machine_busy()
    packets_before = sniffer.packets
    started = time.monotonic()
    started_wall = time.time()
    tasks = [asyncio.create_task(call(i, ramp * i / (n - 1) if n > 1 else 0.0)) for i in range(n)]
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
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return Outcome(results, len(pending) + len(done) - len(results), wall, cpu, machine_busy() - busy_before,
                   sniffer.packets - packets_before, started_wall)


@asynccontextmanager
async def connected(stack: Stack, tap: bool) -> AsyncIterator[tuple[TestPhone, Sniffer]]:
    """The vipbx service (when in-process), the RTP capture and the test phone's ARI, for the
    runs; all stopped on the way out."""
    from testphone.config import ARI_SECRET

    await stack.start_in_process()
    sniffer = Sniffer(*PBX_RTP)
    assert stack.phone is not None
    instance = stack.phone
    try:
        async with (TestPhone if tap else NoTapPhone).connect(
                instance.settings, stack.secrets.get(ARI_SECRET), cli=instance.asterisk.cli,
                sounds_dir=instance.sounds_dir) as phone:
            yield phone, sniffer
    finally:
        sniffer.close()
        await stack.stop_in_process()


async def idle_rates(stack: Stack, seconds: float) -> dict[str, float]:
    """What each process costs with no call at all (timers, registrations), in cores."""
    pids = stack.pids()
    before = {k: cpu_seconds(pid) for k, pid in pids.items()}
    await asyncio.sleep(seconds)
    rates = {k: (cpu_seconds(pid) - before[k]) / seconds for k, pid in pids.items()}
    log("idle CPU, % of one core: " + ", ".join(f"{k} {v * 100:.2f}" for k, v in rates.items()))
    return rates


async def before_run(stack: Stack, settle: float, quiet_s: float, quiet_cores: float) -> None:
    """No call left from the last run, `settle` s of rest, and (up to `quiet_s`) a quiet machine."""
    await asyncio.to_thread(stack.wait_idle)
    await asyncio.sleep(settle)
    if quiet_s:
        await wait_quiet(stack, quiet_s, quiet_cores)


async def hang_up(call: Call | None) -> None:
    """Hang up (if still up) and wait for the hang-up; never raises."""
    if call is not None:
        with suppress(Exception):
            await call.hangup()
            await call.wait_hangup(10)


def with_stack(prefix: str, stack_args: tuple[int, int, bool, bool, int], keep: bool,
               body: Callable[[Stack], Awaitable[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Start the stack in a new work folder, run `body` on it, and stop everything by pid, also on
    failure, Ctrl-C or SIGTERM; the rows `body` returned (none when it was cut short). The folder
    is removed unless `keep` or there are no rows (its logs tell why)."""
    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    log(f"work folder {work}; {machine()}")
    stack = Stack(work, *stack_args)

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    rows: list[dict[str, Any]] = []
    try:
        stack.start()
        stack.start_serve()
        log(f"Asterisk {stack.runtime.version()}")
        rows = asyncio.run(body(stack))
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
    finally:
        stack.stop()
        if keep or not rows:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rows
