"""Sampling profile of `vipbx serve` during a run: `py-spy record` attached to its pid, written as
a speedscope file (open it at speedscope.app or in any speedscope viewer; it is a flame graph per
thread), and a text summary of the functions that were on the CPU most.

py-spy (PyPI `py-spy`) must be installed beside the Python that runs the bench. It samples
`--rate` times a second without pausing the process (`--nonblocking`: a paused event loop would
add to the latencies being measured; the price is an occasional torn stack). It is stopped with
SIGINT (it then writes its file) by its pid, killed if it has not ended 30 s later, and never
outlives `--duration` anyway.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out: Path, longest_s: float, rate: int = 100) -> None:
        self.out = out
        self.log = out.with_name(out.name.split(".")[0] + ".log")
        binary = py_spy()
        if binary is None:
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "record", "--pid", str(pid), "--output", str(out), "--format", "speedscope",
                 "--rate", str(rate), "--duration", str(int(longest_s)), "--nonblocking"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Stop recording (the file is written on the way out); safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def summary(speedscope: Path, top: int = 30) -> str:
    """Functions by samples on top of the stack (self) and anywhere in it (total), all threads."""
    data = json.loads(speedscope.read_text())
    frames = data["shared"]["frames"]
    own: Counter[int] = Counter()
    by_file: Counter[str] = Counter()
    anywhere: Counter[int] = Counter()
    total = 0.0
    samples = 0
    for profile in data["profiles"]:
        samples += len(profile["samples"])
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            if stack:
                own[stack[-1]] += weight
                by_file[frames[stack[-1]].get("file", "?")] += weight
            for index in set(stack):
                anywhere[index] += weight

    def name(index: int) -> str:
        frame = frames[index]
        return f"{frame['name']} ({frame.get('file', '?')}:{frame.get('line', '?')})"

    if not total:
        return "no samples (was the process idle, or py-spy refused? see its .log)\n"
    unit = data["profiles"][0].get("unit", "none")
    lines = [f"{samples} samples ({total:.2f} {unit}) on the CPU over {len(data['profiles'])} threads", "",
             f"top {top} by self samples:"]
    lines += [f"  {count / total:6.1%}  {name(i)}" for i, count in own.most_common(top)]
    lines += ["", f"top {top} by total samples (the function or anything it called):"]
    lines += [f"  {count / total:6.1%}  {name(i)}" for i, count in anywhere.most_common(top)]
    lines += ["", f"top {top} source files by self samples:"]
    lines += [f"  {count / total:6.1%}  {file}" for file, count in by_file.most_common(top)]
    return "\n".join(lines) + "\n"
