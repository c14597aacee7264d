"""Deposits under load: N carrier calls at once, each diverted from a different user's number (a
Diversion header, as a mobile network sends for a busy or unanswered forward), that listen to the
greeting and the beep, speak a tone for a few seconds and hang up.

    vipbx:     to the voicemail number (+358201243100): the product's deposit IVR (ARI);
    voicemail: to the bench number VMD_NUMBER: the product's native fallback, Asterisk's
               VoiceMail(<mailbox>@<tenant>,u), on the same spool and the same users.

Measured per call: from the hang-up (the moment the phone's hang-up request leaves) to the
message's envelope (`msgNNNN.txt`, what makes a message exist for both) in the mailbox's INBOX,
polled every POLL_S; a call fails when it does not get through, or its message does not arrive
within DELIVERY_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ivr_rig import (
    ACCESS_NUMBER,
    VMD_NUMBER,
    CallResult,
    Outcome,
    Sniffer,
    Stack,
    hang_up,
    pbx_port,
    pct,
    run_calls,
    wait_prompt_end,
)

from base.model import User
from testphone import TestPhone

DEPOSIT_NUMBERS = {"vipbx": ACCESS_NUMBER, "voicemail": VMD_NUMBER}
POLL_S = 0.01
DELIVERY_TIMEOUT_S = 30.0


@dataclass
class DepositResult(CallResult):
    delivered_s: float | None = None  # hang-up → the envelope in INBOX


async def wait_delivery(stack: Stack, user: User, before: int, since: float) -> float:
    """Seconds from `since` (time.time()) until the user's INBOX holds more than `before` messages."""
    deadline = since + DELIVERY_TIMEOUT_S
    while stack.store.counts(stack.tenant.id, user.mailbox)[0] <= before:
        if time.time() > deadline:
            raise TimeoutError(f"no message in the mailbox {DELIVERY_TIMEOUT_S:.0f} s after the hang-up")
        await asyncio.sleep(POLL_S)
    return time.time() - since


async def one_deposit(stack: Stack, phone: TestPhone, sniffer: Sniffer, system: str, user: User, caller: str,
                      speak_s: float, delay: float) -> DepositResult:
    result = DepositResult(user.id)
    await asyncio.sleep(delay)
    before = stack.store.counts(stack.tenant.id, user.mailbox)[0]
    call = None
    port = None
    try:
        call = await phone.call(DEPOSIT_NUMBERS[system], caller_number=caller, diversion=user.number)
        await call.wait_state("Up", 30)
        answered = time.monotonic()
        port = await pbx_port(call)
        await wait_prompt_end(sniffer.stream(port), time.time() - 1, 60)  # greeting, beep
        await call.play_tone(speak_s, 440)
        hung_up = time.time()
        await call.hangup()
        result.call_s = time.monotonic() - answered
        result.delivered_s = await wait_delivery(stack, user, before, hung_up)
    except Exception as exc:  # noqa: BLE001 - reported per call, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await hang_up(call)
        result.take_stream(sniffer, port)
    return result


async def run_deposits(stack: Stack, phone: TestPhone, sniffer: Sniffer, system: str, n: int, speak_s: float,
                       ramp: float, timeout: float) -> dict[str, Any]:
    users = stack.users[:n]
    outcome = await run_calls(stack, phone, sniffer, n, ramp, timeout, lambda i, delay: one_deposit(
        stack, phone, sniffer, system, users[i], f"+35850{i:07d}", speak_s, delay))
    return deposit_row(system, n, outcome)


def deposit_row(system: str, n: int, outcome: Outcome) -> dict[str, Any]:
    results: list[DepositResult] = outcome.results
    delivered = [r.delivered_s * 1000 for r in results if r.delivered_s is not None and not r.error]
    errors = [f"{r.user}: {r.error}" for r in results if r.error]
    errors += [f"{outcome.cut} calls cut at the run timeout"] * bool(outcome.cut)
    return {
        "scenario": "deposit", "system": system, "n": n, "calls_ok": len(delivered),
        "p50_ms": pct(delivered, 0.5), "p99_ms": pct(delivered, 0.99), "max_ms": max(delivered, default=float("nan")),
        "wall_s": outcome.wall, "cpu_s": outcome.cpu, "call_s": sum(r.call_s for r in results),
        "audio_s": sum(r.audio_packets for r in results) * 0.02,
        "machine_busy_s": outcome.busy, "others_cpu_s": outcome.others_cpu,
        "errors": errors[:10], "error_count": len(errors),
    }
