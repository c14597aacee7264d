"""Runs the checks side by side, each with its own time limit, so a hung part costs one
timeout and is reported as such instead of stalling the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from .checks import ALL, Finding, Platform

Check = Callable[[Platform], Awaitable[Finding]]
CHECK_TIMEOUT = 15.0  # seconds; each network step inside a check has 5


async def examine(platform: Platform, checks: Sequence[Check] = ALL, timeout: float = CHECK_TIMEOUT) -> list[Finding]:
    """The findings in the order of `checks`."""
    return list(await asyncio.gather(*(_one(check, platform, timeout) for check in checks)))


async def _one(check: Check, platform: Platform, timeout: float) -> Finding:
    name = check.__name__.removesuffix("_endpoint")
    try:
        return await asyncio.wait_for(check(platform), timeout)
    except TimeoutError:
        return Finding(name, "fail", f"no result within {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - a broken check is a finding, not a crash
        return Finding(name, "fail", f"{type(exc).__name__}: {exc}")
