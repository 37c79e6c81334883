"""Probe and diagnose real RTSP streams served by GStreamer, healthy and broken."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from adapters.rtsp import (
    Check,
    Diagnosis,
    ProbeFailure,
    ProbePool,
    SceneReference,
    StreamProbe,
    VqdBaseline,
    diagnose,
    learn_baseline,
    probe_stream,
    scene_reference,
)
from tests.peers import free_port
from tests.peers.rtsp import RtspPeer, rtsp_peer

pytestmark = pytest.mark.rtsp

FRAMES = 8


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspPeer]:
    with rtsp_peer(tmp_path_factory.mktemp("rtsp")) as running:
        yield running


def probe_and_diagnose(
    peer: RtspPeer,
    mount: str,
    *,
    baseline: VqdBaseline | None = None,
    reference: SceneReference | None = None,
) -> tuple[StreamProbe, Diagnosis]:
    probe = probe_stream(peer.url(mount), frames=FRAMES, timeout_s=5)
    diagnosis = diagnose(
        probe.frames, baseline=baseline, reference=reference, expected_frames=FRAMES
    )
    return probe, diagnosis


def test_healthy_stream_is_ok_with_evidence(peer: RtspPeer) -> None:
    probe, diagnosis = probe_and_diagnose(peer, "ball")
    assert probe.ok and probe.failure is None
    assert (probe.codec, probe.width, probe.height) == ("h264", 640, 360)
    assert probe.fps == 15.0
    assert probe.frames_decoded == FRAMES
    assert probe.open_latency_s is not None and probe.open_latency_s < 5.0
    assert probe.frames[0].shape == (180, 320, 3)  # scaled for analysis
    assert probe.snapshot_jpeg is not None
    snapshot = cv2.imdecode(np.frombuffer(probe.snapshot_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert snapshot is not None and snapshot.shape == (360, 640, 3)  # evidence at full size
    assert diagnosis.ok, diagnosis.explain()
    assert diagnosis.verdict(Check.FROZEN).ok


def test_black_stream_is_signal_loss_and_too_dark(peer: RtspPeer) -> None:
    probe, diagnosis = probe_and_diagnose(peer, "black")
    assert probe.ok
    assert diagnosis.faults[0] is Check.SIGNAL_LOSS
    assert Check.TOO_DARK in diagnosis.faults


def test_blue_screen_is_signal_loss(peer: RtspPeer) -> None:
    _, diagnosis = probe_and_diagnose(peer, "blue")
    assert diagnosis.faults[0] is Check.SIGNAL_LOSS
    assert "blue" in diagnosis.verdict(Check.SIGNAL_LOSS).explanation


def test_snow_stream_is_noise(peer: RtspPeer) -> None:
    _, diagnosis = probe_and_diagnose(peer, "snow")
    assert Check.SNOW in diagnosis.faults
    assert Check.SIGNAL_LOSS not in diagnosis.faults
    assert Check.FROZEN not in diagnosis.faults


def test_solid_colour_is_occlusion_and_colour_cast(peer: RtspPeer) -> None:
    _, diagnosis = probe_and_diagnose(peer, "solid")
    assert Check.OCCLUSION in diagnosis.faults
    assert Check.COLOUR_CAST in diagnosis.faults
    assert Check.SIGNAL_LOSS not in diagnosis.faults


def test_uniform_grey_is_occlusion_without_cast(peer: RtspPeer) -> None:
    _, diagnosis = probe_and_diagnose(peer, "grey")
    assert Check.OCCLUSION in diagnosis.faults
    assert Check.COLOUR_CAST not in diagnosis.faults


def test_static_picture_is_frozen(peer: RtspPeer) -> None:
    _, diagnosis = probe_and_diagnose(peer, "frozen")
    assert diagnosis.faults == (Check.FROZEN,)


def test_stream_that_stops_sending_is_stalled_signal_loss(peer: RtspPeer) -> None:
    probe, diagnosis = probe_and_diagnose(peer, "stalled")
    assert probe.failure is ProbeFailure.STALLED
    assert probe.reachable
    assert 0 < probe.frames_decoded < FRAMES
    assert diagnosis.faults[0] is Check.SIGNAL_LOSS
    assert "stopped after" in diagnosis.explain()


def test_blur_is_caught_against_the_cameras_own_baseline(peer: RtspPeer) -> None:
    baseline = None
    for _ in range(2):
        _, healthy = probe_and_diagnose(peer, "ball")
        baseline = learn_baseline(baseline, healthy)
    assert baseline is not None and baseline.samples == 2
    _, diagnosis = probe_and_diagnose(peer, "blur", baseline=baseline)
    assert Check.BLUR in diagnosis.faults
    assert diagnosis.verdict(Check.BLUR).score < 0.55


def test_scene_change_against_reference(peer: RtspPeer) -> None:
    probe, _ = probe_and_diagnose(peer, "ball")
    reference = scene_reference(probe.frames[-1])
    _, same = probe_and_diagnose(peer, "ball", reference=reference)
    assert same.verdict(Check.SCENE_CHANGE).ok
    _, moved = probe_and_diagnose(peer, "stalled", reference=reference)
    assert not moved.verdict(Check.SCENE_CHANGE).ok


def test_nothing_listening_is_unreachable() -> None:
    port = free_port()
    probe = probe_stream(f"rtsp://admin:hunter2@127.0.0.1:{port}/live", timeout_s=6)
    assert not probe.ok and not probe.reachable
    assert probe.failure is ProbeFailure.UNREACHABLE
    assert probe.total_time_s < 3.0  # refused at once, not waited out
    assert "hunter2" not in repr(probe) and "hunter2" not in (probe.error or "")
    assert probe.url == f"rtsp://***@127.0.0.1:{port}/live"
    assert diagnose(probe.frames).faults == (Check.SIGNAL_LOSS,)


def test_silent_server_is_a_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        probe = probe_stream(f"rtsp://127.0.0.1:{port}/live", timeout_s=1)
    assert probe.failure is ProbeFailure.TIMEOUT
    assert 0.9 < probe.total_time_s < 6


def test_unknown_mount_is_rejected(peer: RtspPeer) -> None:
    probe = probe_stream(peer.url("no-such-camera"), timeout_s=2)
    assert probe.failure is ProbeFailure.REJECTED
    assert probe.reachable
    assert "404" in (probe.error or "")


async def test_pool_probes_many_cameras_concurrently(peer: RtspPeer) -> None:
    mounts = ["ball", "black", "snow", "frozen"] * 2
    async with ProbePool(max_workers=4, frames=4) as pool:
        probes = await asyncio.gather(*(pool.probe(peer.url(m)) for m in mounts))
    assert all(p.ok and p.frames_decoded == 4 for p in probes)
    faults = {m: diagnose(p.frames).faults for m, p in zip(mounts, probes, strict=True)}
    assert faults["ball"] == ()
    assert faults["black"][0] is Check.SIGNAL_LOSS


def test_server_script_is_runnable(tmp_path: Path) -> None:
    """The peer stops cleanly and leaves its log behind."""
    with rtsp_peer(tmp_path) as running:
        assert probe_stream(running.url("ball"), frames=1).ok
    assert list(tmp_path.glob("rtsp_server_*.log"))
    assert probe_stream(running.url("ball"), timeout_s=1).failure is ProbeFailure.UNREACHABLE
