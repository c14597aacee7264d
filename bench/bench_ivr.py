"""Voicemail IVR under load: key press → next prompt latency, and CPU per call, for the vipbx
access IVR (ARI) beside Asterisk's own VoiceMailMain on the same mailboxes, in the same run.

    python3 bench/bench_ivr.py                          # N = 1, 50, 100 listeners, both IVRs
    python3 bench/bench_ivr.py --sizes 1,10 --keys 3    # a quick look
    python3 bench/bench_ivr.py --tap                    # also time the test phone's RTP tap
    python3 bench/bench_ivr.py --report rows.json       # the tables of an earlier --json run

Figures and how to read them: bench/README.md ("Voicemail IVR").

What it starts (the rig, ivr_rig.py; each stopped by its pid at the end, also on failure or Ctrl-C):
  * a PBX rendered from a bench tenant (`make_tenants.py`: 1 tenant × USERS users, each with a
    mailbox holding MESSAGES new messages) on 127.0.0.60: SIP 21060, ARI/HTTP 21088, AMI 21038,
    RTP 22000-23999 (1,000 even ports: one RTP+RTCP pair per call);
  * the test phone: devices on 127.0.0.61 (SIP 21160, ARI 21188), carrier on 127.0.0.62 (SIP
    21170), RTP 24000-27999 (2,000 pairs: per call the call's own stream and, with --tap, the
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
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ivr_rig import (
    ACCESS_NUMBER,
    VMM_NUMBER,
    CallResult,
    Outcome,
    Sample,
    Sniffer,
    Stack,
    before_run,
    connected,
    fmt,
    hang_up,
    idle_rates,
    log,
    machine,
    pbx_port,
    pct,
    run_calls,
    timed_key,
    wait_prompt_end,
    with_stack,
)

from base.model import User
from testphone import TestPhone
from testphone.driver import Call

# --- one run --------------------------------------------------------------------------------------

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
        for _ in range(keys):
            result.samples.append(await timed_key(call, stream, key, think))
    except Exception as exc:  # noqa: BLE001 - reported per call, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await hang_up(call)
        if call is not None:
            if answered:
                result.call_s = time.monotonic() - answered
            for sample in result.samples:
                delay_s = tap_delay(call, sample, clock_offset)
                if delay_s is not None:
                    result.tap_delays.append(delay_s)
        result.take_stream(sniffer, port)
    return result


async def run(stack: Stack, phone: TestPhone, sniffer: Sniffer, system: str, n: int, keys: int,
              think: tuple[float, float], ramp: float, timeout: float,
              idle_rate: dict[str, float]) -> dict[str, Any]:
    users = stack.users[:n]
    clock_offset = time.time() - asyncio.get_running_loop().time()
    outcome = await run_calls(stack, phone, sniffer, n, ramp, timeout, lambda i, delay: one_call(
        phone, sniffer, system, users[i], keys, think, delay, clock_offset))
    return access_row(system, n, keys, outcome, idle_rate)


def access_row(system: str, n: int, keys: int, outcome: Outcome, idle_rate: dict[str, float]) -> dict[str, Any]:
    results: list[CallResult] = outcome.results
    wall, cpu, started_wall = outcome.wall, outcome.cpu, outcome.started_wall
    stalls = [g * 1000 for r in results for g in r.stalls]
    samples = [s for r in results for s in r.samples]
    clean = [s.latency * 1000 for s in samples if s.quiet_before]
    from_begin = [(s.audio - s.key_begin) * 1000 for s in samples if s.quiet_before]
    taps = [d * 1000 for r in results for d in r.tap_delays]
    errors = [f"{r.user}: {r.error}" for r in results if r.error] + [f"{outcome.cut} calls cut at the run timeout"] * bool(outcome.cut)
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
        "sniffed_packets": outcome.sniffed,
        "machine_busy_s": outcome.busy, "others_cpu_s": outcome.others_cpu,
        "stalls": len(stalls), "stall_p99_ms": pct(stalls, 0.99), "stall_max_ms": max(stalls, default=0.0),
        # Per sample: latency ms, ms from the PBX's previous packet to the key, s into the run.
        "raw": [(round(s.latency * 1000, 2), round((s.key_begin - s.last_before) * 1000, 1),
                 round(s.key_end - started_wall, 3), s.marker) for s in samples],
        "markers": sum(r.markers for r in results), "errors": errors[:10], "error_count": len(errors),
    }
    return row


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
    rows: list[dict[str, Any]] = []
    async with connected(stack, args.tap) as (phone, sniffer):
        idle_rate = await idle_rates(stack, args.idle)
        for n in args.sizes:
            for system in args.systems:
                keys = args.keys_single if n == 1 else args.keys
                log(f"{system}: {n} listeners × {keys} keys")
                await before_run(stack, args.settle, args.wait_quiet, args.quiet_cores)
                row = await run(stack, phone, sniffer, system, n, keys, (args.think_min, args.think_max),
                                min(args.ramp_per_call * n, args.ramp_max), args.run_timeout, idle_rate)
                rows.append(row)
                log_access_row(row)
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))
    return rows


def log_access_row(row: dict[str, Any]) -> None:
    log(f"  p50 {fmt(row['p50_ms'])} ms, p99 {fmt(row['p99_ms'])} ms over {row['samples']} samples; "
        f"CPU/call Asterisk {row['cpu_per_call_s']['asterisk']:.3f} s, app "
        f"{row['cpu_per_call_s']['app']:.3f} s; {row['error_count']} errors")
    for error in row["errors"][:3]:
        log(f"  ! {error}")


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

    stack_args = (args.users, args.messages, args.in_process, args.tap, args.pbx_verbose)
    rows = with_stack("vipbx-bench-ivr-", stack_args, args.keep, lambda stack: bench(args, stack))
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
