"""Call recording as the FastAGI answers tell it to the dialplan: VIPBX_RECORD in the route
answer (the called user's and the calling device's user's switch), the record flag of the
outbound check, and the announcement's file in the recording user's language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_agi_routing import CONFIG, KEY, MIKKO, agi_env, as_vars, converse

from agi.outbound import OutboundDecision
from agi.routing import record_mode
from agi.server import start_agi_server
from ari_app.service import RECORD_NOTICE
from callstate import CallStateService
from prompts.media import PromptLibrary


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[CallStateService, int, Path]]:
    sounds = tmp_path / "sounds"
    for lang in ("fi", "sv", "en"):
        (sounds / lang).mkdir(parents=True)
        (sounds / lang / "record-notice.wav").write_bytes(b"RIFF")
    with CallStateService(tmp_path / "state.sqlite3", CONFIG) as state:
        library = PromptLibrary(sounds)
        server, _ = await start_agi_server(CONFIG, "127.0.0.1", 0, state, key=KEY,
                                           notice_file=lambda lang: library.path(lang, RECORD_NOTICE))
        yield state, server.sockets[0].getsockname()[1], sounds
        server.close()
        await server.wait_closed()


def test_record_mode_names_whose_recording_is_on() -> None:
    assert [record_mode(a, b) for a, b in ((False, False), (True, False), (False, True), (True, True))] == [
        "", "in", "out", "both"]


def test_the_outbound_answer_carries_the_record_flag_only_when_allowed() -> None:
    assert OutboundDecision().packed() == "allow"
    assert OutboundDecision(record=True).packed() == "allow,,,1"
    assert OutboundDecision("barred", record=True).packed() == "refuse,barred,21"


async def test_route_says_nothing_of_recording_while_it_is_off(served: tuple[CallStateService, int, Path]) -> None:
    _, port, _ = served
    got = as_vars(await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0", "acme", "mikko")))
    assert got["VIPBX_RECORD"] == "" and "VIPBX_RECORD_NOTICE" not in got


async def test_route_records_for_the_called_and_the_calling_user(served: tuple[CallStateService, int, Path]) -> None:
    state, port, sounds = served
    state.recording_state.set_recording("acme", "anna", True, actor="op", source="cli")
    got = as_vars(await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0")))
    assert got["VIPBX_ACTION"] == "ring" and got["VIPBX_RECORD"] == "in"
    assert got["VIPBX_RECORD_NOTICE"] == str(sounds / "fi" / "record-notice")  # anna's language
    # Anna calls Mikko from her device: her recording is "out".
    got = as_vars(await converse(port, agi_env("route", "acme", "mikko", "NOT_INUSE", "", "0", "acme", "anna")))
    assert got["VIPBX_RECORD"] == "out" and got["VIPBX_FROM"] == MIKKO
    state.recording_state.set_recording("acme", "mikko", True, actor="op", source="cli")
    got = as_vars(await converse(port, agi_env("route", "acme", "mikko", "NOT_INUSE", "", "0", "acme", "anna")))
    assert got["VIPBX_RECORD"] == "both"
    # A caller naming a user that does not exist records nothing.
    state.recording_state.set_recording("acme", "mikko", False, actor="op", source="cli")
    got = as_vars(await converse(port, agi_env("route", "acme", "mikko", "NOT_INUSE", "", "0", "acme", "ghost")))
    assert got["VIPBX_RECORD"] == ""


async def test_outbound_check_records_the_calling_user(served: tuple[CallStateService, int, Path]) -> None:
    state, port, sounds = served
    got = as_vars(await converse(port, agi_env("outbound", "acme", "anna", "+358501234567", "1")))
    assert got == {"VIPBX_OUTBOUND": "allow"}
    state.recording_state.set_recording("acme", "anna", True, actor="op", source="cli")
    got = as_vars(await converse(port, agi_env("outbound", "acme", "anna", "+358501234567", "1")))
    assert got == {"VIPBX_OUTBOUND": "allow,,,1", "VIPBX_RECORD_NOTICE": str(sounds / "fi" / "record-notice")}


async def test_no_announcement_no_recording(tmp_path: Path) -> None:
    """The prompt missing (not built), or in a folder Dial's options could not carry: the call is
    routed as usual and not recorded."""
    for sounds in (tmp_path / "empty", tmp_path / "a:b,c"):
        (sounds / "fi").mkdir(parents=True)
        if ":" in sounds.name:
            (sounds / "fi" / "record-notice.wav").write_bytes(b"RIFF")
        library = PromptLibrary(sounds)
        with CallStateService(tmp_path / f"{sounds.name}.sqlite3", CONFIG) as state:
            state.recording_state.set_recording("acme", "anna", True, actor="op", source="cli")
            server, _ = await start_agi_server(CONFIG, "127.0.0.1", 0, state, key=KEY,
                                               notice_file=lambda lang, lib=library: lib.path(lang, RECORD_NOTICE))
            port = server.sockets[0].getsockname()[1]
            try:
                got = as_vars(await converse(port, agi_env("route", "acme", "anna", "NOT_INUSE", "", "0")))
                assert (got["VIPBX_ACTION"], got["VIPBX_RECORD"]) == ("ring", "") and "VIPBX_RECORD_NOTICE" not in got
                got = as_vars(await converse(port, agi_env("outbound", "acme", "anna", "+358501234567", "1")))
                assert got == {"VIPBX_OUTBOUND": "allow"}
            finally:
                server.close()
                await server.wait_closed()
