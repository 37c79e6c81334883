"""RTP packets and MPEG-PS frame reassembly for GB/T 28181 media, sans I/O.

A device streams MPEG-PS in RTP (payload type 96), one PS frame spread over
packets sharing a timestamp, the last one marked. `PsReassembler` rebuilds the
frames and drops what a hostile or broken sender produces: packets of another
SSRC, packets that are not RTP, frames that do not start with an MPEG start
code, and frames larger than `max_frame_bytes` — memory stays bounded by that
cap whatever arrives. `Rfc4571Decoder` frames RTP out of a TCP stream (two-byte
length prefix, RFC 4571).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "MAX_FRAME_BYTES",
    "PsFrame",
    "PsReassembler",
    "ReassemblyCounters",
    "Rfc4571Decoder",
    "RtpError",
    "RtpPacket",
    "frame_rtp",
    "parse_rtp",
]

#: A sane cap for one PS frame: a 4K H.265 key frame is well under 2 MiB.
MAX_FRAME_BYTES = 4 * 1024 * 1024
_HEADER = struct.Struct("!BBHII")
_START_CODE = b"\x00\x00\x01"


class RtpError(ValueError):
    """Bytes that are not an RTP packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550): header fields and payload."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes

    def __bytes__(self) -> bytes:
        first = 0x80
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        header = _HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)
        return header + self.payload


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet (CSRCs, header extension and padding handled)."""
    if len(data) < 12:
        raise RtpError("shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise RtpError("not RTP version 2")
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or padding > end - offset:
            raise RtpError("bad padding")
        end -= padding
    if offset > end:
        raise RtpError("header longer than the packet")
    return RtpPacket(
        second & 0x7F, sequence, timestamp, ssrc, bool(second & 0x80), data[offset:end]
    )


@dataclass(frozen=True, slots=True)
class PsFrame:
    """One reassembled PS frame (a pack, possibly with system header and PSM)."""

    timestamp: int
    data: bytes


@dataclass(slots=True)
class ReassemblyCounters:
    """What was accepted and dropped, and why."""

    packets: int = 0
    frames: int = 0
    not_rtp: int = 0
    wrong_ssrc: int = 0
    oversized: int = 0
    no_start_code: int = 0
    lost: int = 0


class PsReassembler:
    """Packets of one stream in, whole PS frames out; hostile input dropped, memory bounded."""

    def __init__(self, ssrc: int | None, *, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.ssrc = ssrc
        self.counters = ReassemblyCounters()
        self._max = max_frame_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._timestamp: int | None = None
        self._next_sequence: int | None = None
        self._discarding = False

    def feed(self, data: bytes) -> list[PsFrame]:
        """Take one datagram (or RFC 4571 chunk); return the frames it completes."""
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.counters.not_rtp += 1
            return []
        if self.ssrc is not None and packet.ssrc != self.ssrc:
            self.counters.wrong_ssrc += 1
            return []
        self.counters.packets += 1
        frames: list[PsFrame] = []
        if self._next_sequence is not None and packet.sequence != self._next_sequence:
            # A gap spoils the frame being built; wait for the next frame's start.
            self.counters.lost += 1
            self._reset(discarding=packet.timestamp == self._timestamp)
        self._next_sequence = (packet.sequence + 1) & 0xFFFF
        if self._timestamp is not None and packet.timestamp != self._timestamp:
            frames.extend(self._finish())
        if self._discarding and packet.timestamp == self._timestamp:
            if packet.marker:
                self._reset(discarding=False)
            return frames
        self._discarding = False
        if not self._parts and not packet.payload.startswith(_START_CODE):
            self.counters.no_start_code += 1
            self._timestamp = packet.timestamp
            self._discarding = not packet.marker
            return frames
        self._timestamp = packet.timestamp
        if self._size + len(packet.payload) > self._max:
            self.counters.oversized += 1
            self._reset(discarding=not packet.marker)
            self._timestamp = packet.timestamp
            return frames
        self._parts.append(packet.payload)
        self._size += len(packet.payload)
        if packet.marker:
            frames.extend(self._finish())
        return frames

    def _finish(self) -> list[PsFrame]:
        if not self._parts or self._timestamp is None:
            self._reset(discarding=False)
            return []
        frame = PsFrame(self._timestamp, b"".join(self._parts))
        self.counters.frames += 1
        self._reset(discarding=False)
        return [frame]

    def _reset(self, *, discarding: bool) -> None:
        self._parts = []
        self._size = 0
        self._discarding = discarding

    @property
    def buffered(self) -> int:
        """Bytes held for the frame being built."""
        return self._size


class Rfc4571Decoder:
    """RTP packets out of a TCP byte stream framed with a 2-byte length (RFC 4571)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every complete packet (at most 65,535 bytes each, so bounded)."""
        self._buffer += data
        packets: list[bytes] = []
        while len(self._buffer) >= 2:
            (length,) = struct.unpack_from("!H", self._buffer)
            if len(self._buffer) < 2 + length:
                break
            packets.append(bytes(self._buffer[2 : 2 + length]))
            del self._buffer[: 2 + length]
        return packets

    @property
    def buffered(self) -> int:
        """Bytes held for the packet being received (at most 65,537 plus one read)."""
        return len(self._buffer)


def frame_rtp(packet: bytes) -> bytes:
    """One RTP packet with its RFC 4571 length prefix (for sending over TCP)."""
    if len(packet) > 0xFFFF:
        raise RtpError("an RTP packet over TCP is at most 65,535 bytes")
    return struct.pack("!H", len(packet)) + packet
