"""A device's live stream for the simulator: GStreamer makes MPEG-PS, this sends it as RTP.

`gst-launch-1.0` encodes a moving test picture (`videotestsrc pattern=ball !
x264enc ! mpegpsmux`) and writes the program stream to its stdout; the PS is cut
at pack headers (00 00 01 BA), each pack sent as RTP packets of payload type 96
with the SSRC the platform's `y=` line asked for, a 90 kHz timestamp and the
marker on a pack's last packet — over UDP, or over TCP with RFC 4571 framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import Awaitable, Callable

from adapters.gb28181.rtp import RtpPacket, frame_rtp
from adapters.gb28181.sdp import MediaAnswer

__all__ = ["GST_PIPELINE", "PsRtpSender", "gst_available", "start_gst_stream"]

GST_PIPELINE = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=300"
    " ! video/x-h264,profile=baseline ! mpegpsmux ! fdsink fd=1"
)
_PACK = b"\x00\x00\x01\xba"
_PAYLOAD = 1400


def gst_available() -> bool:
    """True when gst-launch-1.0 is installed."""
    return shutil.which("gst-launch-1.0") is not None


class PsRtpSender:
    """Cuts a PS byte stream into packs and sends each as RTP."""

    def __init__(self, send: Callable[[bytes], None], ssrc: int, *, tcp: bool = False) -> None:
        self._send = send
        self._ssrc = ssrc & 0xFFFFFFFF
        self._tcp = tcp
        self._sequence = itertools.count()
        self._buffer = bytearray()
        self.packets = 0

    def feed(self, data: bytes) -> None:
        """Add PS bytes; every complete pack goes out."""
        self._buffer += data
        while True:
            start = self._buffer.find(_PACK)
            if start < 0:
                del self._buffer[: max(0, len(self._buffer) - 3)]
                return
            end = self._buffer.find(_PACK, start + 4)
            if end < 0:
                if start:
                    del self._buffer[:start]
                return
            self._send_pack(bytes(self._buffer[start:end]))
            del self._buffer[:end]

    def _send_pack(self, pack: bytes) -> None:
        timestamp = int(time.monotonic() * 90_000) & 0xFFFFFFFF
        chunks = [pack[i : i + _PAYLOAD] for i in range(0, len(pack), _PAYLOAD)]
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


async def start_gst_stream(offer: MediaAnswer, ssrc: int) -> Callable[[], Awaitable[None]]:
    """Stream a test picture as PS/RTP to where `offer` says; returns the stop function."""
    loop = asyncio.get_running_loop()
    process = await asyncio.create_subprocess_exec(
        "gst-launch-1.0",
        "-q",
        *GST_PIPELINE.split(),
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

    async def pump() -> None:
        assert process.stdout is not None  # noqa: S101 - created with a pipe
        while True:
            data = await process.stdout.read(65536)
            if not data:
                return
            sender.feed(data)
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
