"""Evidence clips of alarms, served only to callers whose scope holds the alarm."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from hub.api.deps import get_evidence
from hub.auth.guards import Principal, Role, not_found, require
from hub.evidence.schemas import BufferOut, ClipOut, ShortfallOut
from hub.evidence.service import EvidenceService

__all__ = ["router"]

router = APIRouter(prefix="/api/evidence", tags=["evidence"])

Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DISPATCHER))]
Maintainer = Annotated[Principal, Depends(require(Role.MAINTENANCE, Role.OPERATOR))]
Evidence = Annotated[EvidenceService, Depends(get_evidence)]


@router.get(
    "/alarms/{alarm_id}/clips",
    response_model=list[ClipOut],
    responses={404: {"description": "no such alarm in the caller's scope"}},
)
async def alarm_clips(alarm_id: uuid.UUID, principal: Reader, evidence: Evidence) -> list[ClipOut]:
    """The evidence clips of an alarm (recording, complete or failed)."""
    path = await evidence.alarm_path(alarm_id)
    if path is None or not principal.can_see(path[0]):
        raise not_found("alarm")
    return [ClipOut.of(row) for row in await evidence.clips(alarm_id)]


@router.get(
    "/clips/{clip_id}",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "the MP4 (byte ranges served)"},
        404: {"description": "no such clip in the caller's scope"},
    },
)
async def clip_file(
    clip_id: uuid.UUID,
    request: Request,
    principal: Reader,
    evidence: Evidence,
    download: Annotated[bool, Query(description="as an attachment (save dialog)")] = False,
) -> FileResponse:
    """One clip's MP4. Playing or downloading it is recorded in the audit log."""
    row = await evidence.clip(clip_id)
    if row is None or not principal.can_see(row.jurisdiction_path):
        raise not_found("clip")
    path = evidence.path_of(row)
    if path is None:
        raise not_found("clip")
    # A player asks for byte ranges while it scrubs: the first request is the viewing.
    range_header = request.headers.get("range", "")
    if not range_header or range_header.replace(" ", "").startswith("bytes=0-"):
        await evidence.record_viewing(principal, row, download=download)
    name = f"alarm-{row.alarm_id}-{row.camera_id}.mp4"
    return FileResponse(
        path,
        media_type=row.content_type,
        filename=name,
        content_disposition_type="attachment" if download else "inline",
        headers={"cache-control": "private, no-store", "x-content-type-options": "nosniff"},
    )


@router.get("/buffers", response_model=list[BufferOut])
async def buffers(principal: Maintainer, evidence: Evidence) -> list[BufferOut]:
    """Every camera's pre-alarm buffer: connected, seconds and bytes held (hub-wide view)."""
    if not principal.sees_everything:
        visible = await evidence.visible_cameras(principal)
        return [BufferOut.of(b) for b in evidence.buffered() if b.camera_id in visible]
    return [BufferOut.of(b) for b in evidence.buffered()]


@router.get("/shortfalls", response_model=list[ShortfallOut])
async def shortfalls(principal: Maintainer, evidence: Evidence) -> list[ShortfallOut]:
    """School panic buttons in the caller's scope short of DB15/T 3968 (address,
    coordinates, at least two linked cameras with a stream)."""
    return [ShortfallOut.of(item) for item in await evidence.shortfalls(principal)]
