"""A real Asterisk on a large rendered configuration: start-up, reload of a small change, memory.

    python3 bench/bench_reload.py                     # 10 and 100 tenants × 1,000 users
    python3 bench/bench_reload.py --sizes 100 --start-timeout 900

For every size, in a temporary home:
  1. `make_tenants.py` writes the tenants, with a platform.yaml that puts every listener on
     127.0.0.50 (SIP 19060, HTTP 19088, AMI 19038, AGI 19073, RTP 19100-19598) and the carrier
     on 127.0.0.51, so that nothing clashes with a running PBX or with the end-to-end tests.
  2. validate + render, staged as the current generation (`Generations`, as `vipbx deploy`).
  3. Asterisk starts on it (`AsteriskInstance.start`, which returns once it is fully booted):
     the time from the start command to fully booted, and Asterisk's resident memory.
  4. A small change: one user added to the first tenant (a device, an extension and a mailbox,
     so pjsip.conf, extensions.conf and voicemail.conf all change). It is validated, rendered and
     deployed with `asterisk_conf.deploy.deploy` and an AMI reloader like `vipbx deploy`'s, which
     also times each module's AMI `Reload` (res_pjsip.so, pbx_config.so, app_voicemail.so).
  5. Checks that the new device, extension and mailbox are live, counts ERROR lines in the log,
     and stops Asterisk by its pid (`AsteriskInstance.stop`), also when anything fails.

`--ascending-dialplan` (the "before" rows of bench/README.md): every render's extensions.conf is
rewritten with each context's extensions in ascending order, as the product wrote them before it
sorted them descending (asterisk_conf/dialplan_order.py): Asterisk keeps a context's extensions in
a sorted list and walks it from the start for every extension it adds, so ascending input costs
it quadratic time and descending linear.

Needs root (Asterisk runs in a chroot when the system has none; see asterisk_host/runtime.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from make_tenants import write

from asterisk_conf import dialplan_order
from asterisk_conf.deploy import Generations, deploy
from asterisk_conf.render import AMI_USER, render_config
from asterisk_conf.validate import load_config
from asterisk_host import AsteriskInstance, AsteriskRuntime
from asterisk_host.instance import AsteriskError
from base.ami import AmiSettings, ami_session
from base.paths import Paths
from base.secrets import SecretStore

PBX_IP = "127.0.0.50"
CARRIER_IP = "127.0.0.51"
PLATFORM = f"""platform:
  sip: {{bind: {PBX_IP}, port: 19060}}
  http: {{bind: {PBX_IP}, port: 19088}}
  ami: {{bind: {PBX_IP}, port: 19038}}
  agi: {{bind: {PBX_IP}, port: 19073}}
  rtp: {{start: 19100, end: 19598}}
  carrier: {{host: {CARRIER_IP}, port: 19061, match: [{CARRIER_IP}]}}
"""
NEW_USER = """      - id: bench-new
        name: Bench New User
        number: "+358499999999"
        extension: "99999"
        email: bench-new@t0.example
        pin: "7315937"
        language: fi
        devices: [{id: t000-bench-new}]
"""
RELOAD_TIMEOUT = 900  # seconds for one module's reload


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_and_render(files: list[str], secrets: SecretStore,
                    ascending: bool = False) -> tuple[dict[str, str], float]:
    start = time.perf_counter()
    rendered = render_config(load_config(files), secrets)
    seconds = time.perf_counter() - start
    if ascending:
        rendered["extensions.conf"] = ascending_dialplan(rendered["extensions.conf"])
    return rendered, seconds


def ascending_dialplan(text: str) -> str:
    """The product's extensions.conf with each context's extensions in ascending order instead."""
    blocks: list[str] = []
    out: list[str] = []
    for context in re.split(r"(?m)^(?=\[)", dialplan_order.descending(text)):
        lines = context.split("\n")
        head = [line for line in lines if not line.startswith(("exten =>", " same =>"))]
        chunks: list[list[str]] = []
        for line in lines:
            if line.startswith("exten =>"):
                chunks.append([line])
            elif line.startswith(" same =>") and chunks:
                chunks[-1].append(line)
        blocks = [line for chunk in reversed(chunks) for line in chunk]
        out.append("\n".join(head[:1] + blocks + head[1:]))
    return "".join(out)


def timed_reloader(settings: AmiSettings, times: dict[str, float]):  # type: ignore[no-untyped-def]
    """`vipbx deploy`'s AMI reloader (one session, one `Reload` per module), timing each."""

    async def reload(targets: list[str]) -> None:
        async with ami_session(settings, action_timeout=RELOAD_TIMEOUT) as ami:
            for target in targets:
                start = time.perf_counter()
                await ami.action("Reload", Module=target)
                times[target] = time.perf_counter() - start

    return reload


def run_size(runtime: AsteriskRuntime, tenants: int, users: int, work: Path,
             start_timeout: float, ascending: bool = False) -> dict[str, object]:
    folder, home = work / f"yaml-{tenants}", work / f"home-{tenants}"
    paths = write(tenants, users, folder)
    (folder / "platform.yaml").write_text(PLATFORM, encoding="utf-8")
    files = [str(p) for p in paths]
    secrets = SecretStore(home / "secrets.json")
    rendered, render_s = load_and_render(files, secrets, ascending)
    generations = Generations(Paths(home))
    generations.point(generations.current, generations.stage(rendered))
    row: dict[str, object] = {
        "tenants": tenants, "users": tenants * users, "render_s": render_s,
        "conf_mb": sum(len(t.encode()) for t in rendered.values()) / 1e6,
    }
    del rendered
    instance = AsteriskInstance(runtime, home / "pbx", generations.current, name="bench-pbx")
    start = time.perf_counter()
    try:
        pid = instance.start(timeout=start_timeout)  # on failure, start() stops what it started
    except AsteriskError as exc:
        row["failed"] = f"not fully booted after {start_timeout:.0f} s"
        print(f"  {tenants} × {users}: {row['failed']}\n{str(exc)[-600:]}", file=sys.stderr)
        return row
    try:
        row["boot_s"] = time.perf_counter() - start
        row["rss_booted_mb"] = rss_mb(pid)
        first = f"t000-u{0:05d}"
        if not re.search(rf"Endpoint:\s+{first}\b", instance.cli(f"pjsip show endpoint {first}")):
            raise SystemExit(f"endpoint {first} is not loaded:\n{instance.log_tail()}")

        # The small change, deployed as `vipbx deploy` does.
        with open(folder / "t000.yaml", "a", encoding="utf-8") as f:
            f.write(NEW_USER)
        changed, row["render_change_s"] = load_and_render(files, secrets, ascending)
        settings = AmiSettings(PBX_IP, 19038, AMI_USER, secrets.get("ami"))
        reloads: dict[str, float] = {}
        start = time.perf_counter()
        result = asyncio.run(deploy(Paths(home), changed, timed_reloader(settings, reloads)))
        row["deploy_s"] = time.perf_counter() - start
        row["changed"] = result.changed
        row["reload_s"] = reloads
        row["rss_reloaded_mb"] = rss_mb(pid)

        # Live: the new device, its extension and its mailbox.
        checks = {
            "pjsip show endpoint t000-bench-new": r"Endpoint:\s+t000-bench-new\b",
            "dialplan show 99999@vipbx-t-t000": r"'99999' =>",
            "voicemail show users for t000": r"\b358499999999\b",
        }
        for command, expected in checks.items():
            if not re.search(expected, instance.cli(command)):
                raise SystemExit(f"after the reload, `{command}` does not show {expected!r}")
        log = instance.log_path.read_text(encoding="utf-8", errors="replace")
        row["log_errors"] = len(re.findall(r"\bERROR\[", log))
    finally:
        instance.stop()
    return row


def table(rows: list[dict[str, object]]) -> str:
    head = ("| users | config MB | boot s | RSS booted MB | validate+render of the change s "
            "| deploy s | Reload res_pjsip.so s | Reload pbx_config.so s "
            "| Reload app_voicemail.so s | RSS after MB | ERROR lines |")
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['users']:,} | {r['conf_mb']:.1f} | {r['failed']} |")
            continue
        reload = r["reload_s"]
        assert isinstance(reload, dict)
        cells = [f"{r['users']:,}", f"{r['conf_mb']:.1f}", f"{r['boot_s']:.1f}",
                 f"{r['rss_booted_mb']:.0f}", f"{r['render_change_s']:.2f}", f"{r['deploy_s']:.2f}"]
        cells += [f"{reload[m]:.2f}" if m in reload else "-"
                  for m in ("res_pjsip.so", "pbx_config.so", "app_voicemail.so")]
        cells += [f"{r['rss_reloaded_mb']:.0f}", str(r["log_errors"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100", help="tenant counts (default: %(default)s)")
    parser.add_argument("--users", type=int, default=1000, help="users per tenant")
    parser.add_argument("--start-timeout", type=float, default=900,
                        help="seconds Asterisk may take to be fully booted (default: %(default)s)")
    parser.add_argument("--ascending-dialplan", action="store_true",
                        help="before: extensions.conf with each context in ascending order, as it was written "
                             "before dialplan_order")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    runtime = AsteriskRuntime.locate()
    print(f"Asterisk {runtime.version()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vipbx-bench-reload-") as tmp:
        for tenants in sorted(int(s) for s in args.sizes.split(",")):
            row = run_size(runtime, tenants, args.users, Path(tmp), args.start_timeout,
                           args.ascending_dialplan)
            if "failed" not in row:
                print(f"  {tenants} × {args.users}: booted in {row['boot_s']:.1f} s, "
                      f"reloads {row['reload_s']}", file=sys.stderr, flush=True)
            rows.append(row)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
