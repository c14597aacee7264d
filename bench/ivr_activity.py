"""The activity-change number under load: N carrier calls at once to +358201243200 from N users'
own numbers (caller-ID login, no PIN), each as a user who hears the current activity and the menu
out, presses an activity's digit (not Available's: the IVR then asks for an end time), hears the
end-time question out, presses `#` (no end time), hears the confirmation and goodbye, and is hung
up on by the PBX.

Two keys timed per call, as the access calls are (bench_ivr.py): from the key's RFC 4733
end-of-event packet to the PBX's next RTP packet on that call. A call fails when a prompt or an
answer does not come in time or the PBX does not hang up after the goodbye.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ivr_rig import (
    ACTIVITY_NUMBER,
    CallResult,
    Outcome,
    Sniffer,
    Stack,
    hang_up,
    pbx_port,
    pct,
    run_calls,
    timed_key,
    wait_prompt_end,
)

from base.model import AVAILABLE, User
from testphone import TestPhone


def activity_digits(stack: Stack) -> list[str]:
    """The digits of the bench tenant's activities that ask for an end time."""
    return [a.digit for a in stack.tenant.activities if a.key != AVAILABLE]


async def one_activity_call(phone: TestPhone, sniffer: Sniffer, user: User, digit: str,
                            think: tuple[float, float], delay: float) -> CallResult:
    result = CallResult(user.id)
    await asyncio.sleep(delay)
    call = None
    port = None
    try:
        call = await phone.call(ACTIVITY_NUMBER, caller_number=user.number)
        await call.wait_state("Up", 30)
        answered = time.monotonic()
        port = await pbx_port(call)
        stream = sniffer.stream(port)
        await wait_prompt_end(stream, time.time() - 1, 60)  # current activity, menu
        result.samples.append(await timed_key(call, stream, digit, think))  # → "until when?"
        result.samples.append(await timed_key(call, stream, "#", think))  # → changed, goodbye
        await call.wait_hangup(30)
        result.call_s = time.monotonic() - answered
    except Exception as exc:  # noqa: BLE001 - reported per call, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await hang_up(call)
        result.take_stream(sniffer, port)
    return result


async def run_activity(stack: Stack, phone: TestPhone, sniffer: Sniffer, n: int, think: tuple[float, float],
                       ramp: float, timeout: float) -> dict[str, Any]:
    users, digits = stack.users[:n], activity_digits(stack)
    outcome = await run_calls(stack, phone, sniffer, n, ramp, timeout, lambda i, delay: one_activity_call(
        phone, sniffer, users[i], digits[i % len(digits)], think, delay))
    return activity_row(n, outcome)


def activity_row(n: int, outcome: Outcome) -> dict[str, Any]:
    results: list[CallResult] = outcome.results
    samples = [s for r in results for s in r.samples]
    clean = [s.latency * 1000 for s in samples if s.quiet_before]
    errors = [f"{r.user}: {r.error}" for r in results if r.error]
    errors += [f"{outcome.cut} calls cut at the run timeout"] * bool(outcome.cut)
    return {
        "scenario": "activity", "system": "vipbx", "n": n, "calls_ok": sum(1 for r in results if not r.error),
        "samples": len(clean), "unclean": len(samples) - len(clean),
        "p50_ms": pct(clean, 0.5), "p99_ms": pct(clean, 0.99), "max_ms": max(clean, default=float("nan")),
        "wall_s": outcome.wall, "cpu_s": outcome.cpu, "call_s": sum(r.call_s for r in results),
        "machine_busy_s": outcome.busy, "others_cpu_s": outcome.others_cpu,
        "errors": errors[:10], "error_count": len(errors),
    }
