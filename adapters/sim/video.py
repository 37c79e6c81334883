"""Live video of a simulated camera as an aiortc track (the I/O side of `frames`).

`SimVideoTrack` is a `VideoStreamTrack`: aiortc paces it, encodes it (VP8, or
H.264 when the browser prefers it) and sends it like a camera's decoded stream.
`SimPlayer` gives it the shape of aiortc's `MediaPlayer` (``.video`` / ``.audio``)
so a relay that fans a player out to viewers can serve it unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import av
import cv2
import numpy as np
from aiortc import VideoStreamTrack

from adapters.sim.frames import Frame, SimCameraFleet

__all__ = ["SimPlayer", "SimVideoTrack"]

_FPS = 15


class SimVideoTrack(VideoStreamTrack):
    """A simulated camera's live picture, rendered at the time each frame is sent."""

    def __init__(self, fleet: SimCameraFleet, device_id: str) -> None:
        super().__init__()
        if device_id not in fleet:
            raise KeyError(device_id)
        self._fleet = fleet
        self._device_id = device_id

    async def recv(self) -> av.VideoFrame:
        """The next frame, paced at the track's clock rate."""
        pts, time_base = await self.next_timestamp()
        # Rendering costs a few milliseconds of numpy/OpenCV: keep it off the loop.
        picture = await asyncio.to_thread(self._picture)
        frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
        frame.pts = pts
        frame.time_base = time_base
        return frame

    def _picture(self) -> Frame:
        picture = self._fleet.frame(self._device_id, datetime.now(UTC))
        if picture is not None:
            return picture
        # An offline camera: what a video wall shows for a channel without signal.
        width, height = self._fleet.size
        blank = np.zeros((height, width, 3), np.uint8)
        cv2.putText(blank, "NO SIGNAL", (width // 2 - 90, height // 2), 0, 1.0, (200, 200, 200), 2)
        return blank


class SimPlayer:
    """A simulated camera in the shape of aiortc's `MediaPlayer`: video only."""

    def __init__(self, fleet: SimCameraFleet, device_id: str) -> None:
        self.video: SimVideoTrack | None = SimVideoTrack(fleet, device_id)
        self.audio: None = None
