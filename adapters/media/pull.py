"""One camera pull (I/O): demux a stream with PyAV in a thread and hand its packets on.

The pull opens the URL once, reads video and audio packets without decoding
them, and gives each to every tap (the pre-alarm ring, a live viewer...). It
reconnects with a growing pause when the stream ends or fails; each new
connection resets the taps' timelines with a fresh `StreamHeader`.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from fractions import Fraction
from typing import Any

import av

from adapters.media.ring import MediaPacket, StreamHeader, Timeline
from adapters.media.source import PacketTap

__all__ = ["PacketPull", "PacketTap", "stream_header"]

log = logging.getLogger(__name__)

# Over TCP; a second of probing so every track's parameters (picture size behind an
# audio track, too) are known: a long-lived pull can afford it, a remux needs them.
_RTSP_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1000000"}
_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 30.0


def stream_header(streams: list[Any], first: Any) -> StreamHeader:
    """A header for `streams` (PyAV input streams): their parameters in a small NUT
    template holding one packet (`first`), and each one's raw extradata. NUT takes
    every codec a camera sends (H.264/H.265, AAC, G.711…); what MP4 cannot carry is
    left out when the clip is written."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="nut") as template:
        outs = [template.add_stream_from_template(stream) for stream in streams]
        packet = av.Packet(bytes(first))
        packet.stream = outs[streams.index(first.stream)]
        packet.time_base = first.time_base
        packet.pts = 0
        packet.dts = 0
        template.mux(packet)
    return StreamHeader(
        template=buffer.getvalue(),
        template_format="nut",
        extradata=tuple(stream.codec_context.extradata for stream in streams),
        kinds=tuple(str(stream.type) for stream in streams),
        codecs=tuple(str(stream.codec_context.name) for stream in streams),
    )


class PacketPull:
    """Pulls one stream URL in a daemon thread until `stop()`; feeds every tap.

    A `PacketSource` (adapters/media/source.py)."""

    def __init__(
        self, name: str, url: str, *, open_timeout_s: float = 10.0, label: str | None = None
    ) -> None:
        self.name = name
        self._url = url  # may hold credentials: never logged
        self._label = label or name
        self._open_timeout_s = open_timeout_s
        self._taps: list[PacketTap] = []
        self._taps_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.packets = 0
        self.connections = 0
        self.last_error: str | None = None
        self.header: StreamHeader | None = None

    def add_tap(self, tap: PacketTap) -> None:
        """Give every further packet to `tap` too."""
        with self._taps_lock:
            self._taps = [*self._taps, tap]
        if self.header is not None:
            tap(None, self.header)

    def remove_tap(self, tap: PacketTap) -> None:
        """Stop giving packets to `tap`."""
        with self._taps_lock:
            self._taps = [t for t in self._taps if t is not tap]

    def start(self) -> None:
        """Start the pulling thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"pull-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop pulling and wait (bounded) for the thread."""
        # The demux loop sees the flag at its next packet, or its read times out
        # (closing the container under a reading thread would crash the process).
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _emit(self, packet: MediaPacket | None, header: StreamHeader | None) -> None:
        for tap in self._taps:
            try:
                tap(packet, header)
            except Exception:
                log.exception("packet tap of %s failed", self._label)

    def _run(self) -> None:
        pause = _RETRY_MIN_S
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._pull_once()
            except Exception as exc:
                reason = type(exc).__name__
                # Said once per new reason: an unreachable camera retried every 30 s
                # for days must not fill the log.
                level = logging.DEBUG if reason == self.last_error else logging.INFO
                log.log(level, "pull of %s ended: %s; retrying", self._label, reason)
                self.last_error = reason
            self.connected = False
            if time.monotonic() - started > 60:
                pause = _RETRY_MIN_S
            if self._stop.wait(pause):
                break
            pause = min(pause * 2, _RETRY_MAX_S)

    def _pull_once(self) -> None:
        options = dict(_RTSP_OPTIONS) if self._url.startswith(("rtsp://", "rtsps://")) else {}
        container = av.open(self._url, options=options, timeout=self._open_timeout_s)
        try:
            streams = [s for s in container.streams if s.type in ("video", "audio")]
            if not any(s.type == "video" for s in streams):
                raise ValueError("the stream has no video track")
            index = {stream.index: i for i, stream in enumerate(streams)}
            self.connections += 1
            self.connected = True
            if self.last_error is not None:
                log.info("pull of %s connected again", self._label)
                self.last_error = None
            header: StreamHeader | None = None
            timeline = Timeline()
            # Per demuxed stream: (track, time base, video?). Read once: PyAV makes a new
            # Fraction on every `time_base` access, and this loop runs per packet.
            tracks = {
                stream.index: (
                    index[stream.index],
                    stream.time_base or Fraction(1, 90000),
                    stream.type == "video",
                )
                for stream in streams
            }
            offset, now, stop = timeline.offset, time.time, self._stop
            for packet in container.demux(*streams):
                if stop.is_set():
                    return
                pts = packet.pts
                if pts is None or packet.size == 0:
                    continue
                track, time_base, video = tracks[packet.stream_index]
                if header is None:
                    if not video:
                        continue
                    header = stream_header(streams, packet)
                    self.header = header
                    self._emit(None, header)
                self.packets += 1
                dts, duration, received = packet.dts, packet.duration or 0, now()
                shift = offset(track, pts, dts, duration, time_base, received)
                self._emit(
                    MediaPacket(
                        track,
                        pts + shift,
                        None if dts is None else dts + shift,
                        duration,
                        time_base,
                        packet.is_keyframe,
                        bytes(packet),
                        received,
                        video,
                    ),
                    None,
                )
        finally:
            container.close()
