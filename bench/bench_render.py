"""Validate and render a synthetic platform of N tenants × 1,000 users: time, peak memory, growth.

    python3 bench/bench_render.py                         # 10, 25, 50 and 100 tenants
    python3 bench/bench_render.py --sizes 10,100 --repeat 3

For every size, `make_tenants.py` writes the YAML into a temporary folder, then each phase runs
in a fresh Python process, so that each peak is that phase's own:

  validate   load_config(files): YAML → validated Config
  render     render_config(config, secrets): Config → the text of every Asterisk file. The Config
             comes from the validate phase (pickled; unpickling is not timed, but the Config is
             in memory during the render, so it counts in the peak, as it would in real use).
  vipbx      `vipbx render FILES --out DIR`, the real command: both halves and writing the files.

Peak MB is `ru_maxrss` at the end of the phase minus `ru_maxrss` after the imports. Large inputs
are parsed by worker processes (see `yamlsource.load_all`); "workers MB" is the peak of the
largest of them (its RSS includes the pages it shares with its parent). Device secrets exist
before the render phases (created once, untimed): that is the steady state of a deploy.

Growth: the time per user at the largest size divided by that at the smallest; fixed costs
(imports are excluded, but not starting worker processes or compiling templates) make small
sizes slower per user, so a linear phase gives at most 1, a superlinear one more. The command
exits 1 when a ratio exceeds --max-growth. Every child process has a time limit.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("validate", "render", "vipbx")
CHILD_TIMEOUT = 900  # seconds; the 100 × 1,000 phases take well under a minute


# ---------------------------------------------------------------- child processes


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _yaml_files(folder: Path) -> list[str]:
    tenants = sorted(str(p) for p in folder.glob("t*.yaml"))
    return [str(folder / "platform.yaml"), *tenants]


def _child(phase: str, folder: Path, home: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    import cli.main
    from asterisk_conf.render import render_config
    from asterisk_conf.validate import load_config
    from base.paths import Paths
    from base.secrets import SecretStore

    files = _yaml_files(folder)
    secrets = SecretStore(home / "secrets.json")
    pickled = home / "config.pickle"
    result: dict[str, float] = {}
    if phase == "validate":
        base = _rss_mb()
        start = time.perf_counter()
        config = load_config(files)
        result["seconds"] = time.perf_counter() - start
        result["peak_mb"] = _rss_mb() - base
        result["workers_mb"] = _rss_mb(resource.RUSAGE_CHILDREN)
        result["users"] = sum(len(t.users) for t in config.tenants)
        # For the next phases, untimed: the Config, and every device's secret.
        pickled.write_bytes(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))
        secrets.ensure([f"device:{d.id}" for t in config.tenants for u in t.users for d in u.devices])
    elif phase == "render":
        base = _rss_mb()
        config = pickle.loads(pickled.read_bytes())
        start = time.perf_counter()
        rendered = render_config(config, secrets)
        result["seconds"] = time.perf_counter() - start
        result["peak_mb"] = _rss_mb() - base
        result["output_mb"] = sum(len(text.encode("utf-8")) for text in rendered.values()) / 1e6
    elif phase == "vipbx":
        out = home / "out"
        # Every file parsed, as the first render of a home: the parse cache of an earlier run
        # would leave only the checks to time.
        shutil.rmtree(Paths(home).yaml_cache, ignore_errors=True)
        base = _rss_mb()
        start = time.perf_counter()
        cli.main.main(["--home", str(home), "render", *files, "--out", str(out)],
                      standalone_mode=False)
        result["seconds"] = time.perf_counter() - start
        result["peak_mb"] = _rss_mb() - base
        result["workers_mb"] = _rss_mb(resource.RUSAGE_CHILDREN)
        result["output_mb"] = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    return result


def _run_child(phase: str, folder: Path, home: Path) -> dict[str, float]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", phase, str(folder), str(home)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the benchmark


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    load = ", load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (f"{cores} cores{mem}, Python {platform.python_version()} "
            f"({platform.python_implementation()}){load}")


def bench(sizes: list[int], users: int, repeat: int, work: Path) -> list[dict[str, float]]:
    sys.path.insert(0, str(HERE))
    from make_tenants import write

    rows = []
    for tenants in sizes:
        folder = work / f"yaml-{tenants}x{users}"
        home = work / f"home-{tenants}x{users}"
        home.mkdir(parents=True, exist_ok=True)
        write(tenants, users, folder)
        row: dict[str, float] = {"tenants": tenants, "yaml_mb": sum(
            p.stat().st_size for p in folder.iterdir()) / 1e6}
        for phase in PHASES:
            # Best time of `repeat` runs (other load on the machine only ever adds time);
            # the peak of the same run.
            runs = [_run_child(phase, folder, home) for _ in range(repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            row.update({f"{phase}_{key}": value for key, value in best.items()})
        rows.append(row)
        print(f"  {tenants} × {users}: validate {row['validate_seconds']:.2f} s, render "
              f"{row['render_seconds']:.2f} s, vipbx render {row['vipbx_seconds']:.2f} s, "
              f"{row['vipbx_peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, float]]) -> str:
    head = ("| users | YAML MB | validate s | validate MB | workers MB | render s | render MB "
            "| vipbx render s | vipbx render MB | output MB |")
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {int(r['validate_users']):,} | {r['yaml_mb']:.1f} | {r['validate_seconds']:.2f} "
            f"| {r['validate_peak_mb']:.0f} | {r['validate_workers_mb']:.0f} "
            f"| {r['render_seconds']:.2f} | {r['render_peak_mb']:.0f} "
            f"| {r['vipbx_seconds']:.2f} | {r['vipbx_peak_mb']:.0f} | {r['render_output_mb']:.1f} |"
        )
    return "\n".join(lines)


def growth(rows: list[dict[str, float]]) -> dict[str, float]:
    small, large = rows[0], rows[-1]
    ratios = {}
    for phase in PHASES:
        per_user = [r[f"{phase}_seconds"] / r["validate_users"] for r in (small, large)]
        ratios[f"{phase} s/user"] = per_user[1] / per_user[0]
    for phase in PHASES:
        per_user = [r[f"{phase}_peak_mb"] / r["validate_users"] for r in (small, large)]
        ratios[f"{phase} MB/user"] = per_user[1] / per_user[0]
    return ratios


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,25,50,100", help="tenant counts (default: %(default)s)")
    parser.add_argument("--users", type=int, default=1000, help="users per tenant (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per phase; the fastest counts")
    parser.add_argument("--max-growth", type=float, default=1.25,
                        help="largest allowed ratio of time per user, largest/smallest size")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="vipbx-bench-") as tmp:
        rows = bench(sizes, args.users, max(1, args.repeat), Path(tmp))
    print(table(rows))
    ratios = growth(rows) if len(rows) > 1 else {}
    if ratios:
        print(f"\ngrowth from {sizes[0]} to {sizes[-1]} tenants (per user, largest/smallest; "
              "1.0 = linear):")
        for name, value in ratios.items():
            print(f"  {name}: {value:.2f}")
    largest = rows[-1]
    print(f"\nlargest size: vipbx render {largest['vipbx_seconds']:.2f} s (aim < 10 s), "
          f"{largest['vipbx_peak_mb']:.0f} MB peak (aim < 500 MB)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "growth": ratios},
                                        indent=1))
    superlinear = [n for n, v in ratios.items() if n.endswith("s/user") and v > args.max_growth]
    if superlinear:
        print(f"NOT LINEAR: {', '.join(superlinear)} grew more than {args.max_growth}x per user")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
