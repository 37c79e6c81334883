"""WebRTC live view: one RTSP pull per camera relayed to every browser viewer (aiortc)."""

from adapters.webrtc.models import (
    LiveAnswer,
    LiveLimits,
    LiveRefused,
    offer_accepts_h264,
)
from adapters.webrtc.relay import LiveRelay, SourceOpener

__all__ = [
    "LiveAnswer",
    "LiveLimits",
    "LiveRefused",
    "LiveRelay",
    "SourceOpener",
    "offer_accepts_h264",
]
