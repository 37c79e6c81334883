"""A live-view track fed by a pull that already exists (I/O: asyncio + aiortc).

The hub pulls each buffered camera once (the pre-alarm buffer's pull); a
passthrough viewer of that camera is served from the same packets instead of a
second RTSP connection. Any thread may `feed` H.264/H.265 Annex B access units;
the track hands them to aiortc as `av.Packet`s, from the next key frame on,
dropping the oldest when a slow viewer falls behind (live video, not a recording).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["SharedPlayer", "SharedVideoTrack"]

log = logging.getLogger(__name__)

_QUEUE = 120  # a few seconds of pictures
if TYPE_CHECKING:
    _Packet = av.Packet[Any]


class SharedVideoTrack(MediaStreamTrack):
    """Video packets of a shared pull, as an aiortc track (passthrough only)."""

    kind = "video"

    def __init__(self, on_stop: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._feeder_loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Packet | None] = asyncio.Queue(_QUEUE)
        self._started = False
        self._on_stop = on_stop
        self.dropped = 0

    def feed(self, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        """Offer one video access unit (thread-safe, never blocks)."""
        if not self._started and not keyframe:
            return
        self._started = True
        self._feeder_loop.call_soon_threadsafe(self._put, data, pts, time_base, keyframe)

    def _put(self, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        packet = av.Packet(data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = time_base
        packet.is_keyframe = keyframe
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(packet)

    async def recv(self) -> _Packet:
        """The next access unit; raises MediaStreamError once stopped."""
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        """Stop receiving (the shared pull goes on for its other users)."""
        if self.readyState == "live" and self._on_stop is not None:
            self._on_stop()
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


class SharedPlayer:
    """What the relay expects of a player: `.video` and `.audio` tracks."""

    def __init__(self, video: SharedVideoTrack) -> None:
        self.video = video
        self.audio = None
