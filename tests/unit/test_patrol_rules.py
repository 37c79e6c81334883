"""The patrol's pure rules: which stream to probe, how a probe becomes evidence, logins."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import SecretStr

from adapters.rtsp import ProbeFailure, StreamProbe, diagnose, redact_url
from camera_registry.models import Credentials, HealthState
from camera_registry.urls import with_credentials as url_with_credentials
from hub.crypto import CredentialCipher, CredentialError, Keyring, generate_key
from hub.devices.patrol import camera_login, choose_stream_url, judge

MAIN = "rtsp://10.0.0.5:554/Streaming/Channels/101"


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        ([MAIN], MAIN),
        (
            [MAIN, "rtsp://10.0.0.5:554/Streaming/Channels/102"],
            "rtsp://10.0.0.5:554/Streaming/Channels/102",
        ),
        (
            [
                "rtsp://cam/cam/realmonitor?channel=1&subtype=0",
                "rtsp://cam/cam/realmonitor?channel=1&subtype=1",
            ],
            "rtsp://cam/cam/realmonitor?channel=1&subtype=1",
        ),
        (
            ["rtsp://cam/h264/ch1/main/av_stream", "rtsp://cam/h264/ch1/sub/av_stream"],
            "rtsp://cam/h264/ch1/sub/av_stream",
        ),
        (["rtsp://cam/stream1", "rtsp://cam/stream2"], "rtsp://cam/stream2"),
        # No name says "sub": the second URL (registries list the main stream first).
        (["rtsp://cam/live/a", "rtsp://cam/live/b", "rtsp://cam/live/c"], "rtsp://cam/live/b"),
        # 1020 is not channel 102.
        (["rtsp://cam/ch/1020", "rtsp://cam/ch/1021"], "rtsp://cam/ch/1021"),
    ],
)
def test_the_sub_stream_is_preferred(urls: list[str], expected: str) -> None:
    assert choose_stream_url(urls) == expected


def test_no_url_is_refused() -> None:
    with pytest.raises(ValueError, match="no RTSP URL"):
        choose_stream_url([])


def test_credentials_are_percent_encoded_and_redactable() -> None:
    url = url_with_credentials("rtsp://10.0.0.5:554/live?x=1", "admin", "p@ss:w/rd#1")
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd%231@10.0.0.5:554/live?x=1"
    assert redact_url(url) == "rtsp://***@10.0.0.5:554/live?x=1"


def test_stored_credentials_open_through_the_registry_cipher() -> None:
    cipher = CredentialCipher(Keyring([generate_key()]))
    blob = cipher.seal("cam-1", Credentials(username="ops", password=SecretStr("s3cret!")))
    assert camera_login(cipher)("cam-1", blob) == ("ops", "s3cret!")
    with pytest.raises(CredentialError):  # a ciphertext is bound to its device id
        camera_login(cipher)("cam-2", blob)


def _probe(**fields: object) -> StreamProbe:
    base: dict[str, object] = {"url": "rtsp://cam/live", "ok": False, "frames_requested": 4}
    base.update(fields)
    return StreamProbe(**base)  # type: ignore[arg-type]


def test_unreachable_camera_is_offline_evidence() -> None:
    evidence = judge(_probe(failure=ProbeFailure.UNREACHABLE, error="Connection refused"), None)
    assert evidence.observed is HealthState.OFFLINE
    assert evidence.reason == "unreachable: Connection refused"
    assert evidence.faults == ()


def test_answering_camera_without_pictures_is_degraded_by_signal_loss() -> None:
    probe = _probe(failure=ProbeFailure.NO_FRAMES, error="no packets")
    evidence = judge(probe, diagnose([], expected_frames=4))
    assert evidence.observed is HealthState.DEGRADED
    assert evidence.faults == ("signal_loss",)
    assert "no picture (no_frames)" in evidence.reason


def test_black_pictures_are_degraded_and_a_textured_one_is_online() -> None:
    black = np.zeros((180, 320, 3), np.uint8)
    probe = _probe(
        ok=True, frames_decoded=2, frames=(black, black), codec="h264", width=320, height=180
    )
    evidence = judge(probe, diagnose(probe.frames, expected_frames=2))
    assert evidence.observed is HealthState.DEGRADED
    assert evidence.faults[0] == "signal_loss"

    rng = np.random.default_rng(7)
    base = rng.integers(0, 255, (45, 80, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    moved = np.roll(base, 8, axis=1)
    healthy = _probe(
        ok=True, frames_decoded=2, frames=(base, moved), codec="h264", width=320, height=180
    )
    diagnosis = diagnose(healthy.frames, expected_frames=2)
    evidence = judge(healthy, diagnosis)
    assert evidence.observed is HealthState.ONLINE, diagnosis.explain()
    assert evidence.reason == "picture ok (h264 320x180, 2 frames)"
