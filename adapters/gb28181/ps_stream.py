"""A device's live stream for the simulator: GStreamer makes MPEG-PS, this sends it as RTP.

`gst-launch-1.0` encodes a moving test picture (`videotestsrc pattern=ball !
x264enc ! mpegpsmux`) and writes the program stream to its stdout; the PS is cut
into one PS frame per picture (as GB/T 28181 devices send it), each sent as RTP
packets of payload type 96 with the SSRC the platform's `y=` line asked for, the
picture's 90 kHz PTS as timestamp and the marker on its last packet — over UDP,
or over TCP with RFC 4571 framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import Awaitable, Callable

from adapters.gb28181.ps_mux import AccessUnits, ps_frame
from adapters.gb28181.rtp import RtpPacket, frame_rtp
from adapters.gb28181.sdp import MediaAnswer

__all__ = [
    "GST_H265_PIPELINE",
    "GST_PIPELINE",
    "PsRtpSender",
    "gst_available",
    "start_gst_stream",
]

GST_PIPELINE = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=300"
    " ! video/x-h264,profile=baseline ! mpegpsmux ! fdsink fd=1"
)
#: H.265 as an Annex B byte stream (mpegpsmux does not take H.265: `ps_mux` wraps it).
GST_H265_PIPELINE = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=300"
    " ! video/x-h265,stream-format=byte-stream ! fdsink fd=1"
)
_FRAME_TICKS = 90_000 // 15
_PACK = b"\x00\x00\x01\xba"
_PAYLOAD = 1400


def gst_available() -> bool:
    """True when gst-launch-1.0 is installed."""
    return shutil.which("gst-launch-1.0") is not None


class PsRtpSender:
    """Cuts a PS byte stream into one PS frame per video picture and sends each as RTP.

    GB/T 28181 (annex C) has a device wrap every video frame in its own PS pack
    (pack header, on key frames the system header and stream map, then the PES),
    sent as RTP packets sharing the picture's 90 kHz timestamp with the marker on
    the last. `mpegpsmux` writes a pack header only every ~0.7 s, so the stream is
    cut at each video PES that carries a PTS (the first PES of a picture) as well;
    a picture without a pack header of its own gets the latest one in front.
    """

    def __init__(self, send: Callable[[bytes], None], ssrc: int, *, tcp: bool = False) -> None:
        self._send = send
        self._ssrc = ssrc & 0xFFFFFFFF
        self._tcp = tcp
        self._sequence = itertools.count()
        self._buffer = bytearray()
        self._pack_header = b""
        self.packets = 0
        self.frames = 0

    def feed(self, data: bytes) -> None:
        """Add PS bytes; every complete picture goes out."""
        self._buffer += data
        while True:
            start = _next_frame(self._buffer, 0, picture=True)
            if start < 0:
                del self._buffer[: max(0, len(self._buffer) - 3)]
                return
            if start:
                del self._buffer[:start]
            end = _next_frame(self._buffer, 4, picture=self._buffer[3] != 0xBA)
            if end < 0:
                return
            self._send_frame(bytes(self._buffer[:end]))
            del self._buffer[:end]

    def _send_frame(self, frame: bytes) -> None:
        if frame.startswith(_PACK):
            self._pack_header = frame[: _pack_header_length(frame)]
        elif self._pack_header:
            frame = self._pack_header + frame
        else:
            return  # nothing before the stream's first pack header
        pts = _first_pts(frame)
        timestamp = (pts if pts is not None else int(time.monotonic() * 90_000)) & 0xFFFFFFFF
        chunks = [frame[i : i + _PAYLOAD] for i in range(0, len(frame), _PAYLOAD)]
        for index, chunk in enumerate(chunks):
            packet = bytes(
                RtpPacket(
                    96,
                    next(self._sequence) & 0xFFFF,
                    timestamp,
                    self._ssrc,
                    index == len(chunks) - 1,
                    chunk,
                )
            )
            self._send(frame_rtp(packet) if self._tcp else packet)
            self.packets += 1
        self.frames += 1


def _pack_header_length(data: bytes) -> int:
    if len(data) >= 14 and data[4] & 0xC0 == 0x40:  # MPEG-2: 14 bytes plus stuffing
        return 14 + (data[13] & 0x07)
    return 12  # MPEG-1


def _next_frame(data: bytearray, offset: int, *, picture: bool) -> int:
    """Where the next picture's PS begins at or after `offset`: a pack header, or a video
    PES with a PTS (a picture's first PES) once the current one has its picture."""
    position = offset
    while True:
        position = data.find(b"\x00\x00\x01", position)
        if position < 0 or position + 8 > len(data):
            return -1
        code = data[position + 3]
        if code == 0xBA:
            return position
        if 0xE0 <= code <= 0xEF and data[position + 7] & 0x80:
            if picture:
                return position
            picture = True
        position += 3


def _first_pts(frame: bytes) -> int | None:
    """The PTS of the first video PES of a PS frame (90 kHz), if it has one."""
    position = frame.find(b"\x00\x00\x01\xe0")
    if position < 0 or position + 14 > len(frame) or not frame[position + 7] & 0x80:
        return None
    b = frame[position + 9 : position + 14]
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


class _H265Muxer:
    """H.265 Annex B bytes in, PS frames (annex C) out to a `PsRtpSender`."""

    def __init__(self, sender: PsRtpSender) -> None:
        self._sender = sender
        self._units = AccessUnits("h265")
        self._pts = 0

    def feed(self, data: bytes) -> None:
        for unit in self._units.feed(data):
            self._pts += _FRAME_TICKS
            self._sender.feed(ps_frame(unit.data, self._pts, codec="h265", keyframe=unit.keyframe))


async def start_gst_stream(
    offer: MediaAnswer, ssrc: int, *, pattern: str = "ball", codec: str = "h264"
) -> Callable[[], Awaitable[None]]:
    """Stream a test picture (a `videotestsrc` pattern: ball, snow, black…) in H.264
    (`mpegpsmux`) or H.265 (`ps_mux`) as PS/RTP to where `offer` says; returns the stop
    function."""
    if not pattern.isalnum():
        raise ValueError(f"not a videotestsrc pattern: {pattern!r}")
    if codec not in ("h264", "h265"):
        raise ValueError(f"codec must be h264 or h265, not {codec!r}")
    pipeline = GST_PIPELINE if codec == "h264" else GST_H265_PIPELINE
    loop = asyncio.get_running_loop()
    process = await asyncio.create_subprocess_exec(
        "gst-launch-1.0",
        "-q",
        *pipeline.replace("pattern=ball", f"pattern={pattern}").split(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    writer: asyncio.StreamWriter | None = None
    udp: asyncio.DatagramTransport | None = None
    if offer.tcp:
        _, writer = await asyncio.open_connection(offer.host, offer.port)
        tcp_writer = writer
        sender = PsRtpSender(tcp_writer.write, ssrc, tcp=True)
    else:
        udp, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(offer.host, offer.port)
        )
        udp_transport = udp
        sender = PsRtpSender(lambda data: udp_transport.sendto(data), ssrc)
    source: PsRtpSender | _H265Muxer = sender if codec == "h264" else _H265Muxer(sender)

    async def pump() -> None:
        assert process.stdout is not None  # noqa: S101 - created with a pipe
        while True:
            data = await process.stdout.read(65536)
            if not data:
                return
            source.feed(data)
            if writer is not None:
                await writer.drain()

    task = asyncio.create_task(pump())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
        if writer is not None:
            writer.close()
        if udp is not None:
            udp.close()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

    return stop
