"""Value types of an RTSP stream probe, and URL redaction. Pure: no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from camera_registry.urls import redact_text, redact_url

__all__ = ["BgrFrame", "ProbeFailure", "StreamProbe", "redact_text", "redact_url"]

#: A decoded picture: height x width x 3, uint8, OpenCV's BGR channel order.
BgrFrame = npt.NDArray[np.uint8]

# userinfo in any URL-looking token: scheme://user[:password]@host


class ProbeFailure(StrEnum):
    """Why a probe did not get the pictures it asked for, in a maintainer's words."""

    #: Nothing accepts the connection: refused, no route, unknown host.
    UNREACHABLE = "unreachable"
    #: Something accepts the connection but does not answer in time.
    TIMEOUT = "timeout"
    #: The camera refused the credentials (RTSP 401/403).
    AUTH_FAILED = "auth_failed"
    #: The camera answered but refused the stream (RTSP 404, 5xx, ...).
    REJECTED = "rejected"
    #: The answer was not a usable RTSP session.
    PROTOCOL_ERROR = "protocol_error"
    #: The session has no video track.
    NO_VIDEO = "no_video"
    #: The session opened but not one picture arrived.
    NO_FRAMES = "no_frames"
    #: Some pictures arrived, then the stream stopped sending.
    STALLED = "stalled"
    #: Pictures arrived but could not be decoded.
    DECODE_ERROR = "decode_error"

    @property
    def reachable(self) -> bool:
        """True when the camera answered at the RTSP level despite the failure."""
        return self in _REACHABLE


_REACHABLE = frozenset(
    {
        ProbeFailure.AUTH_FAILED,
        ProbeFailure.REJECTED,
        ProbeFailure.NO_VIDEO,
        ProbeFailure.NO_FRAMES,
        ProbeFailure.STALLED,
        ProbeFailure.DECODE_ERROR,
    }
)


@dataclass(frozen=True, slots=True, eq=False)
class StreamProbe:
    """What one probe of one stream found. `url` is always redacted.

    `frames` are the decoded pictures scaled down for analysis (BGR);
    `snapshot_jpeg` is one full-size picture kept as evidence.
    """

    url: str
    ok: bool
    #: Set when the probe failed, and also when only part of the burst arrived.
    failure: ProbeFailure | None = None
    error: str | None = None
    open_latency_s: float | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frames_requested: int = 0
    frames_decoded: int = 0
    decode_time_s: float = 0.0
    total_time_s: float = 0.0
    frames: tuple[BgrFrame, ...] = field(default=(), repr=False)
    snapshot_jpeg: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if redact_url(self.url) != self.url:
            raise ValueError("StreamProbe.url must be redacted")
        # ok means "at least one picture to judge"; a partial burst (STALLED,
        # DECODE_ERROR after some pictures) is ok and still carries its failure.
        if self.ok != (self.frames_decoded > 0):
            raise ValueError("StreamProbe.ok must be True exactly when frames were decoded")
        if not self.ok and self.failure is None:
            raise ValueError("a failed StreamProbe needs a failure")
        if self.frames_decoded < 0 or self.frames_requested < 0:
            raise ValueError("frame counts must be >= 0")
        for value in (self.open_latency_s, self.fps, self.decode_time_s, self.total_time_s):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError("durations and rates must be finite and >= 0")
        for frame in self.frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError("frames must be HxWx3 uint8 BGR arrays")

    @property
    def reachable(self) -> bool:
        """True when the camera answered at the RTSP level."""
        return self.failure is None or self.failure.reachable
