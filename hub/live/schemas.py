"""Bodies of the WebRTC live-view endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LiveOffer", "LiveOfferAnswer"]


class LiveOffer(BaseModel):
    """The browser's SDP offer (`RTCPeerConnection.localDescription`)."""

    model_config = ConfigDict(extra="forbid")

    sdp: str = Field(min_length=10, max_length=65536)
    type: str = Field("offer", pattern="^offer$")


class LiveOfferAnswer(BaseModel):
    """The hub's SDP answer; DELETE /api/live/viewers/{viewer_id} ends the view."""

    viewer_id: str
    sdp: str
    type: str
    passthrough: bool = Field(description="True when the camera's H.264 is relayed as it is.")
