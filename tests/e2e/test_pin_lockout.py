"""PINs over real calls: wrong PINs typed as DTMF lock the mailbox; a prober hears the same for an
unknown, a real and a locked mailbox; the native fallback (the application stopped) refuses a
locked user without asking a PIN, counts its own wrong PINs into a lock, and the application folds
them into the call state when it is back."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from support import Person, Rig, ami_settings, app_registered, eventually
from test_voicemail import write_platform_yaml

from ari_app.pinlocks import FAIL_FAMILY, HELD_EPOCH, LOCK_FAMILY, astdb_key
from base.ami import AmiError, ami_session
from testphone.driver import Call

pytestmark = pytest.mark.asterisk
pytest_plugins = ("support",)  # the `rig` fixture

ANNA = Person("acme", "anna.virtanen", "+358401110001", "acme-anna-soft", "480264")
VOICEMAIL = "+358201243100"
OUTSIDE = "+358451234567"
UNKNOWN = "0509999999"  # nobody's number
THREE_WRONG = ["vm-enter-mailbox", *["vm-enter-pin", "vm-pin-wrong"] * 3, "vm-goodbye"]
FALLBACK_READ = "Read(VIPBX_PIN,vm-password"  # the fallback's PIN prompt, as the dialplan runs it
KEY = astdb_key(ANNA.tenant, ANNA.user)


@pytest.fixture(scope="module", autouse=True)
def _no_pbx_errors(no_pbx_errors: None) -> None:
    """Every test of this module runs under the check."""


async def astdb(rig: Rig, family: str) -> str | None:
    """Anna's value in an astdb family, read over AMI; None when there is none."""
    async with ami_session(ami_settings(rig.pbx)) as session:
        try:
            found = await session.listing("DBGet", Family=family, Key=KEY)
        except AmiError:
            return None  # "Database entry not found"
    return str(found[0]["Val"]) if found else None


async def astdb_becomes(rig: Rig, family: str, expected: str | None, timeout: float = 5) -> None:
    """Until Anna's value in `family` is `expected` (written in the background by the app)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await astdb(rig, family)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{family}: {value!r}, not {expected!r}"
        await asyncio.sleep(0.1)


async def clear_astdb(rig: Rig) -> None:
    async with ami_session(ami_settings(rig.pbx)) as session:
        for family in (LOCK_FAMILY, FAIL_FAMILY):
            try:
                await session.action("DBDelTree", Family=family)
            except AmiError:
                pass  # nothing there


@pytest_asyncio.fixture
async def clean(rig: Rig) -> AsyncIterator[Rig]:
    """The rig with no lock in astdb, before and after (the rig resets the call state)."""
    await clear_astdb(rig)
    yield rig
    await clear_astdb(rig)


async def type_digits(call: Call, digits: str) -> None:
    await call.send_dtmf(digits, duration_ms=80, between_ms=80)


async def typed_login(rig: Rig, number: str, pins: list[str]) -> list[str]:
    """One call from OUTSIDE: `number`, then a PIN at each PIN prompt; what the PBX played."""
    obs = rig.observer
    since = obs.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=OUTSIDE)
    await obs.wait_prompt(OUTSIDE, "vm-enter-mailbox", since=since)
    await type_digits(call, number + "#")
    for asked, pin in enumerate(pins, 1):
        def asked_or_over(asked: int = asked) -> list[str] | None:
            played = obs.prompts(OUTSIDE, since)
            return played if played.count("vm-enter-pin") >= asked or "vm-goodbye" in played else None

        played = await obs.until(asked_or_over, 20, f"PIN prompt {asked}")
        if "vm-goodbye" in played:
            break
        await type_digits(call, pin + "#")
    await call.wait_hangup(30)
    assert call.hung_up_by == "far"
    return obs.prompts(OUTSIDE, since)


# ---------------------------------------------------------------------- the application's login


async def test_an_unknown_and_a_real_mailbox_sound_the_same_after_wrong_pins(clean: Rig) -> None:
    wrong = ["111111", "222222", "333333"]
    unknown = await typed_login(clean, UNKNOWN, wrong)
    real = await typed_login(clean, "0401110001", wrong)  # Anna's number, national form
    assert unknown == real == THREE_WRONG
    assert clean.state.pin_status(ANNA.tenant, ANNA.user).failures == 3


async def test_wrong_pins_over_dtmf_lock_quietly_and_the_lock_reaches_the_fallback(
        clean: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ari_app")
    began = datetime.now(UTC)
    assert await typed_login(clean, "0401110001", ["111111", "222222", "333333"]) == THREE_WRONG
    # The fifth wrong PIN locks; the caller hears what any wrong PIN sounds like.
    assert await typed_login(clean, "0401110001", ["444444", "555555", ANNA.pin]) == THREE_WRONG
    status = clean.state.pin_status(ANNA.tenant, ANNA.user)
    assert status.locked and status.level == 1 and status.locked_until is not None
    # Locked: the right PIN is refused in the same words, and a stranger's number sounds alike.
    assert await typed_login(clean, "0401110001", [ANNA.pin] * 3) == THREE_WRONG
    assert await typed_login(clean, UNKNOWN, [ANNA.pin] * 3) == THREE_WRONG
    events = [e.event for e in reversed(clean.state.audit(ANNA.tenant, ANNA.user, limit=50))
              if e.at >= began and e.field == "pin"]
    assert events == ["pin_failed"] * 5 + ["pin_locked"] + ["pin_refused"] * 4
    assert any("acme/anna.virtanen is locked" in r.getMessage() for r in caplog.records)
    # Mirrored for the native fallback: the lock's end, in epoch seconds.
    await astdb_becomes(clean, LOCK_FAMILY, str(int(status.locked_until.timestamp())))


# ---------------------------------------------------------------------- the native fallback


async def stop_app(rig: Rig) -> None:
    await rig.stop_app()
    registered = app_registered(rig.pbx.cli)
    await eventually(lambda: not registered(), 10, "the vipbx ARI app gone")


async def fallback_call(rig: Rig, pins: list[str]) -> list[str]:
    """Anna calls the voicemail number from her own number with the app down; a PIN at each of
    the fallback's PIN prompts; the dialplan applications that ran."""
    obs = rig.observer
    since = obs.mark()
    call = await rig.phone.call(VOICEMAIL, caller_number=ANNA.number)
    for asked, pin in enumerate(pins, 1):
        def asked_or_over(asked: int = asked) -> list[str] | None:
            apps = obs.apps(ANNA.number, since)
            reads = [a for a in apps if a.startswith(FALLBACK_READ)]
            return apps if len(reads) >= asked or call.hung_up_by or any(
                a.startswith("VoiceMailMain") or "vm-goodbye" in a for a in apps) else None

        apps = await obs.until(asked_or_over, 20, f"fallback PIN prompt {asked}")
        if call.hung_up_by or any("vm-goodbye" in a for a in apps):
            break
        await asyncio.sleep(0.3)  # the prompt has begun: keys now are its answer
        await type_digits(call, pin + "#")
    if not call.hung_up_by:
        await obs.until(lambda: any("vm-goodbye" in a or a.startswith("VoiceMailMain")
                                    for a in obs.apps(ANNA.number, since)), 20, "the fallback's verdict")
        await call.hangup()
    await call.wait_hangup(30)
    return obs.apps(ANNA.number, since)


async def test_a_locked_user_is_refused_by_the_fallback_without_a_pin_prompt(clean: Rig) -> None:
    assert await typed_login(clean, "0401110001", ["111111", "222222", "333333"]) == THREE_WRONG
    await typed_login(clean, "0401110001", ["444444", "555555", "666666"])
    status = clean.state.pin_status(ANNA.tenant, ANNA.user)
    assert status.locked and status.locked_until is not None
    await astdb_becomes(clean, LOCK_FAMILY, str(int(status.locked_until.timestamp())))
    await stop_app(clean)
    apps = await fallback_call(clean, [ANNA.pin])
    assert any(a.startswith("Gosub(vipbx-vm-fallback-login") for a in apps), apps  # the fallback ran
    assert not any(a.startswith(FALLBACK_READ) for a in apps), apps  # no PIN asked
    assert not any(a.startswith("VoiceMailMain") for a in apps), apps
    assert any(a.startswith("Playback(vm-incorrect&vm-goodbye") for a in apps), apps


async def test_wrong_pins_in_the_fallback_lock_and_are_counted_when_the_app_is_back(clean: Rig) -> None:
    await stop_app(clean)
    # The right PIN opens the mailbox in the fallback (and no lock is in the way).
    apps = await fallback_call(clean, [ANNA.pin])
    assert any(a.startswith("VoiceMailMain") for a in apps), apps
    # Three wrong PINs in one call, then two more in the next: the fifth locks.
    apps = await fallback_call(clean, ["111111", "222222", "333333"])
    assert [a for a in apps if a.startswith(FALLBACK_READ)] and not any(a.startswith("VoiceMailMain") for a in apps)
    assert await astdb(clean, FAIL_FAMILY) == "3"
    apps = await fallback_call(clean, ["444444", "555555", "666666"])
    assert len([a for a in apps if a.startswith(FALLBACK_READ)]) == 2, apps  # the fifth ended the call
    assert await astdb(clean, LOCK_FAMILY) == str(HELD_EPOCH)
    # Locked: the next call, even with the right PIN at hand, is refused before any PIN prompt.
    apps = await fallback_call(clean, [ANNA.pin])
    assert not any(a.startswith(FALLBACK_READ) for a in apps), apps
    assert not any(a.startswith("VoiceMailMain") for a in apps), apps
    # The application is back: the five failures count in the call state, which now holds the
    # lock (level 1, its own end); astdb mirrors that end, and the fallback's counter is gone.
    began = datetime.now(UTC)
    await clean.start_app()
    state = clean.state

    def folded() -> bool:
        return state.pin_status(ANNA.tenant, ANNA.user).level == 1

    await eventually(folded, 10, "the fallback's failures folded into the call state")
    status = state.pin_status(ANNA.tenant, ANNA.user)
    assert status.locked and status.locked_until is not None and status.failures == 5
    audit = [(e.event, e.source) for e in state.audit(ANNA.tenant, ANNA.user, limit=20) if e.at >= began]
    assert sorted(set(audit)) == [("pin_failed", "fallback"), ("pin_locked", "fallback")]
    await astdb_becomes(clean, LOCK_FAMILY, str(int(status.locked_until.timestamp())))
    await astdb_becomes(clean, FAIL_FAMILY, None)


async def test_an_operator_unlock_opens_the_fallback_again(clean: Rig, tmp_path: Path) -> None:
    await stop_app(clean)
    await fallback_call(clean, ["111111", "222222", "333333"])
    await fallback_call(clean, ["444444", "555555"])
    assert await astdb(clean, LOCK_FAMILY) == str(HELD_EPOCH)
    # `vipbx voicemail pin USER --unlock`, as an operator runs it on the PBX's home.
    files = write_platform_yaml(tmp_path, clean.config)
    env = {**os.environ, "VIPBX_HOME": str(clean.pbx.home)}
    env.pop("VIPBX_CONFIG", None)
    argv = [sys.executable, "-m", "cli.main", "voicemail", "pin", f"{ANNA.user}@{ANNA.tenant}",
            "--unlock", *map(str, files)]
    done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True,
                                   timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    shown = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in done.stdout.splitlines())}
    assert shown["fallback wrong PINs"] == "5" and "unlocked" in done.stdout
    assert await astdb(clean, LOCK_FAMILY) is None and await astdb(clean, FAIL_FAMILY) is None
    apps = await fallback_call(clean, [ANNA.pin])  # asked a PIN again, and the right one opens
    assert any(a.startswith(FALLBACK_READ) for a in apps) and any(a.startswith("VoiceMailMain") for a in apps)
