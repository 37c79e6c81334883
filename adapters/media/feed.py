"""A stream whose bytes the caller pushes (I/O): demuxed by PyAV in a thread, like a pull.

A GB/T 28181 channel's MPEG-PS arrives as RTP that the hub reassembles itself;
`StreamFeed` takes those bytes (`write`, bounded: past `max_bytes` waiting it drops
rather than grows), demuxes them with PyAV without decoding and gives every packet
to its taps exactly as `PacketPull` does (same `PacketTap`, same `StreamHeader`),
so the pre-alarm ring and passthrough viewers take a pushed stream like a pulled
one. While at least one frame tap is attached, the same thread also decodes the
video (from the next key frame) and hands each picture to the frame taps; with
none attached nothing is decoded. `on_end` hears (on the thread) that the stream
ended: closed, unreadable or broken off.

The container is opened with a 32-byte probe and no analysis: the stream's
parameters come from its first PES headers and picture (a longer probe, or
`fflags=nobuffer`, which drops the probed packets, costs a whole group of pictures
before the first one shows).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from adapters.media.pull import stream_header
from adapters.media.ring import MediaPacket, StreamHeader, Timeline
from adapters.media.source import PacketTap

__all__ = ["OPEN_OPTIONS", "FrameTap", "StreamFeed"]

log = logging.getLogger(__name__)

#: Receives each decoded picture (an `av.VideoFrame`). Runs on the feed's thread: it
#: must be quick and must not block.
FrameTap = Callable[[Any], None]

OPEN_OPTIONS = {"probesize": "32", "analyzeduration": "0"}
_MAX_BYTES = 8 * 1024 * 1024


class _Pipe:
    """Bytes from the caller to the demux thread; bounded, blocking reads."""

    def __init__(self, max_bytes: int) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._max = max_bytes
        self._closed = False
        self._ready = threading.Condition()
        self.dropped = 0

    def write(self, data: bytes) -> bool:
        with self._ready:
            if self._closed:
                return False
            if self._size + len(data) > self._max:
                self.dropped += 1  # the demuxer is stuck: drop rather than grow
                return False
            self._chunks.append(data)
            self._size += len(data)
            self._ready.notify()
            return True

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._ready:
            while not self._chunks and not self._closed:
                self._ready.wait(1.0)
            if not self._chunks:
                return b""
            out = bytearray()
            while self._chunks and (size < 0 or len(out) < size):
                chunk = self._chunks.popleft()
                need = len(chunk) if size < 0 else size - len(out)
                out += chunk[:need]
                if need < len(chunk):
                    self._chunks.appendleft(chunk[need:])
            self._size -= len(out)
            return bytes(out)


class StreamFeed:
    """Demuxes pushed container bytes (`format`, e.g. `mpeg` for PS) in a daemon thread."""

    def __init__(
        self,
        name: str,
        *,
        format: str,
        max_bytes: int = _MAX_BYTES,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.on_end = on_end
        self._format = format
        self._pipe = _Pipe(max_bytes)
        self._taps: list[PacketTap] = []
        self._frame_taps: list[FrameTap] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.header: StreamHeader | None = None
        self.connected = False
        self.ended = False
        self.last_error: str | None = None
        self.codec: str | None = None
        self.packets = 0
        self.frames_decoded = 0

    @property
    def dropped_writes(self) -> int:
        """Writes refused because the demuxer fell behind by `max_bytes`."""
        return self._pipe.dropped

    # -- taps ---------------------------------------------------------------

    def add_tap(self, tap: PacketTap) -> None:
        """Give every further packet to `tap` (with the header first, once known)."""
        with self._lock:
            self._taps = [*self._taps, tap]
            header = self.header
        if header is not None:
            tap(None, header)

    def remove_tap(self, tap: PacketTap) -> None:
        """Stop giving packets to `tap`."""
        with self._lock:
            self._taps = [t for t in self._taps if t is not tap]

    def add_frame_tap(self, tap: FrameTap) -> None:
        """Decode the video (from the next key frame) and give `tap` every picture."""
        with self._lock:
            self._frame_taps = [*self._frame_taps, tap]

    def remove_frame_tap(self, tap: FrameTap) -> None:
        """Stop giving pictures to `tap`; with no frame tap left decoding stops."""
        with self._lock:
            self._frame_taps = [t for t in self._frame_taps if t is not tap]

    @property
    def decoding(self) -> bool:
        """True while a frame tap is attached."""
        return bool(self._frame_taps)

    # -- running ------------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """Push container bytes (any thread); False when dropped (stalled or closed)."""
        return self._pipe.write(data)

    def start(self) -> None:
        """Start the demux thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"feed-{self.name}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """No more bytes: the thread drains what it has and ends."""
        self._pipe.close()

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for the thread after `close`."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            self._demux()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            log.info("stream %s ended: %s", self.name, self.last_error)
        finally:
            self.connected = False
            self.ended = True
            if self.on_end is not None:
                self.on_end()

    def _demux(self) -> None:
        container: Any = av.open(self._pipe, format=self._format, options=dict(OPEN_OPTIONS))
        try:
            streams = [s for s in container.streams if s.type in ("video", "audio")]
            video = next((s for s in streams if s.type == "video"), None)
            if video is None:
                raise ValueError("the stream has no video track")
            self.codec = str(video.codec_context.name)
            # One decoding thread: frame threading holds each picture back by a frame
            # per thread, and a live picture wants to be shown at once.
            video.codec_context.thread_count = 1
            index = {stream.index: i for i, stream in enumerate(streams)}
            self.connected = True
            timeline = Timeline()
            decoding = False
            for packet in container.demux(*streams):
                if packet.size == 0 or packet.pts is None:
                    continue
                is_video = packet.stream.type == "video"
                if self.header is None:
                    if not is_video:
                        continue
                    header = stream_header(streams, packet)
                    with self._lock:
                        self.header = header
                        taps = self._taps
                    for tap in taps:
                        tap(None, header)
                self.packets += 1
                media = timeline.place(
                    MediaPacket(
                        track=index[packet.stream.index],
                        pts=int(packet.pts),
                        dts=None if packet.dts is None else int(packet.dts),
                        duration=int(packet.duration or 0),
                        time_base=packet.time_base or Fraction(1, 90000),
                        keyframe=bool(packet.is_keyframe),
                        data=bytes(packet),
                        received=time.time(),
                        video=is_video,
                    )
                )
                for tap in self._taps:
                    try:
                        tap(media, None)
                    except Exception:
                        log.exception("packet tap of stream %s failed", self.name)
                if not is_video:
                    continue
                frame_taps = self._frame_taps
                if not frame_taps:
                    decoding = False
                    continue
                if not decoding and not packet.is_keyframe:
                    continue  # a picture needs its key frame
                decoding = True
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged picture; the next ones may decode
                for frame in frames:
                    self.frames_decoded += 1
                    for frame_tap in frame_taps:
                        frame_tap(frame)
        finally:
            container.close()
