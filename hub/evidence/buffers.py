"""One camera's pre-alarm buffer: its packet source, its ring, and the clips waiting on it.

A clip being recorded does not poll the ring: it registers a `ClipWatch`, and the
source's thread wakes it (through the event loop) when a packet it waits for
arrives — the first one after the press (so the press can be placed) and the
picture that completes the post-roll — so a clip ends as soon as its last packet
is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from adapters.media import MediaPacket, PacketPull, PacketRing, PacketSource, StreamHeader
from adapters.media.spill import SpillRing

__all__ = ["CameraBuffer", "ClipWatch", "RingHolds", "SourceOpener", "open_pull"]

#: Opens the source of one camera: (camera id, stream URL, label for the log).
SourceOpener = Callable[[str, str, str], PacketSource]


def open_pull(camera_id: str, url: str, label: str) -> PacketSource:
    """The default source: a PyAV pull of the URL (RTSP, RTSPS, HTTP...)."""
    return PacketPull(camera_id, url, label=label)


class ClipWatch:
    """A clip waiting for packets of one buffer; woken from the source's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, press: float) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self._flag = threading.Event()  # set while a wake-up is on its way
        self.press = press
        self.placed = False
        self.until_s = float("inf")  # video seconds that complete the clip

    def seen(self, packet: MediaPacket | None) -> None:
        """Called on the source's thread for each packet (None: the source restarted)."""
        if packet is not None:
            if self.placed:
                if not packet.video:
                    return
                tb = packet.time_base
                if packet.pts * tb.numerator / tb.denominator < self.until_s:
                    return
            elif packet.received <= self.press:
                return
        if not self._flag.is_set():
            self._flag.set()
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout_s: float) -> None:
        """Until a packet the clip waits for arrived, or `timeout_s`."""
        # A timeout is the periodic wake-up: the clip writes what has come meanwhile.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), max(timeout_s, 0.0))
        self._event.clear()
        self._flag.clear()


class CameraBuffer:
    """One camera's source and ring; the clips watching it."""

    def __init__(self, camera_id: str, url: str, ring: PacketRing, source: PacketSource) -> None:
        self.camera_id = camera_id
        self.url = url
        self.ring = ring
        self.source = source
        self._watches: tuple[ClipWatch, ...] = ()
        self._lock = threading.Lock()
        source.add_tap(self._tap)

    def _tap(self, packet: MediaPacket | None, header: StreamHeader | None) -> None:
        if packet is None:
            self.ring.reset(header)
        else:
            self.ring.push(packet)
        for watch in self._watches:
            watch.seen(packet)

    def close(self) -> None:
        """Stop the source and drop what the ring holds (blocking: run it in a thread)."""
        self.source.stop()
        if isinstance(self.ring, SpillRing):
            self.ring.close()

    @contextmanager
    def watch(self, press: float) -> Iterator[ClipWatch]:
        """Register a clip's watch for as long as the clip records."""
        watch = ClipWatch(asyncio.get_running_loop(), press)
        with self._lock:
            self._watches = (*self._watches, watch)
        try:
            yield watch
        finally:
            with self._lock:
                self._watches = tuple(w for w in self._watches if w is not watch)


class RingHolds:
    """Rings held from the moment the hub hears of an alarm until each linked camera's
    clip has read its pre-roll: setting up dozens of clips (rows, reads) takes seconds
    in a storm, and the pictures before the press must not age out meanwhile."""

    def __init__(self, buffers: Iterable[CameraBuffer]) -> None:
        self._rings: dict[str, PacketRing] = {}
        for buffer in buffers:
            buffer.ring.hold()
            self._rings[buffer.camera_id] = buffer.ring

    def release(self, camera_id: str) -> None:
        """Let one camera's ring age again (its clip has its pre-roll, or needs none)."""
        ring = self._rings.pop(camera_id, None)
        if ring is not None:
            ring.release()

    def keep_only(self, camera_ids: Iterable[str]) -> None:
        """Release every ring but those of `camera_ids`."""
        keep = set(camera_ids)
        for camera_id in [c for c in self._rings if c not in keep]:
            self.release(camera_id)

    def release_all(self) -> None:
        for camera_id in list(self._rings):
            self.release(camera_id)
