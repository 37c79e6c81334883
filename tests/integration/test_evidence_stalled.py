"""A camera whose stream stopped before the press gets no clip that pretends otherwise."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av

from adapters.media import MediaPacket, PacketRing, PacketTap, StreamHeader, stream_header
from hub.evidence.buffers import CameraBuffer
from hub.evidence.recording import record_clip


class _StoppedSource:
    """A source (the project's PacketSource) whose stream stopped: it sends nothing."""

    connected = True
    last_error: str | None = None
    header: StreamHeader | None = None

    def add_tap(self, tap: PacketTap) -> None:
        self.tap = tap

    def remove_tap(self, tap: PacketTap) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self, timeout_s: float = 5.0) -> None:
        pass


def _packets(tmp_path: Path, seconds: int) -> tuple[StreamHeader, list[MediaPacket]]:
    path = tmp_path / "src.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"g": "25"}
        for n in range(seconds * 25):
            frame = av.VideoFrame(64, 64, "yuv420p")
            frame.pts = n
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    start = time.time() - seconds - 20  # the stream stopped 20 s ago
    with av.open(str(path)) as source:
        video = source.streams.video[0]
        raw = [p for p in source.demux(video) if p.size and p.pts is not None]
        header = stream_header([video], raw[0])
        tb = video.time_base or Fraction(1, 25)
        packets = [
            MediaPacket(
                0,
                int(p.pts or 0),
                int(p.dts or 0),
                int(p.duration or 0),
                tb,
                p.is_keyframe,
                bytes(p),
                start + float((p.pts or 0) * tb),
                True,
            )
            for p in sorted(raw, key=lambda p: int(p.dts or 0))
        ]
    return header, packets


async def test_a_stream_that_stopped_before_the_press_gives_a_reason_not_a_clip(
    tmp_path: Path,
) -> None:
    header, packets = _packets(tmp_path, 8)
    buffer = CameraBuffer("cam-1", "rtsp://x/1", PacketRing(35, 12 << 20), _StoppedSource())
    buffer.ring.reset(header)
    for packet in packets:
        buffer.ring.push(packet)
    with ThreadPoolExecutor(2) as executor:
        outcome = await record_clip(
            buffer,
            tmp_path / "clip.mp4",
            press=time.time(),
            pre_s=3,
            post_s=0.5,
            max_bytes=1 << 30,
            late_s=0.5,
            title="",
            clock=time.time,
            stopping=lambda: False,
            executor=executor,
        )
    assert outcome == "the camera sent nothing after the alarm (its stream had stopped)"
    assert not (tmp_path / "clip.mp4").exists() and not (tmp_path / "clip.part").exists()


async def test_a_stream_that_stalls_after_the_press_gives_a_clip_that_says_it_is_short(
    tmp_path: Path,
) -> None:
    # 8 s of pictures whose last 2 s arrived after the press; the post-roll asks for 5 s.
    header, packets = _packets(tmp_path, 8)
    press = packets[0].received + 6.0
    buffer = CameraBuffer("cam-1", "rtsp://x/1", PacketRing(35, 12 << 20), _StoppedSource())
    buffer.ring.reset(header)
    for packet in packets:
        buffer.ring.push(packet)
    with ThreadPoolExecutor(2) as executor:
        outcome = await record_clip(
            buffer,
            tmp_path / "clip.mp4",
            press=press,
            pre_s=3,
            post_s=5,
            max_bytes=1 << 30,
            late_s=0.5,
            title="",
            clock=lambda: press + 5.0,  # the post-roll was due: the stream stalled
            stopping=lambda: False,
            executor=executor,
        )
    assert not isinstance(outcome, str), outcome
    assert not outcome.complete
    assert (tmp_path / "clip.mp4").exists()
    reason = outcome.shortfall(5)
    assert reason is not None
    assert reason.startswith("the post-roll is short: 2 s of 5 s after the alarm"), reason


async def test_a_whole_clip_says_nothing_is_short(tmp_path: Path) -> None:
    header, packets = _packets(tmp_path, 8)
    press = packets[0].received + 4.0
    buffer = CameraBuffer("cam-1", "rtsp://x/1", PacketRing(35, 12 << 20), _StoppedSource())
    buffer.ring.reset(header)
    for packet in packets:
        buffer.ring.push(packet)
    with ThreadPoolExecutor(2) as executor:
        outcome = await record_clip(
            buffer,
            tmp_path / "clip.mp4",
            press=press,
            pre_s=3,
            post_s=2,
            max_bytes=1 << 30,
            late_s=0.5,
            title="",
            clock=lambda: press + 2.0,
            stopping=lambda: False,
            executor=executor,
        )
    assert not isinstance(outcome, str), outcome
    assert outcome.complete
    assert outcome.shortfall(2) is None
