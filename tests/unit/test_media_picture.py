"""A buffered camera's snapshot: the newest key frame of its ring, decoded alone."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from adapters.media import MediaPacket, PacketRing, StreamHeader, key_picture, stream_header


def _stream(tmp_path: Path) -> tuple[StreamHeader, list[MediaPacket]]:
    """Two seconds of 64x48 H.264, a key frame a second; picture n is grey level 4n."""
    path = tmp_path / "grey.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "25", "bf": "2"}
        for n in range(50):
            picture = np.full((48, 64, 3), 4 * n, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
            frame.pts = n
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with av.open(str(path)) as source:
        video = source.streams.video[0]
        raw = [p for p in source.demux(video) if p.size and p.pts is not None]
        header = stream_header([video], raw[0])
        tb = video.time_base or Fraction(1, 25)
        packets = [
            MediaPacket(
                0,
                int(p.pts or 0),
                None if p.dts is None else int(p.dts),
                int(p.duration or 0),
                tb,
                p.is_keyframe,
                bytes(p),
                1000.0 + n / 25,
                True,
            )
            for n, p in enumerate(raw)
        ]
    return header, packets


def _grey(frame: object) -> float:
    return float(frame.to_ndarray(format="gray").mean())  # type: ignore[attr-defined]


def test_the_snapshot_is_the_newest_key_frame_the_ring_holds(tmp_path: Path) -> None:
    header, packets = _stream(tmp_path)
    ring = PacketRing(keep_s=10, max_bytes=1 << 20)
    ring.reset(header)
    for packet in packets:
        ring.push(packet)
    newest = ring.newest_received
    assert newest is not None
    window, _ = ring.window(newest)
    picture = key_picture(header, window)
    assert picture is not None and (picture.width, picture.height) == (64, 48)
    # Picture 25 (grey 100) starts the second group, not picture 0 (black).
    assert abs(_grey(picture) - 100) < 12


def test_no_key_frame_a_damaged_one_or_no_video_gives_no_picture(tmp_path: Path) -> None:
    header, packets = _stream(tmp_path)
    assert key_picture(header, [p for p in packets if not p.keyframe]) is None
    damaged = [packets[0]._replace(data=b"\x00\x00\x00\x01" + bytes(range(256)) * 8)]
    assert key_picture(header, damaged) is None
    assert key_picture(header, [p._replace(video=False) for p in packets]) is None
    assert key_picture(header, []) is None
