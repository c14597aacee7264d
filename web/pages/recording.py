"""Services → Call recording: the user's on/off switch and their recordings (listed, played,
downloaded, deleted). The switch is the call-state service's (`recording_state`); the files are
the user's own folder of the spool (`web/recording_service.py`), never anyone else's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from base.offload import run_blocking
from callstate.recording_state import RecordingForbidden

from ..auth.sessions import CurrentViewer, Services, Viewer, checked_form
from ..deps import WebDeps
from ..recording_service import Recording, RecordingFiles
from ..render import page

router = APIRouter()
api = APIRouter(prefix="/api/v1/recording", tags=["recording"])
PAGE = "/services/recording"
RecordingId = Annotated[str, Path(max_length=120)]  # any other shape is simply not found (404)


def files(deps: WebDeps) -> RecordingFiles:
    return RecordingFiles.of_home(deps.home)


async def _own(deps: WebDeps, who: Viewer, recording_id: str) -> Recording:
    """The viewer's recording of that id; 404 for anything else."""
    found = await run_blocking(files(deps).find, who.tenant_id, who.user_id, recording_id)
    if found is None:
        raise HTTPException(404, "no such recording")
    return found


async def _set(deps: WebDeps, who: Viewer, enabled: bool) -> bool:
    return await run_blocking(deps.state.recording_state.set_recording, who.tenant_id, who.user_id, enabled,
                              actor=who.actor, source="web")


async def _delete(deps: WebDeps, who: Viewer, recording_id: str) -> None:
    found = await _own(deps, who, recording_id)
    if await run_blocking(files(deps).delete, who.tenant_id, who.user_id, found.id):
        await run_blocking(deps.state.recording_state.note_deleted, who.tenant_id, who.user_id, found.id,
                           actor=who.actor, source="web")


def _audio(found: Recording, download: bool) -> FileResponse:
    return FileResponse(found.path, media_type="audio/wav", filename=f"{found.id}.wav",
                        content_disposition_type="attachment" if download else "inline")


# ------------------------------------------------------------------ the page

async def _page(request: Request, who: Viewer, deps: WebDeps, problem: str | None = None,
                status_code: int = 200) -> Response:
    state = deps.state.recording_state
    enabled = await run_blocking(state.recording, who.tenant_id, who.user_id)
    allowed = await run_blocking(state.allowed, who.tenant_id, who.user_id)
    recordings = await run_blocking(files(deps).recordings, who.tenant_id, who.user_id, deps.state.store.now())
    return page(request, "recording.html", who, enabled=enabled, allowed=allowed, recordings=recordings,
                problem=problem, status_code=status_code)


@router.get(PAGE, include_in_schema=False)
async def recording_page(request: Request, who: CurrentViewer, deps: Services) -> Response:
    return await _page(request, who, deps)


@router.post(PAGE, include_in_schema=False)
async def recording_switch(request: Request, who: CurrentViewer, deps: Services) -> Response:
    form = await checked_form(request, who)
    try:
        await _set(deps, who, form.get("enabled") == "on")
    except RecordingForbidden:
        return await _page(request, who, deps, problem="recording_forbidden", status_code=422)
    return RedirectResponse(f"{PAGE}?done=recording_saved", status_code=303)


@router.get(PAGE + "/{recording_id}/audio", include_in_schema=False)
async def recording_audio(recording_id: RecordingId, who: CurrentViewer, deps: Services,
                          download: bool = False) -> Response:
    return _audio(await _own(deps, who, recording_id), download)


@router.post(PAGE + "/{recording_id}/delete", include_in_schema=False)
async def recording_delete(request: Request, recording_id: RecordingId, who: CurrentViewer,
                           deps: Services) -> Response:
    await checked_form(request, who)
    await _delete(deps, who, recording_id)
    return RedirectResponse(f"{PAGE}?done=recording_deleted", status_code=303)


# ------------------------------------------------------------------ the JSON API

class RecordingOut(BaseModel):
    id: str
    started: datetime
    direction: str = Field(description="`in`: a call to the user; `out`: a call from the user's device.")
    other: str = Field(description="The other party's number (empty when unknown).")
    seconds: int
    audio: str = Field(description="The WAV file: GET with the same authentication.")


class RecordingSettings(BaseModel):
    enabled: bool = Field(description="Whether the user's calls are recorded (both parties hear an announcement).")


class RecordingsOut(RecordingSettings):
    recordings: list[RecordingOut]


def _out(found: Recording) -> RecordingOut:
    return RecordingOut(id=found.id, started=found.started, direction=found.direction, other=found.other,
                        seconds=found.seconds, audio=f"/api/v1/recording/recordings/{found.id}/audio")


@api.get("", response_model=RecordingsOut)
async def api_recordings(who: CurrentViewer, deps: Services) -> RecordingsOut:
    """The switch and the user's recordings, newest first."""
    enabled = await run_blocking(deps.state.recording_state.recording, who.tenant_id, who.user_id)
    found = await run_blocking(files(deps).recordings, who.tenant_id, who.user_id, deps.state.store.now())
    return RecordingsOut(enabled=enabled, recordings=[_out(r) for r in found])


@api.put("", response_model=RecordingSettings)
async def api_switch(body: RecordingSettings, who: CurrentViewer, deps: Services) -> RecordingSettings:
    """Turns recording of the user's calls on or off (422 when the user's organisation does not
    allow recording)."""
    return RecordingSettings(enabled=await _set(deps, who, body.enabled))


@api.get("/recordings/{recording_id}/audio", responses={200: {"content": {"audio/wav": {}}}, 404: {}})
async def api_audio(recording_id: RecordingId, who: CurrentViewer, deps: Services, download: bool = False) -> Response:
    """One of the user's recordings as WAV."""
    return _audio(await _own(deps, who, recording_id), download)


@api.delete("/recordings/{recording_id}", status_code=204, responses={404: {}})
async def api_delete(recording_id: RecordingId, who: CurrentViewer, deps: Services) -> Response:
    """Deletes one of the user's recordings."""
    await _delete(deps, who, recording_id)
    return Response(status_code=204)
