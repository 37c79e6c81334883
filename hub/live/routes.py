"""WebRTC live view of a camera, for callers who may see it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from hub.api.deps import get_live
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.live.schemas import LiveOffer, LiveOfferAnswer
from hub.live.service import CameraNotVisible, LiveRefused, LiveViews

__all__ = ["router"]

router = APIRouter(prefix="/api/live", tags=["live view"])

Viewer = Annotated[Principal, Depends(require(Role.OPERATOR, Role.MAINTENANCE))]
_STATUS = {"busy_camera": 429, "busy_hub": 429, "bad_offer": 422, "stream_unavailable": 502}


@router.post(
    "/{camera_id}/offer",
    response_model=LiveOfferAnswer,
    responses={404: {"description": "no such camera"}, 429: {"description": "viewer limit"}},
)
async def offer(
    camera_id: str,
    body: LiveOffer,
    request: Request,
    principal: Viewer,
    live: Annotated[LiveViews, Depends(get_live)],
) -> LiveOfferAnswer:
    """Start watching a camera: send the browser's offer, get the hub's answer."""
    try:
        started = await live.start(principal, camera_id, body.sdp, body.type)
    except CameraNotVisible as exc:
        raise not_found("camera") from exc
    except LiveRefused as exc:
        raise Problem(_STATUS.get(exc.reason, 503), "Live view refused", exc.detail) from exc
    answer = started.answer
    return LiveOfferAnswer(
        viewer_id=answer.viewer_id, sdp=answer.sdp, type=answer.type, passthrough=answer.passthrough
    )


@router.delete("/viewers/{viewer_id}", status_code=204, response_class=Response)
async def stop(
    viewer_id: str, principal: Viewer, live: Annotated[LiveViews, Depends(get_live)]
) -> Response:
    """Stop watching (the camera's pull closes when its last viewer has left)."""
    if not await live.stop_viewer(principal, viewer_id):
        raise not_found("viewer")
    return Response(status_code=204)
