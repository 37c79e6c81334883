"""Probe value types: credentials never leak, results stay consistent."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.rtsp.models import ProbeFailure, StreamProbe, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/Streaming/101", "rtsp://***@10.0.0.5:554/Streaming/101"),
        ("rtsp://admin@cam.local/live", "rtsp://***@cam.local/live"),
        ("rtsp://u:p@[fe80::1]:8554/a?x=1", "rtsp://***@[fe80::1]:8554/a?x=1"),
        ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
    ],
)
def test_redact_url_removes_userinfo(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(expected) == expected


def test_redact_text_cleans_ffmpeg_messages() -> None:
    message = "[Errno 111] Connection refused: 'rtsp://admin:pa%40ss@10.0.0.5:554/x'"
    cleaned = redact_text(message)
    assert "pa%40ss" not in cleaned and "admin" not in cleaned
    assert cleaned == "[Errno 111] Connection refused: 'rtsp://***@10.0.0.5:554/x'"


def test_stream_probe_refuses_unredacted_url() -> None:
    with pytest.raises(ValueError, match="redacted"):
        StreamProbe(url="rtsp://a:b@h/x", ok=False, failure=ProbeFailure.TIMEOUT)


def test_stream_probe_ok_means_pictures() -> None:
    frame = np.zeros((18, 32, 3), np.uint8)
    partial = StreamProbe(
        url="rtsp://h/x",
        ok=True,
        failure=ProbeFailure.STALLED,
        frames_requested=8,
        frames_decoded=1,
        frames=(frame,),
    )
    assert partial.reachable
    with pytest.raises(ValueError):
        StreamProbe(url="rtsp://h/x", ok=True, frames_decoded=0)
    with pytest.raises(ValueError):
        StreamProbe(url="rtsp://h/x", ok=False)


def test_reachability_of_failures() -> None:
    assert not ProbeFailure.UNREACHABLE.reachable
    assert not ProbeFailure.TIMEOUT.reachable
    assert ProbeFailure.AUTH_FAILED.reachable
    assert ProbeFailure.NO_FRAMES.reachable
