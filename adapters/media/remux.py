"""Writing a clip to MP4 (I/O): video remuxed as received, never re-encoded.

`ClipWriter` writes a clip while it is being cut: the pre-roll as soon as the
press is placed, the post-roll as it arrives, so closing the clip costs only
the MP4 index (moved to the front so a browser can play while it loads) and the
digests. Audio that MP4 cannot carry portably — G.711 A-law/µ-law, the usual
RTSP camera microphone — is transcoded to AAC (audio only: a few kbit/s of
samples, cheap beside the video that is copied untouched). An audio codec that
can be neither carried nor decoded is left out and named in `skipped_tracks`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from adapters.media.clip import ClipCut, Placed, rebased
from adapters.media.ring import StreamHeader

__all__ = ["TRANSCODED_AUDIO", "ClipFile", "ClipWriter", "write_mp4"]

_CHUNK = 1 << 20
#: Audio codecs whose samples are decoded and encoded to AAC for the MP4.
TRANSCODED_AUDIO = frozenset({"pcm_alaw", "pcm_mulaw", "adpcm_g726", "adpcm_g726le"})
_AAC_BIT_RATE = 32_000


@dataclass(frozen=True, slots=True)
class ClipFile:
    """A written clip: its size and digests (SHA-256 for the hub, SHA-1 for CAP)."""

    path: Path
    size: int
    sha256: str
    sha1: str
    duration_s: float
    packets: int
    skipped_tracks: tuple[str, ...] = ()  # kind:codec of tracks MP4 cannot carry
    transcoded_tracks: tuple[str, ...] = ()  # kind:codec->codec of tracks re-encoded


class _Transcoder:
    """One audio track decoded from the camera's codec and encoded to AAC."""

    def __init__(self, output: Any, source: Any) -> None:
        self._decoder = source.codec_context
        rate = int(self._decoder.sample_rate or 8000)
        self.stream = output.add_stream("aac", rate=rate)
        self.stream.codec_context.layout = "mono" if self._decoder.channels == 1 else "stereo"
        self.stream.codec_context.bit_rate = _AAC_BIT_RATE
        self.label = f"audio:{self._decoder.name}->aac"

    def write(self, output: Any, packet: Any) -> int:
        """Decode one camera packet and mux the AAC it yields; packets muxed."""
        muxed = 0
        for frame in self._decoder.decode(packet):
            for out in self.stream.encode(frame):
                output.mux(out)
                muxed += 1
        return muxed

    def flush(self, output: Any) -> None:
        """Mux what the encoder still holds."""
        for out in self.stream.encode(None):
            output.mux(out)


class ClipWriter:
    """An MP4 being written from a clip's rebased packets (`ClipCutter.feed`).

    Not thread-safe: one thread writes at a time (the hub runs each call in a
    worker thread, one after another). `close()` finishes the file and returns
    its digests; `abort()` removes what was written.
    """

    def __init__(self, path: Path, header: StreamHeader, *, title: str = "") -> None:
        self.path = path
        self._tmp = path.with_suffix(".part")
        self._template = av.open(io.BytesIO(header.template), format=header.template_format)
        self._streams: list[Any] = []
        self._transcoders: dict[int, _Transcoder] = {}
        self.skipped: list[str] = []
        self.packets = 0
        self._end = 0.0
        try:
            self._output = av.open(
                str(self._tmp), "w", format="mp4", options={"movflags": "+faststart"}
            )
            if title:
                self._output.metadata["title"] = title
            for index, stream in enumerate(self._template.streams):
                self._streams.append(self._add(index, stream, header))
        except Exception:
            self._template.close()
            raise

    def _add(self, index: int, stream: Any, header: StreamHeader) -> Any:
        name = str(stream.codec_context.name)
        if stream.type == "audio" and name in TRANSCODED_AUDIO:
            self._transcoders[index] = _Transcoder(self._output, stream)
            return None
        try:
            out = self._output.add_stream_from_template(stream)
        except ValueError:
            # MP4 cannot carry it and it is not decoded here: the clip goes without it.
            if stream.type == "video":
                raise
            self.skipped.append(f"{stream.type}:{name}")
            return None
        extradata = header.extradata[index] if index < len(header.extradata) else None
        if extradata:
            out.codec_context.extradata = extradata
        return out

    @property
    def transcoded(self) -> tuple[str, ...]:
        """kind:codec->codec of the tracks re-encoded."""
        return tuple(t.label for t in self._transcoders.values())

    def write(self, placed: Iterable[Placed]) -> None:
        """Mux packets already on the clip's timeline."""
        output = self._output
        for packet, pts, dts in placed:
            track = packet.track
            out_packet = av.Packet(packet.data)
            out_packet.time_base = packet.time_base
            out_packet.pts = pts
            out_packet.dts = dts
            out_packet.duration = packet.duration
            transcoder = self._transcoders.get(track)
            if transcoder is not None:
                self.packets += transcoder.write(output, out_packet)
            else:
                stream = self._streams[track] if track < len(self._streams) else None
                if stream is None:
                    continue
                out_packet.stream = stream
                out_packet.is_keyframe = packet.keyframe
                output.mux(out_packet)
                self.packets += 1
            end = (pts + packet.duration) * packet.time_base
            self._end = max(self._end, float(end))

    def close(self) -> ClipFile:
        """Finish the MP4 (index first), digest it, move it in place."""
        try:
            for transcoder in self._transcoders.values():
                transcoder.flush(self._output)
            self._output.close()
        finally:
            self._template.close()
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1()  # noqa: S324 - CAP 1.2 <digest> is defined as SHA-1
        with self._tmp.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                sha256.update(chunk)
                sha1.update(chunk)
        self._tmp.replace(self.path)
        return ClipFile(
            path=self.path,
            size=self.path.stat().st_size,
            sha256=sha256.hexdigest(),
            sha1=sha1.hexdigest(),
            duration_s=self._end,
            packets=self.packets,
            skipped_tracks=tuple(self.skipped),
            transcoded_tracks=self.transcoded,
        )

    def abort(self) -> None:
        """Stop writing and remove the partial file."""
        try:
            # An output that cannot be finished is removed just the same.
            with contextlib.suppress(av.FFmpegError, ValueError, OSError):
                self._output.close()
        finally:
            self._template.close()
            self._tmp.unlink(missing_ok=True)


def write_mp4(path: Path, header: StreamHeader, cut: ClipCut, *, title: str = "") -> ClipFile:
    """Write `cut` as an MP4 in one go (moov first, so a browser can play it while it loads)."""
    writer = ClipWriter(path, header, title=title)
    try:
        writer.write(rebased(cut))
    except Exception:
        writer.abort()
        raise
    return writer.close()
