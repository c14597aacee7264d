"""The FastAGI routing answer under load: decisions per second, latency at a given call-attempt
rate, and the server's CPU per decision.

    python bench/bench_agi.py                                # everything (about 4 minutes)
    python bench/bench_agi.py --modes open --rate 100 --seconds 30
    python bench/bench_agi.py --modes closed --concurrency 1,8,32 --closed-seconds 10
    python bench/bench_agi.py --modes micro                  # no sockets: where the time goes

Figures and how to read them: bench/README.md ("FastAGI routing").

What it sets up, in a temporary folder:
  * a platform from `make_tenants.py` (--tenants × --users, one softphone each) and a call-state
    SQLite database in which some users have changed their routing through the service, as they
    would with the 987 codes or the CLI (`SEED_PLAN`: 10 % immediate forward, 10 % no-answer
    forward to a mobile, 30 % busy forward "none", 20 % call waiting off; drawn per user);
  * the real FastAGI server (`agi.server.start_agi_server` with a `CallStateService`) in a child
    process on 127.0.0.70, port chosen by the kernel, logging at INFO to a file as `vipbx serve`
    does. A separate process: the load generator's own work (an event loop handling every
    connection) must not share the server's event loop and GIL, and the server's CPU must be
    its own figure, as it is in production where the client is Asterisk.

The load generator plays Asterisk's res_agi: it connects (from 127.0.0.71), sends the AGI
environment of `AGI(agi://127.0.0.70:PORT/route,TENANT,USER,DEVICE_STATE,CHAIN,REDIRECT_COUNT)`
(agi_network, agi_network_script, agi_request, ..., agi_arg_1..5, blank line; in one write,
where Asterisk writes line by line), answers every command line with `200 result=1` and reads
until the server closes. One attempt's latency is from just before the connect to the server's
close (EOF): the whole answer as the dialplan waits for it. Each answer is compared with the
`SET VARIABLE VIPBX_ROUTE` line expected for that user and call (computed beforehand with
`decide()` and the service); a wrong or short answer, a refused connection or a timeout is an
error.

Modes (run in this order):
  micro   no sockets: `decide()` calls per second (the attempts' mix; first vs last user, which a
          linear look-up would tell apart; users forwarding to an outside number),
          `CallStateService.routing()` reads per second, the `asyncio.to_thread` hop, and the
          server's decision path (`AgiApplication.decide`).
  open    open loop: attempts start on a schedule regardless of answers (Poisson arrivals by
          default, `--arrivals fixed` for even spacing), for each --rate, --seconds each:
          p50/p90/p99/max latency, errors, and how late the generator started attempts.
  ping    the same at the first --rate with the server's `ping` script (one SET VARIABLE, no
          decision): what a connection and one round trip cost, for comparison.
  closed  closed loop: N connections back to back for --closed-seconds: decisions per second.
For every run: the server's CPU (utime + stime from /proc/PID/stat, all its threads) per 1,000
decisions and its kernel share, this process's CPU, what other processes used meanwhile (a shared
machine: before each run the bench waits, up to --wait-quiet s, for them to calm down), and the
answers over 5 ms that overlapped a garbage collection of the server or of this process (the
server logs its collections to a file as they happen; this process freezes its heap before the
runs, see `gc.freeze`, so that its own collections do not pass for slow answers).

Everything stops by itself: each attempt has a timeout, each run a fixed length, the server
child exits when its stdin closes (this process gone) or after a lifetime, and it is stopped by
its pid at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform as pyplatform
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Self

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from make_tenants import write as write_tenants

from agi.routing import CallFacts, decide
from agi.server import AgiApplication, quote
from asterisk_conf.validate import load_config
from base.model import Config
from callstate import CallStateService, SettingsError

SERVER_HOST = "127.0.0.70"
CLIENT_HOST = "127.0.0.71"  # the generator's source address: its own ephemeral-port space
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 60.0  # s for the server child to load the configuration and listen
ASTERISK_VERSION = "22.10.1"
GC_LOGGED_S = 0.001  # the server's garbage collections this long or longer are logged
SLOW_KEPT = 200  # start times of slow answers kept per run (JSON), to line them up with the log

# Per user, independent draws: (probability, change). Forwards are set through the service, so
# they pass the same checks as a user's own 987 code or the CLI.
SEED_PLAN = (
    (0.10, "immediate"),  # 2/3 to a mobile number, 1/3 to a colleague's extension
    (0.10, "no_answer"),  # to a mobile number after 15 s
    (0.30, "busy_none"),  # busy calls get a busy signal instead of voicemail
    (0.20, "no_call_waiting"),
)
# EXTENSION_STATE of the called user's hint, as the dialplan passes it.
DEVICE_STATES = (("NOT_INUSE", 0.70), ("INUSE", 0.20), ("UNAVAILABLE", 0.10))
FORWARDED_SHARE = 0.05  # attempts that arrive already forwarded once (a chain and a redirect)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the platform: configuration and call state ---------------------------------------------------

def build_config(folder: Path, tenants: int, users: int) -> Config:
    return load_config([str(p) for p in write_tenants(tenants, users, folder)])


def mobile(rng: random.Random) -> str:
    return f"+35850{rng.randrange(10**7):07d}"  # a Finnish mobile number: not premium, allowed


def seed_state(service: CallStateService, config: Config, rng: random.Random) -> Counter[str]:
    """Changes some users' routing through the service; what was done, by kind."""
    done: Counter[str] = Counter()
    for tenant in config.tenants:
        for user in tenant.users:
            for share, change in SEED_PLAN:
                if rng.random() < share:
                    try:
                        apply_change(service, tenant.id, user.id, change, rng, len(tenant.users))
                        done[change] += 1
                    except SettingsError:
                        done[f"{change} refused"] += 1  # e.g. a colleague forwarding back (loop)
    return done


def apply_change(service: CallStateService, tenant_id: str, user_id: str, change: str,
                 rng: random.Random, users: int) -> None:
    actor, source = "bench", "cli"
    if change == "immediate":
        target = mobile(rng) if rng.random() < 2 / 3 else str(1000 + rng.randrange(users))
        service.set_forward(tenant_id, user_id, "immediate", target, actor=actor, source=source)
    elif change == "no_answer":
        service.set_forward(tenant_id, user_id, "no_answer", mobile(rng), no_answer_seconds=15,
                            actor=actor, source=source)
    elif change == "busy_none":
        service.set_forward(tenant_id, user_id, "busy", "none", actor=actor, source=source)
    elif change == "no_call_waiting":
        service.set_call_waiting(tenant_id, user_id, False, actor=actor, source=source)


# --- attempts: what Asterisk sends, and what it must get back ----------------------------------

@dataclass(frozen=True, slots=True)
class Attempt:
    tenant: str
    user: str
    args: tuple[str, ...]  # agi_arg_1..5 as the dialplan passes them
    dnid: str  # the number dialled: the user's own
    expected: tuple[bytes, ...]  # the command lines the server must send, in order
    script: str = "route"


# The reference: the server's `ping` script, one SET VARIABLE and no decision.
PING = Attempt("", "", (), "+358201243100", (b'SET VARIABLE VIPBX_PONG "1"',), "ping")


def draw_facts(rng: random.Random, config: Config) -> tuple[str, str, str]:
    state = rng.choices([s for s, _ in DEVICE_STATES], [w for _, w in DEVICE_STATES])[0]
    if rng.random() < FORWARDED_SHARE:
        tenant = rng.choice(config.tenants)
        return state, f"{tenant.id}:{rng.choice(tenant.users).id}", "1"
    return state, "", "0"


def make_attempts(config: Config, service: CallStateService, rng: random.Random, count: int) -> list[Attempt]:
    """`count` attempts to users drawn uniformly over the platform, with the answer each must get."""
    attempts = []
    for _ in range(count):
        tenant = rng.choice(config.tenants)
        user = rng.choice(tenant.users)
        state, chain, redirects = draw_facts(rng, config)
        facts = CallFacts.parse(state, chain, redirects)
        routing, presence = service.call_state(tenant.id, user.id)
        decision = decide(config, tenant.id, user.id, routing, facts, presence)
        expected = (f"SET VARIABLE VIPBX_ROUTE {quote(decision.packed())}".encode(),)
        attempts.append(Attempt(tenant.id, user.id, (tenant.id, user.id, state, chain, redirects),
                                user.number, expected))
    return attempts


BENCH_KEY = "bench-agi-key"  # the dialplan's first AGI argument (see agi/server.py)


def agi_env(attempt: Attempt, port: int, serial: int) -> bytes:
    """The environment res_agi sends for a FastAGI call, in its order (launch_netscript, then
    setup_env); an empty argument is sent as "agi_arg_N: " like Asterisk does."""
    request = f"agi://{SERVER_HOST}:{port}/{attempt.script}"
    lines = [
        "agi_network: yes",
        f"agi_network_script: {attempt.script}",
        f"agi_request: {request}",
        f"agi_channel: PJSIP/carrier-{serial:08x}",
        "agi_language: fi",
        "agi_type: PJSIP",
        f"agi_uniqueid: 1700000000.{serial}",
        f"agi_version: {ASTERISK_VERSION}",
        "agi_callerid: +358451234567",
        "agi_calleridname: unknown",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        f"agi_dnid: {attempt.dnid}",
        "agi_rdnis: unknown",
        "agi_context: vipbx-call-user",
        "agi_extension: s",
        "agi_priority: 5",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        f"agi_threadid: {140000000000000 + serial}",
        *(f"agi_arg_{n}: {value}" for n, value in enumerate((BENCH_KEY, *attempt.args), 1)),
    ]
    return ("\n".join(lines) + "\n\n").encode()


# --- the server process -----------------------------------------------------------------------

Pause = tuple[int, float, float]  # a garbage collection: generation, perf_counter at its start, seconds
BENCH_PAUSES: list[Pause] = []  # this process's own, during the load runs


def record_gc_pauses(sink: Callable[[Pause], object]) -> Callable[[str, dict[str, int]], None]:
    """Passes on every collection of GC_LOGGED_S or more, and every full (generation 2) one, as it
    happens: the bench lines them up with slow answers. Times are perf_counter (CLOCK_MONOTONIC
    on Linux), the same clock in both processes."""
    began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        took = time.perf_counter() - began[0]
        if took >= GC_LOGGED_S or info["generation"] == 2:
            sink((info["generation"], began[0], took))

    gc.callbacks.append(on_gc)
    return on_gc


def serve_child(argv: Sequence[str]) -> int:
    """In the child: `--serve YAML_DIR DB LOG LEVEL LIFETIME GC_FILE FREEZE`. Prints `ready PORT`,
    serves until stdin closes, SIGTERM or LIFETIME seconds."""
    import logging

    from agi.server import start_agi_server

    folder, db, log_path, level, lifetime, gc_path, freeze = argv
    logging.basicConfig(filename=log_path, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    files = [str(Path(folder) / "platform.yaml"), *sorted(str(p) for p in Path(folder).glob("t*.yaml"))]
    config = load_config(files)
    state = CallStateService(db, config)
    if freeze == "freeze":
        # As `vipbx serve` does: the configuration is immutable, so moving it out of the
        # collector's sight removes it from every full collection.
        gc.collect()
        gc.freeze()

    async def run() -> None:
        server, _ = await start_agi_server(config, SERVER_HOST, 0, state, key=BENCH_KEY)
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)

        def on_stdin() -> None:
            # stdin is a pipe from the bench: EOF means the bench is gone, whatever the reason.
            if not os.read(sys.stdin.fileno(), 512):
                stop.set()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        try:
            await asyncio.wait_for(stop.wait(), float(lifetime))
        except TimeoutError:
            logging.getLogger(__name__).warning("lifetime over: stopping")
        server.close()
        await server.wait_closed()

    try:
        with Path(gc_path).open("a", buffering=1) as out:
            on_gc = record_gc_pauses(lambda pause: out.write(f"{pause[0]} {pause[1]:.6f} {pause[2]:.6f}\n"))
            try:
                asyncio.run(run())
            finally:
                gc.callbacks.remove(on_gc)
    finally:
        state.close()
    return 0


class ServerProcess:
    def __init__(self, folder: Path, db: Path, log_path: Path, level: str, lifetime: float,
                 freeze: bool = False) -> None:
        self.gc_path = log_path.with_suffix(".gc")
        self.argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(folder), str(db),
                     str(log_path), level, str(int(lifetime)), str(self.gc_path), "freeze" if freeze else "-"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], READY_TIMEOUT)
        line = self.proc.stdout.readline().decode().split() if ready else []
        if len(line) != 2 or line[0] != "ready":
            self.stop()
            raise SystemExit(f"the FastAGI server did not start (got {line!r}); see its log")
        self.port = int(line[1])

    def gc_pauses(self, start: float, end: float) -> list[Pause]:
        """(generation, start, seconds) of the server's logged collections that began in [start, end]."""
        if not self.gc_path.exists():
            return []
        rows = [(int(g), float(t), float(d)) for g, t, d in
                (line.split() for line in self.gc_path.read_text().splitlines() if line.count(" ") == 2)]
        return [row for row in rows if start <= row[1] <= end]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --- CPU --------------------------------------------------------------------------------------------

def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process and all its threads, in seconds (10 ms ticks); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """CPU seconds all cores spent busy since boot (/proc/stat): (user + system + irq, softirq).
    Softirq is apart: it is mostly the loopback TCP traffic of the run, charged to no process."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]  # then steal: not ours
    return (user + nice + system + irq) / CLK_TCK, softirq / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Window:
    """One run's wall time and the CPU the server, this process and everything else used in it."""

    server_pid: int
    t0: float = 0.0
    wall: float = 0.0
    start: tuple[float, ...] = ()

    def sample(self) -> tuple[float, ...]:
        return (*cpu_times(self.server_pid), sum(cpu_times(os.getpid())), *machine_busy())

    def __enter__(self) -> Self:
        self.start = self.sample()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        deltas = (e - s for e, s in zip(self.sample(), self.start))
        self.server_user, self.server_sys, self.bench, busy, self.softirq = deltas
        self.server = self.server_user + self.server_sys
        self.others = max(0.0, busy - self.server - self.bench)


def others_cores(server_pid: int, window: float = 3.0) -> float:
    """Cores used by processes other than the server and this one over the next `window` s."""
    with Window(server_pid) as run:
        time.sleep(window)
    return run.others / run.wall


def wait_quiet(server_pid: int, longest: float, cores: float) -> float:
    """Waits (at most `longest` s) until other processes use under `cores` cores: other people's
    builds and tests on the same two cores show up in every latency figure. Their load then."""
    deadline = time.monotonic() + longest
    while (others := others_cores(server_pid)) >= cores:
        if time.monotonic() > deadline:
            log(f"  the machine is still busy ({others:.2f} cores used by others): running anyway")
            break
        log(f"  waiting for a quieter machine: others use {others:.2f} cores")
    return others


# --- the load generator -------------------------------------------------------------------------

OK = ""
AGI_OK = b"200 result=1\n"  # what Asterisk answers to a successful SET VARIABLE


class AgiCall(asyncio.Protocol):
    """One FastAGI conversation as Asterisk holds it: environment, a reply per command, until EOF."""

    def __init__(self, env: bytes, expected: tuple[bytes, ...], done: asyncio.Future[tuple[float, str]]) -> None:
        self.env, self.expected, self.done = env, expected, done
        self.buffer = b""
        self.count = 0
        self.error = OK
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.env)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line, self.buffer = self.buffer[:end], self.buffer[end + 1:]
            if self.count >= len(self.expected) or line != self.expected[self.count]:
                self.error = self.error or "wrong answer"
            self.count += 1
            assert self.transport is not None
            self.transport.write(AGI_OK)

    def eof_received(self) -> bool:
        self.finish()
        return False  # let the transport close our side, as res_agi does on EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish("reset" if exc is not None else OK)

    def finish(self, failure: str = OK) -> None:
        if self.done.done():
            return
        short = "short answer" if self.count != len(self.expected) else OK
        self.done.set_result((time.perf_counter(), self.error or failure or short))


@dataclass
class Sample:
    started: float  # perf_counter at the connect
    latency: float  # s, nan on error
    error: str = OK


async def one_attempt(port: int, env: bytes, expected: tuple[bytes, ...], timeout: float) -> Sample:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[float, str]] = loop.create_future()
    started = time.perf_counter()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(lambda: AgiCall(env, expected, done), SERVER_HOST,
                                                        port, local_addr=(CLIENT_HOST, 0))
            ended, error = await done
    except TimeoutError:
        return Sample(started, math.nan, "timeout")
    except OSError as exc:
        return Sample(started, math.nan, f"connect: {exc.strerror or exc}")
    finally:
        if transport is not None:
            transport.close()
    return Sample(started, ended - started if not error else math.nan, error)


@dataclass
class Plan:
    """Cycles through the prepared attempts, giving each a new channel name and unique id."""

    attempts: list[Attempt]
    port: int
    serial: int = 0

    def next(self) -> tuple[bytes, tuple[bytes, ...]]:
        attempt = self.attempts[self.serial % len(self.attempts)]
        self.serial += 1
        return agi_env(attempt, self.port, self.serial), attempt.expected


@dataclass
class RunResult:
    mode: str
    load: str  # "100/s" or "8 conn"
    seconds: float
    attempts: int
    ok: int
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    decisions_per_s: float
    server_cpu_ms_per_1000: float
    server_sys_share: float  # of the server's CPU, the part in the kernel (stime)
    server_cores: float
    bench_cores: float
    others_cores: float  # every other process, from /proc/stat
    softirq_cores: float  # the kernel's softirq time, mostly this run's loopback TCP
    others_before: float  # others' cores just before the run (see wait_quiet)
    late_p99_ms: float = math.nan  # open loop: how late the generator started attempts
    dropped: int = 0  # open loop: not started because --max-in-flight were open
    over_5ms: int = 0  # answers slower than 5 ms
    over_5ms_in_gc: int = 0  # ... of which overlapped one of the server's logged GC pauses
    gc_full: int = 0  # the server's full (generation 2) collections during the run
    gc_longest_ms: float = 0.0  # its longest collection during the run
    over_5ms_in_bench_gc: int = 0  # answers over 5 ms that overlapped a GC pause of this process
    slow: list[float] = field(default_factory=list)  # when (s into the run) the first SLOW_KEPT began


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def overlaps(sample: Sample, pauses: Sequence[Pause]) -> bool:
    end = sample.started + sample.latency
    return any(start < end and sample.started < start + took for _, start, took in pauses)


@dataclass
class Measured:
    """What one run saw, before the figures are drawn from it."""

    samples: list[Sample]
    run: Window
    late: list[float] = field(default_factory=list)  # open loop: s each start was behind schedule
    dropped: int = 0


def summarize(mode: str, load: str, measured: Measured, server: ServerProcess, quiet: float) -> RunResult:
    samples, run, late, dropped = measured.samples, measured.run, measured.late, measured.dropped
    good = [s.latency for s in samples if not s.error]
    slow = sorted((s for s in samples if not s.error and s.latency > 0.005), key=lambda s: s.started)
    pauses = server.gc_pauses(run.t0 - 1, run.t0 + run.wall)
    ours = [pause for pause in BENCH_PAUSES if run.t0 - 1 <= pause[1] <= run.t0 + run.wall]
    errors = Counter(s.error for s in samples if s.error)
    if dropped:
        errors["dropped"] = dropped
    wall = run.wall
    return RunResult(
        mode=mode, load=load, seconds=wall, attempts=len(samples) + dropped, ok=len(good),
        errors=dict(errors), p50_ms=pct(good, 0.50) * 1e3, p90_ms=pct(good, 0.90) * 1e3,
        p99_ms=pct(good, 0.99) * 1e3, max_ms=max(good, default=math.nan) * 1e3,
        decisions_per_s=len(good) / wall,
        server_cpu_ms_per_1000=run.server / max(1, len(good)) * 1e6,
        server_sys_share=run.server_sys / run.server if run.server else math.nan,
        server_cores=run.server / wall, bench_cores=run.bench / wall, others_cores=run.others / wall,
        softirq_cores=run.softirq / wall, others_before=quiet,
        late_p99_ms=pct(late, 0.99) * 1e3 if late else math.nan, dropped=dropped,
        over_5ms=len(slow), over_5ms_in_gc=sum(1 for s in slow if overlaps(s, pauses)),
        gc_full=sum(1 for g, _, _ in pauses if g == 2),
        gc_longest_ms=max((took for _, _, took in pauses), default=0.0) * 1e3,
        over_5ms_in_bench_gc=sum(1 for s in slow if overlaps(s, ours)),
        slow=[round(s.started - run.t0, 3) for s in slow[:SLOW_KEPT]],
    )


async def open_loop(plan: Plan, rate: float, seconds: float, poisson: bool, rng: random.Random,
                    timeout: float, max_in_flight: int, server_pid: int) -> Measured:
    """Attempts start on schedule whether or not earlier ones have been answered."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Sample]] = set()
    samples: list[Sample] = []
    late: list[float] = []
    dropped = 0

    def collect(task: asyncio.Task[Sample]) -> None:
        tasks.discard(task)
        samples.append(task.result())

    with Window(server_pid) as run:
        due = 0.0
        while True:
            due += rng.expovariate(rate) if poisson else 1 / rate
            if due >= seconds:
                break
            wait = due - (time.perf_counter() - run.t0)
            if wait > 0:
                await asyncio.sleep(wait)
            late.append(max(0.0, time.perf_counter() - run.t0 - due))
            if len(tasks) >= max_in_flight:
                dropped += 1
                continue
            task = loop.create_task(one_attempt(plan.port, *plan.next(), timeout))
            tasks.add(task)
            task.add_done_callback(collect)
        if tasks:
            await asyncio.wait(set(tasks), timeout=timeout + 1)
    return Measured(samples, run, late, dropped)


async def closed_loop(plan: Plan, connections: int, seconds: float, timeout: float,
                      server_pid: int) -> Measured:
    """`connections` callers, each starting its next attempt as soon as the last one ended."""
    samples: list[Sample] = []

    async def caller(deadline: float) -> None:
        while time.perf_counter() < deadline:
            samples.append(await one_attempt(plan.port, *plan.next(), timeout))

    with Window(server_pid) as run:
        await asyncio.gather(*(caller(run.t0 + seconds) for _ in range(connections)))
    return Measured(samples, run)


async def warm_up(plan: Plan, count: int, timeout: float) -> int:
    """Untimed: the server's first connections create its thread pool and database connections."""
    samples = [await one_attempt(plan.port, *plan.next(), timeout) for _ in range(count)]
    return sum(1 for s in samples if s.error)


# --- micro-benchmarks (no sockets) ----------------------------------------------------------------

def calls_per_second(fn: Callable[[Any], object], items: Sequence[Any], seconds: float) -> float:
    """How many fn(item) calls a second, cycling through `items` for about `seconds`."""
    done, count, start = 0, len(items), time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for index in range(done, done + 100):
            fn(items[index % count])
        done += 100
    return done / elapsed


def micro(config: Config, service: CallStateService, attempts: list[Attempt], seconds: float) -> dict[str, float]:
    """Calls per second of each piece of the answer, to show where the time goes."""
    read = [(a.tenant, a.user, service.routing(a.tenant, a.user), CallFacts.parse(*a.args[2:]))
            for a in attempts]
    first = config.tenants[0], config.tenants[0].users[0]
    last = config.tenants[-1], config.tenants[-1].users[-1]
    outside = [r for r in read if r[2].immediate.startswith("+") and config.find_number(r[2].immediate) is None]
    rates = {
        "decide(), the attempts' mix": calls_per_second(lambda r: decide(config, r[0], r[1], r[2], r[3]), read, seconds),
        "decide(), first user of first tenant": calls_per_second(
            lambda _: decide(config, first[0].id, first[1].id), [None], seconds),
        "decide(), last user of last tenant": calls_per_second(
            lambda _: decide(config, last[0].id, last[1].id), [None], seconds),
        "CallStateService.call_state()": calls_per_second(lambda a: service.call_state(a.tenant, a.user),
                                                           attempts, seconds),
    }
    if outside:
        rates["decide(), users forwarding to an outside number"] = calls_per_second(
            lambda r: decide(config, r[0], r[1], r[2], r[3]), outside, seconds)
    rates.update(asyncio.run(micro_async(config, service, read, seconds)))
    return rates


async def micro_async(config: Config, service: CallStateService, read: list[Any], seconds: float) -> dict[str, float]:
    """The thread hop alone, and the server's whole decision path (find + hop + read + decide)."""
    app = AgiApplication(config, service, key=BENCH_KEY)

    async def rate(make: Callable[[Any], Any]) -> float:
        done, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            await make(read[done % len(read)])
            done += 1
        return done / elapsed

    return {
        "asyncio.to_thread() of a no-op": await rate(lambda _: asyncio.to_thread(int)),
        "AgiApplication.decide() (find, thread, call_state(), decide())": await rate(
            lambda r: app.decide(r[0], r[1], r[3])),
    }


# --- reporting --------------------------------------------------------------------------------------

def fmt(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:,.{digits}f}"


def table(head: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def latency_table(rows: list[RunResult]) -> str:
    head = ("mode", "load", "attempts", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms", "decisions/s",
            "start late p99 ms")
    return table(head, [[r.mode, r.load, f"{r.attempts:,}", ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "0",
                         fmt(r.p50_ms, 2), fmt(r.p90_ms, 2), fmt(r.p99_ms, 2), fmt(r.max_ms),
                         fmt(r.decisions_per_s, 0), fmt(r.late_p99_ms, 2)] for r in rows])


def cpu_table(rows: list[RunResult]) -> str:
    head = ("mode", "load", "server CPU ms per 1,000", "in kernel", "server cores", "bench cores",
            "others' cores", "answers > 5 ms", "… in a server GC", "… in a bench GC", "server full GCs",
            "server's longest GC ms")
    return table(head, [[r.mode, r.load, fmt(r.server_cpu_ms_per_1000, 0), f"{r.server_sys_share:.0%}",
                         f"{r.server_cores:.2f}", f"{r.bench_cores:.2f}", f"{r.others_cores:.2f}",
                         f"{r.over_5ms:,}", f"{r.over_5ms_in_gc:,}", f"{r.over_5ms_in_bench_gc:,}", str(r.gc_full),
                         fmt(r.gc_longest_ms)]
                        for r in rows])


def micro_table(rates: dict[str, float]) -> str:
    lines = ["| what | calls/s | µs per call |", "|---|---:|---:|"]
    lines += [f"| {name} | {rate:,.0f} | {1e6 / rate:,.1f} |" for name, rate in rates.items()]
    return "\n".join(lines)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return (f"{os.cpu_count()} × {model}, Linux {pyplatform.release()}, "
            f"{pyplatform.python_implementation()} {pyplatform.python_version()}")


# --- main ---------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring and bench/README.md for details.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--modes", default="micro,open,ping,closed",
                        help="which parts to run (micro, open, ping, closed); always in this order")
    parser.add_argument("--tenants", type=int, default=10, help="tenants on the platform")
    parser.add_argument("--users", type=int, default=1000, help="users per tenant")
    parser.add_argument("--rate", default="100,500,1000", help="open loop: attempts per second, one run each")
    parser.add_argument("--seconds", type=float, default=30.0, help="open loop: length of each run")
    parser.add_argument("--arrivals", choices=("poisson", "fixed"), default="poisson",
                        help="open loop: exponential gaps (calls arriving independently) or even spacing")
    parser.add_argument("--concurrency", default="1,8,32", help="closed loop: connections, one run each")
    parser.add_argument("--closed-seconds", type=float, default=10.0, help="closed loop: length of each run")
    parser.add_argument("--micro-seconds", type=float, default=2.0, help="micro: seconds per measurement")
    parser.add_argument("--pool", type=int, default=5000, help="distinct prepared attempts, cycled")
    parser.add_argument("--warmup", type=int, default=300, help="untimed attempts before the runs")
    parser.add_argument("--attempt-timeout", type=float, default=5.0, help="s before an attempt is an error")
    parser.add_argument("--max-in-flight", type=int, default=1000,
                        help="open loop: attempts open at once before new ones are dropped (counted)")
    parser.add_argument("--server-log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"),
                        help="the server's logging (vipbx serve logs every routing answer at INFO)")
    parser.add_argument("--wait-quiet", type=float, default=120.0,
                        help="before each run, wait up to this many s for other processes to calm down (0: never)")
    parser.add_argument("--quiet-cores", type=float, default=0.2, help="... to under this many cores")
    parser.add_argument("--no-server-gc-freeze", dest="server_gc_freeze", action="store_false",
                        help="experiment: leave out the gc.freeze() that vipbx serve does after loading")
    parser.add_argument("--seed", type=int, default=1, help="random seed (users, states, arrivals)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server log, database)")
    args = parser.parse_args()
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(args.modes) - {"micro", "open", "ping", "closed"}:
        parser.error("--modes takes micro, open, ping and closed")
    args.rate = [float(r) for r in args.rate.split(",")]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    return args


def budget(args: argparse.Namespace) -> float:
    """An upper bound of the whole run's seconds: the server child's lifetime."""
    wait = args.wait_quiet + 6
    runs = len(args.rate) * (args.seconds + args.attempt_timeout + wait) if "open" in args.modes else 0
    runs += (args.seconds + args.attempt_timeout + wait) if "ping" in args.modes else 0
    runs += len(args.concurrency) * (args.closed_seconds + args.attempt_timeout + wait) if "closed" in args.modes else 0
    return float(600 + runs + args.warmup * args.attempt_timeout)


async def load_runs(args: argparse.Namespace, plan: Plan, server: ServerProcess,
                    rng: random.Random) -> list[RunResult]:
    failed = await warm_up(plan, args.warmup, args.attempt_timeout)
    log(f"warm-up: {args.warmup} attempts, {failed} errors")
    runs: list[tuple[str, str, Callable[[], Awaitable[Measured]]]] = []
    kind = "Poisson" if args.arrivals == "poisson" else "fixed"
    if "open" in args.modes:
        runs += [("open", f"{rate:g}/s {kind}", partial(
            open_loop, plan, rate, args.seconds, args.arrivals == "poisson", rng, args.attempt_timeout,
            args.max_in_flight, server.pid)) for rate in args.rate]
    if "ping" in args.modes:
        runs += [("ping", f"{args.rate[0]:g}/s {kind}", partial(
            open_loop, Plan([PING], plan.port), args.rate[0], args.seconds, args.arrivals == "poisson", rng,
            args.attempt_timeout, args.max_in_flight, server.pid))]
    if "closed" in args.modes:
        runs += [("closed", f"{n} conn", partial(closed_loop, plan, n, args.closed_seconds, args.attempt_timeout,
                                                 server.pid)) for n in args.concurrency]
    rows: list[RunResult] = []
    for mode, load, measure in runs:
        quiet = await asyncio.to_thread(wait_quiet, server.pid, args.wait_quiet, args.quiet_cores)
        log(f"{mode}, {load}: {args.closed_seconds if mode == 'closed' else args.seconds:g} s")
        rows.append(summarize(mode, load, await measure(), server, quiet))
        log_row(rows[-1])
    return rows


def log_row(r: RunResult) -> None:
    log(f"  {r.ok:,} ok, errors {r.errors or 0}; p50 {fmt(r.p50_ms, 2)} p99 {fmt(r.p99_ms, 2)} "
        f"max {fmt(r.max_ms)} ms; {fmt(r.decisions_per_s, 0)}/s; server CPU {fmt(r.server_cpu_ms_per_1000, 0)} "
        f"ms per 1,000; others {r.others_before:.2f} → {r.others_cores:.2f} cores; {r.over_5ms} over 5 ms ({r.over_5ms_in_gc} in a GC)")


def on_term(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        return serve_child(sys.argv[2:])
    args = parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vipbx-bench-agi-"))
    server: ServerProcess | None = None
    results: dict[str, Any] = {"machine": machine(), "args": {k: v for k, v in vars(args).items() if k != "json"}}
    signal.signal(signal.SIGTERM, on_term)
    try:
        started = time.perf_counter()
        config = build_config(work / "yaml", args.tenants, args.users)
        log(f"{machine()}; {sum(len(t.users) for t in config.tenants):,} users in "
            f"{len(config.tenants)} tenants ({time.perf_counter() - started:.1f} s)")
        with CallStateService(work / "state.sqlite3", config) as service:
            started = time.perf_counter()
            results["seeded"] = dict(seed_state(service, config, rng))
            log(f"call state seeded in {time.perf_counter() - started:.1f} s: {results['seeded']}")
            attempts = make_attempts(config, service, rng, args.pool)
            actions = Counter(a.expected[0].split(b'"')[1].split(b",")[0].decode() for a in attempts)
            results["answers"] = dict(actions)
            log(f"{len(attempts)} prepared attempts; answers: {dict(actions)}")
            if "micro" in args.modes:
                wait_quiet(0, args.wait_quiet, args.quiet_cores)  # no server yet
                log("micro-benchmarks")
                results["micro"] = micro(config, service, attempts, args.micro_seconds)
                print(micro_table(results["micro"]) + "\n", flush=True)
        if {"open", "ping", "closed"} & set(args.modes):
            server = ServerProcess(work / "yaml", work / "state.sqlite3", work / "server.log",
                                   args.server_log_level, budget(args), args.server_gc_freeze)
            server.start()
            log(f"FastAGI server pid {server.pid} on {SERVER_HOST}:{server.port}, RSS {rss_mb(server.pid):.0f} MB")
            # The generator holds the configuration too: out of its collector's sight, so that its
            # own full collections (~30 ms with 10,000 users) do not show up as slow answers.
            gc.collect()
            gc.freeze()
            record_gc_pauses(BENCH_PAUSES.append)
            rows = asyncio.run(load_runs(args, Plan(attempts, server.port), server, rng))
            results["runs"] = [asdict(r) for r in rows]
            results["server_rss_mb"] = rss_mb(server.pid)
            print(latency_table(rows) + "\n\n" + cpu_table(rows), flush=True)
            print(f"\nserver RSS after the runs: {results['server_rss_mb']:.0f} MB; "
                  f"answers over 5 ms: {sum(r.over_5ms for r in rows)}", flush=True)
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        return 1
    finally:
        if server is not None:
            server.stop()
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmachine: {results['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
