"""The IVRs when the machine is full, in one run on one stack (ivr_rig.py):

  1. access calls, 200 then 400 at once: the vipbx voicemail IVR beside Asterisk's VoiceMailMain
     on the same mailboxes (the calls of bench_ivr.py: listen to the menu, press a key, hear the
     menu again, --keys times);
  2. deposits, 50 at once: diverted carrier calls that leave a message, to the vipbx deposit IVR
     and to Asterisk's VoiceMail() on the same users (ivr_deposit.py);
  3. activity-change calls, 100 at once (ivr_activity.py).

    python3 bench/bench_ivr_load.py --json load.json                    # the sizes above
    python3 bench/bench_ivr_load.py --json load.json --profile          # + py-spy of vipbx serve at 400
    python3 bench/bench_ivr_load.py --access 5,10 --deposits 5 --activity 5 --keys 2   # a quick look
    python3 bench/bench_ivr_load.py --report load.json                  # the tables again

Figures and how to read them: bench/README.md ("The IVRs under full load"). Needs root. Every
run is cut after --run-timeout s (its calls hung up), every wait has a timeout, and everything
started (two Asterisks, `vipbx serve`, py-spy) is stopped by its pid at the end, also on failure
or Ctrl-C. All traffic stays on 127.0.0.60-63.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from bench_ivr import log_access_row, run
from ivr_activity import run_activity
from ivr_deposit import run_deposits
from ivr_profile import Profiler, py_spy, summary
from ivr_rig import (
    Stack,
    before_run,
    connected,
    fmt,
    idle_rates,
    log,
    machine,
    with_stack,
)


def ramp(args: argparse.Namespace, n: int) -> float:
    return min(args.ramp_per_call * n, args.ramp_max)


async def load(args: argparse.Namespace, stack: Stack) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))

    think = (args.think_min, args.think_max)
    async with connected(stack, tap=False) as (phone, sniffer):
        idle = await idle_rates(stack, args.idle)
        for n in args.access:
            for system in args.access_systems:
                log(f"access, {system}: {n} calls × {args.keys} keys")
                await before_run(stack, args.settle, args.wait_quiet, args.quiet_cores)
                profiler = None
                if args.profile and system == "vipbx" and n == args.profile_at:
                    assert stack.app_pid is not None
                    profiler = Profiler(stack.app_pid, args.profile_out.with_suffix(".speedscope.json"),
                                        args.run_timeout + 60)
                    log(f"  py-spy pid {profiler.proc.pid} recording vipbx serve (pid {stack.app_pid})")
                try:
                    row = await run(stack, phone, sniffer, system, n, args.keys, think, ramp(args, n),
                                    args.run_timeout, idle)
                finally:
                    if profiler is not None:
                        profiler.stop()
                row["scenario"] = "access"
                log_access_row(row)
                keep(row)
                if profiler is not None and profiler.out.exists():
                    text = args.profile_out.with_suffix(".txt")
                    text.write_text(summary(profiler.out))
                    log(f"  profile: {profiler.out}, summary {text}")
        for system in args.deposit_systems if args.deposits else []:
            log(f"deposits, {system}: {args.deposits} calls, {args.speak:g} s of speech each")
            await before_run(stack, args.settle, args.wait_quiet, args.quiet_cores)
            row = await run_deposits(stack, phone, sniffer, system, args.deposits, args.speak,
                                     ramp(args, args.deposits), args.run_timeout)
            log_row(row)
            keep(row)
        if args.activity:
            log(f"activity: {args.activity} calls")
            await before_run(stack, args.settle, args.wait_quiet, args.quiet_cores)
            row = await run_activity(stack, phone, sniffer, args.activity, think, ramp(args, args.activity),
                                     args.run_timeout)
            log_row(row)
            keep(row)
    return rows


def log_row(row: dict[str, Any]) -> None:
    log(f"  {row['calls_ok']}/{row['n']} calls fine; p50 {fmt(row['p50_ms'])} ms, p99 {fmt(row['p99_ms'])} ms; "
        f"Asterisk + app CPU/call {ours(row) / row['n']:.3f} s")
    for error in row["errors"][:3]:
        log(f"  ! {error}")


# --- the tables ----------------------------------------------------------------------------------

def ours(row: dict[str, Any]) -> float:
    """CPU s of the PBX's Asterisk and `vipbx serve` (its idle share included) over the run."""
    return float(row["cpu_s"]["asterisk"] + row["cpu_s"]["app"])


def per_call_second(row: dict[str, Any]) -> float:
    return ours(row) / row["call_s"] if row["call_s"] else math.nan


def others(row: dict[str, Any]) -> str:
    return fmt(max(0.0, row["others_cpu_s"] / row["wall_s"]), 2)


def ratio(value: float, base: float | None) -> str:
    return fmt(value / base, 2) if base else "-"


NAMES = {"vipbx": "vipbx", "voicemailmain": "VoiceMailMain", "voicemail": "VoiceMail()"}


def access_table(rows: list[dict[str, Any]]) -> str:
    lines = [("| calls | IVR | keys timed | left out | p50 ms | p99 ms | max ms | failed calls "
             "| Asterisk + app CPU s per call-second | × VoiceMailMain | others' load, cores |"),
             "|---:|---|" + "---:|" * 9]
    base = {r["n"]: per_call_second(r) for r in rows if r["system"] == "voicemailmain"}
    for r in rows:
        lines.append("| " + " | ".join([
            str(r["n"]), NAMES[r["system"]], str(r["samples"]), str(r["unclean"]), fmt(r["p50_ms"], 1),
            fmt(r["p99_ms"], 1), fmt(r["max_ms"], 1), str(r["n"] - r["calls_ok"]), fmt(per_call_second(r), 4),
            ratio(per_call_second(r), base.get(r["n"])), others(r)]) + " |")
    return "\n".join(lines)


def deposit_table(rows: list[dict[str, Any]]) -> str:
    lines = [("| deposits | voicemail | failed calls | hang-up → message p50 ms | p99 ms | max ms "
             "| Asterisk + app CPU s per call | × VoiceMail() | others' load, cores |"),
             "|---:|---|" + "---:|" * 7]
    base = {r["n"]: ours(r) / r["n"] for r in rows if r["system"] == "voicemail"}
    for r in rows:
        lines.append("| " + " | ".join([
            str(r["n"]), NAMES[r["system"]], str(r["n"] - r["calls_ok"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
            fmt(r["max_ms"]), fmt(ours(r) / r["n"], 3), ratio(ours(r) / r["n"], base.get(r["n"])), others(r)]) + " |")
    return "\n".join(lines)


def activity_table(rows: list[dict[str, Any]]) -> str:
    lines = [("| calls | keys timed | left out | p50 ms | p99 ms | max ms | failed calls "
             "| Asterisk + app CPU s per call | others' load, cores |"),
             "|---:|" + "---:|" * 8]
    for r in rows:
        lines.append("| " + " | ".join([
            str(r["n"]), str(r["samples"]), str(r["unclean"]), fmt(r["p50_ms"], 1), fmt(r["p99_ms"], 1),
            fmt(r["max_ms"], 1), str(r["n"] - r["calls_ok"]), fmt(ours(r) / r["n"], 3), others(r)]) + " |")
    return "\n".join(lines)


def report(rows: list[dict[str, Any]]) -> None:
    for title, table, scenario in (("Access calls", access_table, "access"), ("Deposits", deposit_table, "deposit"),
                                   ("Activity-change calls", activity_table, "activity")):
        chosen = [r for r in rows if r.get("scenario") == scenario]
        if chosen:
            print(f"{title}\n\n{table(chosen)}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--access", default="200,400", help="simultaneous access calls (default: %(default)s)")
    parser.add_argument("--access-systems", default="vipbx,voicemailmain",
                        help="access IVRs, in order (default: %(default)s)")
    parser.add_argument("--keys", type=int, default=6, help="measured keys per access call (default: %(default)s)")
    parser.add_argument("--deposits", type=int, default=50, help="simultaneous deposits, 0: none (default: %(default)s)")
    parser.add_argument("--deposit-systems", default="vipbx,voicemail",
                        help="deposit IVRs, in order (default: %(default)s)")
    parser.add_argument("--speak", type=float, default=3.0, help="s of tone each deposit leaves (default: %(default)s)")
    parser.add_argument("--activity", type=int, default=100,
                        help="simultaneous activity-change calls, 0: none (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="py-spy record vipbx serve during one vipbx access run")
    parser.add_argument("--profile-at", type=int, help="... the run of this many calls (default: the largest)")
    parser.add_argument("--profile-out", type=Path, default=Path("ivr-load-profile"),
                        help="files PREFIX.speedscope.json, PREFIX.txt, PREFIX.log (default: %(default)s)")
    parser.add_argument("--idle", type=float, default=10.0, help="s of idle CPU measured before the runs")
    parser.add_argument("--users", type=int, help="bench tenant users (default: the most calls of any run)")
    parser.add_argument("--messages", type=int, default=2, help="new messages seeded in each mailbox")
    parser.add_argument("--think-min", type=float, default=0.1, help="s after the prompt's end before a key (min)")
    parser.add_argument("--think-max", type=float, default=0.6, help="... (max)")
    parser.add_argument("--ramp-per-call", type=float, default=0.05, help="s between call starts")
    parser.add_argument("--ramp-max", type=float, default=10.0, help="longest ramp, s")
    parser.add_argument("--settle", type=float, default=5.0, help="idle s between runs")
    parser.add_argument("--run-timeout", type=float, default=600.0, help="a run is cut after this many s")
    parser.add_argument("--wait-quiet", type=float, default=300.0,
                        help="before each run, wait up to this many s for other processes to calm down (0: never)")
    parser.add_argument("--quiet-cores", type=float, default=0.3, help="... to under this many cores")
    parser.add_argument("--in-process", action="store_true", help="run the vipbx service in this process")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, spool)")
    parser.add_argument("--json", type=Path, help="write the rows here as they come")
    parser.add_argument("--report", type=Path, help="only print the tables of an earlier --json file")
    args = parser.parse_args()
    if args.report:
        report(json.loads(args.report.read_text()))
        return 0
    args.access = [int(s) for s in args.access.split(",") if s.strip()]
    args.access_systems = [s.strip() for s in args.access_systems.split(",")]
    args.deposit_systems = [s.strip() for s in args.deposit_systems.split(",")]
    most = max([*args.access, args.deposits, args.activity, 1])
    args.users = args.users or most
    if most > args.users:
        parser.error("--users must be at least the most calls of any run")
    if args.profile:
        if args.in_process:
            parser.error("--profile records the `vipbx serve` child: not with --in-process")
        if py_spy() is None:
            parser.error("--profile needs py-spy (pip install py-spy)")
        args.profile_at = args.profile_at or max(args.access, default=0)
        if args.profile_at not in args.access or "vipbx" not in args.access_systems:
            parser.error("--profile-at must be one of the --access sizes, with vipbx among --access-systems")
    if os.geteuid() != 0:
        parser.error("needs root (Asterisk in a chroot, a raw packet socket)")

    stack_args = (args.users, args.messages, args.in_process, False, 0)
    rows = with_stack("vipbx-bench-ivr-load-", stack_args, args.keep, lambda stack: load(args, stack))
    if rows:
        print(f"machine: {machine()}\n")
        report(rows)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
