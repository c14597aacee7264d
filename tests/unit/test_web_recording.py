"""Services → Call recording: the switch (the call state's, audited), the recordings of the
user's own spool folder (listed, played, downloaded, deleted) and the isolation of every route;
and the rendered dialplan, which records only behind the route's flag."""

from __future__ import annotations

import struct
import wave
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from webharness import EXAMPLE_FILES, WebHarness, example_config, make_harness

from asterisk_conf.render import render_config
from asterisk_conf.validate import load_config
from base.model import RECORDING_OFF
from base.paths import Paths
from callstate import CallStateService, default_db_path
from callstate.recording_state import (
    RECORDING_DELETED,
    RECORDING_FIELD,
    RecordingForbidden,
)
from cli.recording import recording_group
from prompts import catalogue
from web.recording_service import RecordingFiles, audio_seconds

ANNA = ("acme", "anna.virtanen")
MIKKO = ("acme", "mikko.korhonen")
JAMES = ("borealis", "james.taylor")
REC_ID = "1764820000-1764819999123-in-+358401110002"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[WebHarness]:
    harness = make_harness(tmp_path)
    yield harness
    harness.state.close()


def folder(site: WebHarness, who: tuple[str, str]) -> Path:
    return Paths(site.deps.home).call_recordings / who[0] / who[1]


def put_recording(site: WebHarness, who: tuple[str, str], rec_id: str = REC_ID, seconds: float = 3.0) -> Path:
    """A recording as MixMonitor leaves it: 8 kHz 16-bit mono WAV in the user's folder."""
    path = folder(site, who) / f"{rec_id}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(struct.pack("<h", 1000) * int(8000 * seconds))
    return path


def api_headers(csrf: str) -> dict[str, str]:
    return {"x-csrf-token": csrf}


async def login(site: WebHarness, client: httpx.AsyncClient, who: tuple[str, str]) -> str:
    return await site.login(client, site.who(*who))


# --------------------------------------------------------------------------- the state

def test_recording_is_off_by_default_and_every_change_is_audited(site: WebHarness) -> None:
    rec = site.state.recording_state
    assert rec.recording(*ANNA) is False
    assert rec.set_recording(*ANNA, True, actor="web:anna", source="web") is True
    assert rec.recording(*ANNA) is True and rec.recording(*MIKKO) is False
    rec.set_recording(*ANNA, True, actor="web:anna", source="web")  # no change: no audit row
    rec.set_recording(*ANNA, False, actor="cli:op", source="cli")
    trail = site.state.audit(*ANNA, limit=10)
    assert [(e.field, e.old, e.new, e.source) for e in trail] == [
        (RECORDING_FIELD, "on", "off", "cli"), (RECORDING_FIELD, "off", "on", "web")]


# --------------------------------------------------------------------------- the files

def test_files_are_listed_newest_first_and_ids_never_leave_the_folder(site: WebHarness, tmp_path: Path) -> None:
    files = RecordingFiles.of_home(site.deps.home)
    put_recording(site, ANNA, "1764820000-1-in-+358401110002", 2)
    put_recording(site, ANNA, "1764830000-2-out-+358501234567", 5)
    (folder(site, ANNA) / "1764840000-3-in-.wav").write_bytes(b"")  # an empty file: no audio
    (folder(site, ANNA) / "1764840001-5-in-.wav").write_bytes(b"\0" * 44)  # a header only: unanswered
    (folder(site, ANNA) / "notes.txt").write_text("x")
    listed = files.recordings(*ANNA, now=datetime.fromtimestamp(1764840001, UTC) + timedelta(minutes=5))
    assert [(r.direction, r.other, r.seconds) for r in listed] == [("out", "+358501234567", 5), ("in", "+358401110002", 2)]
    # An unanswered call's empty file is kept while it may still be ringing, then removed.
    assert (folder(site, ANNA) / "1764840001-5-in-.wav").exists()
    files.recordings(*ANNA, now=datetime.fromtimestamp(1764840001, UTC) + timedelta(hours=2))
    assert not (folder(site, ANNA) / "1764840001-5-in-.wav").exists()
    assert files.find(*ANNA, "../../borealis/james.taylor/" + REC_ID) is None
    assert files.find(*MIKKO, "1764820000-1-in-+358401110002") is None
    # A recording still being written (no final header) is measured by its size.
    growing = folder(site, ANNA) / "1764850000-4-in-+358401110002.wav"
    growing.write_bytes(b"\0" * (44 + 16000 * 4))
    assert audio_seconds(growing) == 4


# --------------------------------------------------------------------------- the page

async def test_the_switch_is_turned_on_and_off_on_the_page(site: WebHarness) -> None:
    async with site.client() as client:
        csrf = await login(site, client, ANNA)
        page = await client.get("/services/recording")
        assert page.status_code == 200 and 'id="recording-off" name="enabled" value="off" checked' in page.text
        assert 'id="no-recordings"' in page.text and 'aria-current="page">Puhelujen nauhoitus' in page.text
        done = await site.post_form(client, "/services/recording", csrf, enabled="on")
        assert done.status_code == 303 and done.headers["location"] == "/services/recording?done=recording_saved"
        assert site.state.recording_state.recording(*ANNA) is True
        page = await client.get("/services/recording?done=recording_saved")
        assert "Nauhoitusasetus tallennettu." in page.text and 'value="on" checked' in page.text
        trail = site.state.audit(*ANNA, limit=1)[0]
        assert (trail.field, trail.new, trail.actor, trail.source) == (RECORDING_FIELD, "on", "web:anna.virtanen@acme", "web")
        await site.post_form(client, "/services/recording", csrf, enabled="off")
        assert site.state.recording_state.recording(*ANNA) is False
        # Without the CSRF token nothing changes.
        refused = await client.post("/services/recording", data={"enabled": "on"})
        assert refused.status_code == 403 and site.state.recording_state.recording(*ANNA) is False


async def test_recordings_are_listed_played_downloaded_and_deleted(site: WebHarness) -> None:
    path = put_recording(site, ANNA)
    async with site.client() as client:
        csrf = await login(site, client, ANNA)
        page = await client.get("/services/recording")
        assert "+358401110002" in page.text and "Saapuva" in page.text and "0:03" in page.text
        src = "/services/recording/1764820000-1764819999123-in-%2B358401110002/audio"
        assert f'src="{src}"' in page.text
        audio = await client.get(src)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        assert audio.content == path.read_bytes() and audio.headers["content-disposition"].startswith("inline")
        download = await client.get(src + "?download=true")
        assert download.headers["content-disposition"].startswith("attachment")
        gone = await site.post_form(client, f"/services/recording/{REC_ID}/delete", csrf)
        assert gone.status_code == 303 and gone.headers["location"].endswith("done=recording_deleted")
        assert not path.exists()
        trail = site.state.audit(*ANNA, limit=1)[0]
        assert (trail.event, trail.old) == (RECORDING_DELETED, REC_ID)
        assert (await client.get(src)).status_code == 404


async def test_the_api_twins(site: WebHarness) -> None:
    path = put_recording(site, ANNA)
    async with site.client() as client:
        csrf = await login(site, client, ANNA)
        got = (await client.get("/api/v1/recording")).json()
        assert got["enabled"] is False and [r["id"] for r in got["recordings"]] == [REC_ID]
        assert got["recordings"][0]["seconds"] == 3 and got["recordings"][0]["direction"] == "in"
        assert (await client.put("/api/v1/recording", json={"enabled": True})).status_code == 403  # no CSRF header
        put = await client.put("/api/v1/recording", json={"enabled": True}, headers=api_headers(csrf))
        assert put.json() == {"enabled": True} and site.state.recording_state.recording(*ANNA)
        audio = await client.get(got["recordings"][0]["audio"])
        assert audio.status_code == 200 and audio.content == path.read_bytes()
        deleted = await client.delete(f"/api/v1/recording/recordings/{REC_ID}", headers=api_headers(csrf))
        assert deleted.status_code == 204 and not path.exists()
        assert (await client.delete(f"/api/v1/recording/recordings/{REC_ID}", headers=api_headers(csrf))).status_code == 404
        spec = (await client.get("/api/openapi.json")).json()
        assert "/api/v1/recording" in spec["paths"] and "/api/v1/recording/recordings/{recording_id}" in spec["paths"]


# --------------------------------------------------------------------------- isolation

@pytest.mark.parametrize("intruder", [MIKKO, JAMES], ids=["same-tenant", "other-tenant"])
async def test_nobody_else_reads_or_changes_a_users_recordings(site: WebHarness, intruder: tuple[str, str]) -> None:
    path = put_recording(site, ANNA)
    site.state.recording_state.set_recording(*ANNA, True, actor="test", source="test")
    async with site.client() as client:
        csrf = await login(site, client, intruder)
        # Their own page lists their own (no) recordings, not Anna's.
        page = await client.get("/services/recording")
        assert REC_ID not in page.text and 'id="no-recordings"' in page.text
        assert REC_ID not in (await client.get("/api/v1/recording")).text
        for url in (f"/services/recording/{REC_ID}/audio", f"/services/recording/{REC_ID}/audio?download=true",
                    f"/api/v1/recording/recordings/{REC_ID}/audio",
                    f"/services/recording/..%2F..%2Facme%2Fanna.virtanen%2F{REC_ID}/audio"):
            assert (await client.get(url)).status_code == 404, url
        assert (await site.post_form(client, f"/services/recording/{REC_ID}/delete", csrf)).status_code == 404
        assert (await client.delete(f"/api/v1/recording/recordings/{REC_ID}",
                                    headers=api_headers(csrf))).status_code == 404
        # Their switch is theirs: Anna's stays on.
        await site.post_form(client, "/services/recording", csrf, enabled="off")
        await client.put("/api/v1/recording", json={"enabled": False}, headers=api_headers(csrf))
    assert path.exists() and site.state.recording_state.recording(*ANNA) is True
    assert all(e.field != RECORDING_DELETED for e in site.state.audit(*ANNA, limit=50))


async def test_anonymous_requests_are_refused(site: WebHarness) -> None:
    path = put_recording(site, ANNA)
    async with site.client() as client:
        for method, url in (("GET", "/services/recording"), ("POST", "/services/recording"),
                            ("GET", f"/services/recording/{REC_ID}/audio"),
                            ("POST", f"/services/recording/{REC_ID}/delete")):
            response = await client.request(method, url)
            assert response.status_code == 303 and response.headers["location"].startswith("/login"), url
        for method, url in (("GET", "/api/v1/recording"), ("PUT", "/api/v1/recording"),
                            ("GET", f"/api/v1/recording/recordings/{REC_ID}/audio"),
                            ("DELETE", f"/api/v1/recording/recordings/{REC_ID}")):
            assert (await client.request(method, url, json={"enabled": True})).status_code == 401, url
    assert path.exists() and site.state.recording_state.recording(*ANNA) is False


# --------------------------------------------------------------------------- the dialplan

class Secrets:
    def get(self, name: str) -> str:
        return "secret"

    def ensure(self, names: list[str]) -> dict[str, str]:
        return dict.fromkeys(names, "secret")


def test_the_dialplan_records_only_behind_the_flag(site: WebHarness) -> None:
    files = render_config(site.config, Secrets())  # type: ignore[arg-type]
    assert "load => app_mixmonitor.so" in files["modules.conf"].splitlines()
    lines = files["extensions.conf"].splitlines()
    mixmonitor = [i for i, line in enumerate(lines) if "MixMonitor(" in line and "StopMixMonitor" not in line]
    assert len(mixmonitor) == 1
    # In its own subroutine, which only the two flag checks call.
    start = max(i for i in range(mixmonitor[0]) if lines[i].startswith("["))
    assert lines[start] == "[vipbx-record]"
    assert "${ASTSPOOLDIR}/call-recordings/${ARG1}/${ARG2}/" in lines[mixmonitor[0]]
    callers = [i for i, line in enumerate(lines) if "Gosub(vipbx-record," in line]
    assert len(callers) == 3  # in, out (a call to a user), out (a call to the carrier)
    for i in callers:
        guard = lines[i - 1]
        assert "GotoIf(" in guard and ("VIPBX_RECORD" in guard or "VIPBX_OUT_RECORD" in guard), guard
    # The announcement reaches both parties through Dial's A() option, only when named.
    assert " same => n,Set(VIPBX_REC_OPT=aA(${VIPBX_RECORD_NOTICE}:${VIPBX_RECORD_NOTICE}))" in lines
    assert sum("${VIPBX_REC_OPT})" in line and "Dial(" in line for line in lines) == 2


def test_the_notice_prompt_is_in_every_language() -> None:
    assert "record-notice" in catalogue.names()
    assert all(catalogue.text(lang, "record-notice") for lang in catalogue.LANGUAGES)




# --------------------------------------------------------------------------- the CLI, same switch

def test_the_cli_shows_and_turns_the_same_switch(tmp_path: Path) -> None:
    files = [str(p) for p in EXAMPLE_FILES]

    def run(*args: str) -> str:
        result = CliRunner().invoke(recording_group, [*args, *files], catch_exceptions=False,
                                    env={"VIPBX_HOME": str(tmp_path), "VIPBX_CONFIG": None})
        assert result.exit_code == 0, result.output
        return result.output.strip()

    assert run("show", "anna.virtanen@acme") == "call recording of anna.virtanen@acme (+358401110001): off"
    assert run("on", "+358401110001") == "call recording of anna.virtanen@acme (+358401110001): on"
    with CallStateService(default_db_path(tmp_path), load_config(files)) as state:
        assert state.recording_state.recording(*ANNA) is True
        assert state.audit(*ANNA, limit=1)[0].source == "cli"
    assert run("off", "anna.virtanen@acme").endswith(": off")


# --------------------------------------------------------------------------- the tenant's switch

def forbidding(tmp_path: Path) -> WebHarness:
    """The example tenants, acme with `call_recording: off`."""
    config = example_config()
    tenants = tuple(replace(t, call_recording=RECORDING_OFF) if t.id == "acme" else t for t in config.tenants)
    return make_harness(tmp_path, replace(config, tenants=tenants))


async def test_a_tenant_that_forbids_recording_records_nobody(tmp_path: Path) -> None:
    site = make_harness(tmp_path / "before")
    site.state.recording_state.set_recording(*ANNA, True, actor="test", source="test")
    site.state.close()
    # The same database under a configuration whose acme says `call_recording: off`.
    site = forbidding(tmp_path / "before")
    try:
        rec = site.state.recording_state
        assert rec.recording(*ANNA) is False  # the stored "on" records nothing now
        with pytest.raises(RecordingForbidden):
            rec.set_recording(*MIKKO, True, actor="test", source="test")
        assert rec.set_recording(*MIKKO, False, actor="test", source="test") is False
        assert rec.set_recording(*JAMES, True, actor="test", source="test") is True  # borealis allows it
        async with site.client() as client:
            csrf = await login(site, client, ANNA)
            page = await client.get("/services/recording")
            assert 'id="recording-forbidden"' in page.text and 'value="on"  disabled' in page.text
            refused = await site.post_form(client, "/services/recording", csrf, enabled="on")
            assert refused.status_code == 422 and "Organisaatiosi ei salli" in refused.text
            api = await client.put("/api/v1/recording", json={"enabled": True}, headers=api_headers(csrf))
            assert api.status_code == 422
        assert rec.recording(*ANNA) is False and rec.recording(*MIKKO) is False
    finally:
        site.state.close()


def test_the_yaml_key_is_checked(tmp_path: Path) -> None:
    source = (EXAMPLE_FILES[1]).read_text(encoding="utf-8")
    assert "\n    domain: acme.example\n" in source
    for value, ok in (("forbidden", True), ("allowed", True), ("off", False), ("sometimes", False)):
        changed = tmp_path / f"acme-{value}.yaml"
        changed.write_text(source.replace("\n    domain: acme.example\n",
                                          f"\n    domain: acme.example\n    call_recording: {value}\n"))
        files = [str(EXAMPLE_FILES[0]), str(changed), str(EXAMPLE_FILES[2])]
        if ok:
            assert load_config(files).tenant("acme").call_recording == value
        else:
            with pytest.raises(Exception, match="call_recording") as error:
                load_config(files)
            assert f"acme-{value}.yaml" in str(error.value)
