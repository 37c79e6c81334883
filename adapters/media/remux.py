"""Writing a clip to MP4 by remuxing (I/O): no decoding, no re-encoding."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from adapters.media.clip import ClipCut, rebased
from adapters.media.ring import StreamHeader

__all__ = ["ClipFile", "write_mp4"]

_CHUNK = 1 << 20


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


def write_mp4(path: Path, header: StreamHeader, cut: ClipCut, *, title: str = "") -> ClipFile:
    """Write `cut` as an MP4 (moov first, so a browser can play it while it loads)."""
    template = av.open(io.BytesIO(header.template), format=header.template_format)
    skipped: list[str] = []
    tmp = path.with_suffix(".part")
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as output:
            if title:
                output.metadata["title"] = title
            streams: list[Any] = []
            for index, stream in enumerate(template.streams):
                try:
                    out = output.add_stream_from_template(stream)
                except ValueError:
                    # MP4 cannot carry it (G.711, G.726 audio): the clip goes without it.
                    if stream.type == "video":
                        raise
                    skipped.append(f"{stream.type}:{stream.codec_context.name}")
                    streams.append(None)
                    continue
                extradata = header.extradata[index] if index < len(header.extradata) else None
                if extradata:
                    out.codec_context.extradata = extradata
                streams.append(out)
            written = 0
            end = 0.0
            for packet, pts, dts in rebased(cut):
                if packet.track >= len(streams) or streams[packet.track] is None:
                    continue
                out_packet = av.Packet(packet.data)
                out_packet.stream = streams[packet.track]
                out_packet.time_base = packet.time_base
                out_packet.pts = pts
                out_packet.dts = dts
                out_packet.duration = packet.duration
                out_packet.is_keyframe = packet.keyframe
                output.mux(out_packet)
                written += 1
                end = max(end, float((pts + packet.duration) * packet.time_base))
    finally:
        template.close()
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1()  # noqa: S324 - CAP 1.2 <digest> is defined as SHA-1
    with tmp.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    tmp.replace(path)
    return ClipFile(
        path=path,
        size=path.stat().st_size,
        sha256=sha256.hexdigest(),
        sha1=sha1.hexdigest(),
        duration_s=end,
        packets=written,
        skipped_tracks=tuple(skipped),
    )
