"""Live-view pure pieces: offers, H.264 detection, stream URLs with logins, limits."""

from __future__ import annotations

import pytest

from adapters.webrtc import LiveLimits, LiveRefused, offer_accepts_h264
from adapters.webrtc.models import check_offer
from camera_registry.urls import with_credentials

CHROME_OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\n"
    "a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n"
)


def test_h264_in_the_offer_allows_passthrough() -> None:
    assert offer_accepts_h264(CHROME_OFFER)
    assert not offer_accepts_h264(CHROME_OFFER.replace("a=rtpmap:102 H264/90000\r\n", ""))


def test_bad_offers_are_refused() -> None:
    check_offer(CHROME_OFFER, "offer")
    for sdp, kind in (
        (CHROME_OFFER, "answer"),
        ("hello", "offer"),
        ("v=0\r\nm=audio 9 RTP/AVP 0\r\n", "offer"),
        ("v=0" + "x" * 70_000, "offer"),
    ):
        with pytest.raises(LiveRefused) as refused:
            check_offer(sdp, kind)
        assert refused.value.reason == "bad_offer"


def test_login_goes_into_the_url_escaped() -> None:
    url = "rtsp://10.0.0.5:554/Streaming/Channels/101"
    assert with_credentials(url, None, None) == url
    assert (
        with_credentials(url, "admin", "p@ss:w/rd#1")
        == "rtsp://admin:p%40ss%3Aw%2Frd%231@10.0.0.5:554/Streaming/Channels/101"
    )
    # A login already in the stored URL is replaced, not doubled.
    assert with_credentials("rtsp://old:x@cam/1", "new", "y") == "rtsp://new:y@cam/1"


def test_limits_validate() -> None:
    assert LiveLimits(per_camera=2, total=5).total == 5
    with pytest.raises(ValueError):
        LiveLimits(per_camera=0, total=5)
    with pytest.raises(ValueError):
        LiveLimits(per_camera=6, total=5)
