"""The simulator's PS muxer (GB/T 28181 annex C): access units cut from Annex B, each
wrapped as one PS frame that FFmpeg's demuxer reads back with the right codec and PTS."""

from __future__ import annotations

import io

import av
import pytest

from adapters.gb28181.ps_mux import AccessUnits, ps_frame


def hevc_nal(kind: int, first_slice: bool = True, size: int = 20) -> bytes:
    header = bytes([kind << 1, 1])
    body = bytes([0x80 if first_slice else 0x00]) + b"\x11" * size
    return b"\x00\x00\x00\x01" + header + body


def test_h265_annex_b_is_cut_into_pictures_with_their_key_frames() -> None:
    idr = hevc_nal(32) + hevc_nal(33) + hevc_nal(34) + hevc_nal(19) + hevc_nal(19, False)
    trail = hevc_nal(1)
    stream = idr + trail + hevc_nal(35) + trail + hevc_nal(1)
    units = AccessUnits("h265")
    got = [
        u for offset in range(0, len(stream), 7) for u in units.feed(stream[offset : offset + 7])
    ]
    assert [u.data for u in got] == [idr, trail, hevc_nal(35) + trail]
    assert [u.keyframe for u in got] == [True, False, False]


@pytest.mark.parametrize(("codec", "name"), [("h264", "h264"), ("h265", "hevc")])
def test_a_ps_frame_demuxes_with_its_codec_pts_and_whole_picture(codec: str, name: str) -> None:
    picture = b"\x00\x00\x00\x01" + bytes(range(256)) * 400  # over one PES packet's 64 KiB
    frame = ps_frame(picture, 3600, codec=codec, keyframe=True)
    assert frame.count(b"\x00\x00\x01\xe0") == 2 and frame.count(b"\x00\x00\x01\xbc") == 1
    with av.open(io.BytesIO(frame), "r", format="mpeg") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == name
        packets = [p for p in container.demux(stream) if p.size]
    assert b"".join(bytes(p) for p in packets) == picture
    assert packets[0].pts == 3600


def test_unknown_codecs_are_refused() -> None:
    with pytest.raises(ValueError, match="codec"):
        ps_frame(b"", 0, codec="mpeg4", keyframe=False)
    with pytest.raises(ValueError, match="codec"):
        AccessUnits("vp8")
