"""The home page under load: N logged-in users loading pages at once.

    python bench/bench_web.py                                 # 200 users, /mailbox and /contacts
    python bench/bench_web.py --users 200 --rounds 5 --pages /mailbox,/contacts --tenants 10

Figures and how to read them: bench/README.md ("Home page").

Set-up, in a temporary folder: a platform from `make_tenants.py` (--tenants × 1,000 users), web on
127.0.0.1 (plain HTTP); for each of the --users users (spread over the tenants) a password hashed
as the page stores it, a session opened through the call-state service (as a login does; the
argon2 cost of the logins is measured separately, `login` row), and --messages voicemail
messages in their mailbox written through vmstore (a new/old mix). The server is
`bench/web_server.py` in a child process (its CPU is its own, as in production where the clients
are browsers elsewhere).

Load: all users at once, each in its own connection, load the --pages one after the other, --rounds
times (a closed loop: the next request when the last answer is in). Latency is from sending the
request to the whole body read; a status other than 200 is an error. Reported: p50/p90/p99/max
per page, requests per second, and the server's CPU seconds (utime + stime from /proc) per 1,000
requests and as cores in use. Everything stops by itself: each request has a timeout, the server
exits when this process goes, and it is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asterisk_conf.validate import load_config  # noqa: E402
from bench.make_tenants import write  # noqa: E402
from callstate import CallStateService  # noqa: E402
from vmstore import VoicemailStore  # noqa: E402
from vmstore.envelope import Envelope  # noqa: E402
from web.auth.passwords import hash_password, verify_password  # noqa: E402
from web.auth.sessions import SESSION_COOKIE  # noqa: E402

HOST = "127.0.0.1"
PASSWORD = "bench password 2026"


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def seed(folder: Path, tenants: int, users: int, messages: int, port: int) -> tuple[list[str], list[str]]:
    """The YAML files and one session token per benchmarked user."""
    files = write(tenants, 1000, folder / "yaml")
    platform = files[0]
    platform.write_text(platform.read_text() + f"  web: {{bind: {HOST}, port: {port}, secure_cookies: false}}\n")
    config = load_config([str(f) for f in files])
    home = folder / "home"
    home.mkdir()
    store = VoicemailStore(home / "spool")
    sample = folder / "sample.wav"
    with wave.open(str(sample), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 5)
    hashed = hash_password(PASSWORD)
    tokens = []
    with CallStateService(home / "state.sqlite3", config) as state:
        for i in range(users):
            tenant = config.tenants[i % tenants]
            user = tenant.users[i // tenants]
            state.web_accounts.set_password_hash(tenant.id, user.id, hashed, actor="bench", source="bench")
            opened = state.web_accounts.open_session(tenant.id, user.id, address="127.0.0.1",
                                                     idle=timedelta(hours=1), max_age=timedelta(hours=2),
                                                     actor="bench")
            tokens.append(opened.token)
            for m in range(messages):
                audio = folder / "next.wav"
                shutil.copyfile(sample, audio)
                added = store.add(tenant.id, user.mailbox, audio, Envelope(
                    caller_number=f"+35850{m:07d}", caller_name=f"Caller {m}", called_number=user.number,
                    orig_time=datetime.now(UTC) - timedelta(hours=m), duration=5, msg_id=f"bench-{i}-{m}"))
                if m % 2:
                    store.mark_old(added)  # half of them heard
    return [str(f) for f in files], tokens


async def load(port: int, tokens: list[str], pages: list[str], rounds: int, timeout: float
               ) -> tuple[dict[str, list[float]], int]:
    latencies: dict[str, list[float]] = {page: [] for page in pages}
    errors = 0
    start = asyncio.Event()

    async def user(token: str) -> None:
        nonlocal errors
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", cookies={SESSION_COOKIE: token},
                                     timeout=timeout, limits=limits) as client:
            await client.get("/login")  # connected before the start
            await start.wait()
            for _ in range(rounds):
                for page in pages:
                    began = time.perf_counter()
                    try:
                        response = await client.get(page)
                        ok = response.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        latencies[page].append(time.perf_counter() - began)
                    else:
                        errors += 1

    tasks = [asyncio.create_task(user(token)) for token in tokens]
    await asyncio.sleep(1.0)
    start.set()
    await asyncio.gather(*tasks)
    return latencies, errors


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", default="/mailbox,/contacts")
    parser.add_argument("--port", type=int, default=18590)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    pages = args.pages.split(",")
    with tempfile.TemporaryDirectory(prefix="vipbx-bench-web-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        files, tokens = seed(folder, args.tenants, args.users, args.messages, args.port)
        print(f"seeded {args.users} users with {args.messages} messages each in {time.perf_counter() - began:.1f} s")
        hashed = hash_password(PASSWORD)
        t0 = time.perf_counter()
        for _ in range(10):
            verify_password(hashed, PASSWORD)
        print(f"login: one argon2 verification takes {(time.perf_counter() - t0) / 10 * 1000:.0f} ms of one core")
        server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("web_server.py")),
                                   str(folder / "home"), *files], stdin=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://{HOST}:{args.port}/login", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the web server did not start")
                time.sleep(0.2)
            cpu_before, wall_before = cpu_seconds(server.pid), time.perf_counter()
            latencies, errors = asyncio.run(load(args.port, tokens, pages, args.rounds, args.timeout))
            wall = time.perf_counter() - wall_before - 1.0  # less the pause before the start
            cpu = cpu_seconds(server.pid) - cpu_before
            total = sum(len(v) for v in latencies.values())
            print(f"{args.users} users × {args.rounds} rounds of {pages}: {total} answers, {errors} errors, "
                  f"{total / wall:.0f} requests/s, server CPU {cpu:.1f} s = {cpu / wall:.2f} cores, "
                  f"{cpu / max(total, 1) * 1000:.2f} s per 1,000 requests, server RSS {rss_mib(server.pid):.0f} MiB")
            print("| page | answers | p50 ms | p90 ms | p99 ms | max ms | mean ms |")
            print("| --- | --- | --- | --- | --- | --- | --- |")
            for page, values in latencies.items():
                ms = [v * 1000 for v in values]
                print(f"| {page} | {len(ms)} | {percentile(ms, 50):.0f} | {percentile(ms, 90):.0f} | "
                      f"{percentile(ms, 99):.0f} | {max(ms):.0f} | {statistics.fmean(ms):.0f} |")
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    server.kill()


if __name__ == "__main__":
    main()
