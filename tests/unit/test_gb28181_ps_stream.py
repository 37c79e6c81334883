"""The simulator's PS sender: one PS frame per picture, as GB/T 28181 devices send it."""

from __future__ import annotations

import struct

from adapters.gb28181.ps_stream import PsRtpSender
from adapters.gb28181.rtp import PsReassembler, Rfc4571Decoder, RtpPacket, frame_rtp, parse_rtp

PACK = b"\x00\x00\x01\xba" + bytes([0x44, 0, 4, 0, 4, 1, 0, 0, 3, 0xF8])  # MPEG-2, no stuffing
PSM = b"\x00\x00\x01\xbc\x00\x02\xaa\xbb"


def pes(pts: int | None, payload: bytes) -> bytes:
    if pts is None:
        header = bytes([0x80, 0x00, 0x00])
    else:
        stamp = bytes(
            [
                0x21 | ((pts >> 29) & 0x0E),
                (pts >> 22) & 0xFF,
                0x01 | ((pts >> 14) & 0xFE),
                (pts >> 7) & 0xFF,
                0x01 | ((pts << 1) & 0xFE),
            ]
        )
        header = bytes([0x80, 0x80, 0x05]) + stamp
    body = header + payload
    return b"\x00\x00\x01\xe0" + struct.pack("!H", len(body)) + body


def test_each_picture_is_one_rtp_frame_with_its_pts_and_a_pack_header() -> None:
    key = PACK + PSM + pes(3600, b"\x00\x00\x00\x01\x65" + b"k" * 3000)
    second = pes(7200, b"\x00\x00\x00\x01\x41" + b"p" * 100)
    # A large picture split over two PES packets: only the first carries a PTS.
    third = pes(10800, b"\x00\x00\x00\x01\x41" + b"a" * 200) + pes(None, b"b" * 50)
    fourth = PACK + pes(14400, b"\x00\x00\x00\x01\x41" + b"q" * 10)
    sent: list[bytes] = []
    sender = PsRtpSender(sent.append, 1234)
    stream = key + second + third + fourth + pes(18000, b"\x00\x00\x00\x01\x41")
    for offset in range(0, len(stream), 700):  # arbitrary read sizes
        sender.feed(stream[offset : offset + 700])

    reassembler = PsReassembler(1234)
    frames = [frame for packet in sent for frame in reassembler.feed(packet)]
    assert [frame.timestamp for frame in frames[:3]] == [3600, 7200, 10800]
    assert frames[0].data == key
    assert frames[1].data == PACK + second  # the latest pack header in front
    assert frames[2].data == PACK + third
    assert sender.frames == 4 and frames[3].data == fourth
    assert all(len(parse_rtp(p).payload) <= 1400 for p in sent)
    assert [parse_rtp(p).marker for p in sent[:3]] == [False, False, True]


def test_over_tcp_every_packet_carries_its_rfc4571_length() -> None:
    sent: list[bytes] = []
    sender = PsRtpSender(sent.append, 77, tcp=True)
    sender.feed(PACK + pes(90, b"x" * 2000) + PACK + pes(180, b"y"))
    decoder = Rfc4571Decoder()
    packets = decoder.feed(b"".join(sent))
    assert len(packets) == 2 and all(parse_rtp(p).ssrc == 77 for p in packets)


def test_hostile_rtp_over_tcp_is_dropped_with_bounded_memory() -> None:
    """The TCP path (RFC 4571 framing, then reassembly) drops what UDP drops: garbage,
    another SSRC, and a frame far larger than the cap, holding a bounded amount."""

    def rtp(payloads: list[bytes], *, ssrc: int = 1234, start: int, ts: int) -> list[bytes]:
        return [
            bytes(RtpPacket(96, start + i, ts, ssrc, i == len(payloads) - 1, payload))
            for i, payload in enumerate(payloads)
        ]

    good = PACK + b"g" * 1000
    huge = [PACK + b"h" * 1400] + [b"h" * 1400] * 800  # about 1.1 MiB in one frame
    ok = PACK + b"k" * 500
    stream = rtp([good], start=0, ts=1)
    stream += [b"garbage", b"\x00" * 40]
    stream += rtp([PACK + b"x" * 1000], ssrc=999, start=1, ts=2)
    stream += rtp(huge, start=1, ts=3)
    stream += rtp([ok], start=1 + len(huge), ts=4)
    wire = b"".join(frame_rtp(packet) for packet in stream)

    decoder = Rfc4571Decoder()
    reassembler = PsReassembler(1234, max_frame_bytes=64 * 1024)
    seen: list[bytes] = []
    biggest = 0
    for offset in range(0, len(wire), 4096):
        for packet in decoder.feed(wire[offset : offset + 4096]):
            seen.extend(frame.data for frame in reassembler.feed(packet))
        biggest = max(biggest, reassembler.buffered + decoder.buffered)
    assert seen == [good, ok]
    assert biggest <= 64 * 1024 + 65_537 + 4096
    counters = reassembler.counters
    assert counters.not_rtp == 2 and counters.wrong_ssrc == 1 and counters.oversized == 1
