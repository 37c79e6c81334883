"""WebRTC live view: one RTSP pull per camera relayed to every browser viewer (aiortc)."""

from adapters.webrtc.models import (
    LiveAnswer,
    LiveLimits,
    LiveRefused,
    offer_accepts_h264,
)
from adapters.webrtc.relay import LiveRelay, SharedSource, SourceOpener
from adapters.webrtc.shared import SharedPlayer, SharedVideoTrack

__all__ = [
    "LiveAnswer",
    "LiveLimits",
    "LiveRefused",
    "LiveRelay",
    "SharedPlayer",
    "SharedSource",
    "SharedVideoTrack",
    "SourceOpener",
    "offer_accepts_h264",
]
