"""Pure pieces of the live view: limits, answers, SDP inspection, stream URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "LiveAnswer",
    "LiveLimits",
    "LiveRefused",
    "check_offer",
    "offer_accepts_h264",
]

_MAX_SDP = 64 * 1024
_H264_RTPMAP = re.compile(r"^a=rtpmap:\d+ H264/90000", re.IGNORECASE | re.MULTILINE)


class LiveRefused(Exception):
    """A live-view request that cannot be served; `reason` is one of
    `busy_camera`, `busy_hub`, `bad_offer`, `stream_unavailable`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LiveLimits:
    """How many viewers one camera and the whole hub may serve at once."""

    per_camera: int = 8
    total: int = 32

    def __post_init__(self) -> None:
        if self.per_camera < 1 or self.total < 1:
            raise ValueError("viewer limits must be at least 1")
        if self.per_camera > self.total:
            raise ValueError("per-camera limit cannot exceed the total")


@dataclass(frozen=True, slots=True)
class LiveAnswer:
    """The hub's SDP answer for one viewer and the id to stop it with."""

    viewer_id: str
    sdp: str
    type: str
    passthrough: bool


def check_offer(sdp: str, sdp_type: str) -> None:
    """Refuse an offer that is not a bounded SDP offer with a video section."""
    if sdp_type != "offer":
        raise LiveRefused("bad_offer", "expected an SDP offer")
    if not sdp or len(sdp) > _MAX_SDP or not sdp.startswith("v=0"):
        raise LiveRefused("bad_offer", "not an SDP document")
    if "m=video" not in sdp:
        raise LiveRefused("bad_offer", "the offer has no video section")


def offer_accepts_h264(sdp: str) -> bool:
    """True when the browser's offer lists H.264, so the camera's stream can pass through."""
    return _H264_RTPMAP.search(sdp) is not None
