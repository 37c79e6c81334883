"""MPEG-PS frames as GB/T 28181 devices send them (annex C), sans I/O: for the simulator.

Each video access unit becomes one PS frame: a pack header (its SCR taken from
the picture's PTS), on key frames a program stream map naming the codec (stream
type 0x1B H.264, 0x24 H.265), then the picture in PES packets of at most 64 KiB,
the first carrying the PTS. `AccessUnits` cuts an Annex B byte stream (what an
encoder writes) into access units, so an H.265 stream — which `mpegpsmux` does
not take — streams like an H.264 one.
"""

from __future__ import annotations

import struct

__all__ = ["STREAM_TYPES", "AccessUnit", "AccessUnits", "ps_frame"]

#: PSM stream types of the video codecs GB/T 28181 names.
STREAM_TYPES = {"h264": 0x1B, "h265": 0x24}
_VIDEO_ID = 0xE0
_PES_PAYLOAD = 65535 - 8  # what one PES packet holds after its header and PTS
_MUX_RATE = 0x3FFF  # in units of 50 bytes/s; players ignore it


def _crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _pack_header(scr: int) -> bytes:
    scr &= (1 << 33) - 1
    return b"\x00\x00\x01\xba" + bytes(
        [
            0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03),
            (scr >> 20) & 0xFF,
            ((scr >> 12) & 0xF8) | 0x04 | ((scr >> 13) & 0x03),
            (scr >> 5) & 0xFF,
            ((scr << 3) & 0xF8) | 0x04,  # SCR extension 0
            0x01,
            (_MUX_RATE >> 14) & 0xFF,
            (_MUX_RATE >> 6) & 0xFF,
            ((_MUX_RATE << 2) & 0xFC) | 0x03,
            0xF8,  # no stuffing
        ]
    )


def _stream_map(stream_type: int) -> bytes:
    entries = bytes([stream_type, _VIDEO_ID, 0, 0])
    body = bytes([0xE0, 0xFF, 0, 0]) + struct.pack("!H", len(entries)) + entries
    length = len(body) + 4
    head = b"\x00\x00\x01\xbc" + struct.pack("!H", length) + body
    return head + struct.pack("!I", _crc32_mpeg2(head))


def _pts(pts: int) -> bytes:
    pts &= (1 << 33) - 1
    return bytes(
        [
            0x21 | ((pts >> 29) & 0x0E),
            (pts >> 22) & 0xFF,
            0x01 | ((pts >> 14) & 0xFE),
            (pts >> 7) & 0xFF,
            0x01 | ((pts << 1) & 0xFE),
        ]
    )


def ps_frame(access_unit: bytes, pts: int, *, codec: str, keyframe: bool) -> bytes:
    """One picture (Annex B access unit) as a GB/T 28181 PS frame, `pts` at 90 kHz."""
    if codec not in STREAM_TYPES:
        raise ValueError(f"codec must be one of {sorted(STREAM_TYPES)}")
    parts = [_pack_header(pts)]
    if keyframe:
        parts.append(_stream_map(STREAM_TYPES[codec]))
    first = True
    for start in range(0, max(len(access_unit), 1), _PES_PAYLOAD):
        chunk = access_unit[start : start + _PES_PAYLOAD]
        header = bytes([0x80, 0x80, 5]) + _pts(pts) if first else bytes([0x80, 0x00, 0])
        parts.append(b"\x00\x00\x01\xe0" + struct.pack("!H", len(header) + len(chunk)))
        parts.append(header + chunk)
        first = False
    return b"".join(parts)


class AccessUnit:
    """One picture of an Annex B stream: its bytes and whether it is a key frame."""

    __slots__ = ("data", "keyframe")

    def __init__(self, data: bytes, keyframe: bool) -> None:
        self.data = data
        self.keyframe = keyframe


class AccessUnits:
    """Cuts an Annex B H.264/H.265 byte stream into access units (pictures)."""

    def __init__(self, codec: str) -> None:
        if codec not in STREAM_TYPES:
            raise ValueError(f"codec must be one of {sorted(STREAM_TYPES)}")
        self._hevc = codec == "h265"
        self._buffer = bytearray()
        self._unit_start = -1  # where the picture being collected begins in the buffer
        self._has_picture = False
        self._keyframe = False
        self._scan = 0

    def feed(self, data: bytes) -> list[AccessUnit]:
        """Add stream bytes; return every picture they complete."""
        self._buffer += data
        units: list[AccessUnit] = []
        while True:
            position = self._buffer.find(b"\x00\x00\x01", self._scan)
            if position < 0 or position + 5 > len(self._buffer):
                self._scan = max(self._scan, len(self._buffer) - 4)
                break
            self._scan = position + 3
            nal = self._buffer[position + 3 : position + 6]
            starts, picture, key = self._classify(nal)
            begin = position - 1 if position and self._buffer[position - 1] == 0 else position
            if self._unit_start < 0:
                self._unit_start = begin
            elif starts and self._has_picture:
                picture_bytes = bytes(self._buffer[self._unit_start : begin])
                units.append(AccessUnit(picture_bytes, self._keyframe))
                del self._buffer[:begin]
                self._scan -= begin
                self._unit_start = 0
                self._has_picture = False
                self._keyframe = False
            if picture:
                self._has_picture = True
                self._keyframe = self._keyframe or key
        return units

    def _classify(self, nal: bytes | bytearray) -> tuple[bool, bool, bool]:
        """(may start a picture, is a slice of one, is a key-frame slice) of a NAL header."""
        if self._hevc:
            kind = (nal[0] >> 1) & 0x3F
            if kind < 32:
                first_slice = bool(nal[2] & 0x80)
                return first_slice, True, 16 <= kind <= 23
            return kind in (32, 33, 34, 35, 39) or 41 <= kind <= 44, False, False
        kind = nal[0] & 0x1F
        if kind in (1, 5):
            first_slice = bool(nal[1] & 0x80)  # first_mb_in_slice == 0
            return first_slice, True, kind == 5
        return kind in (6, 7, 8, 9) or 14 <= kind <= 18, False, False
