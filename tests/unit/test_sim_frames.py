"""Synthetic camera pictures: moving, deterministic, and faults the diagnosis recognises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from adapters.rtsp.vqd import Check, VqdBaseline, diagnose, learn_baseline
from adapters.sim.frames import (
    Frame,
    SimCameraFleet,
    SimFault,
    SimScene,
    render_burst,
    render_frame,
)

CAMERA = "15010201001320000001"
T0 = datetime(2024, 5, 1, 8, 0, 30, tzinfo=UTC)


def analysed(frames: list[Frame]) -> list[Frame]:
    """Scale down as the probe does before diagnosis."""
    return [
        np.asarray(cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA), dtype=np.uint8)
        for frame in frames
    ]


def learned_baseline(fleet: SimCameraFleet) -> VqdBaseline | None:
    baseline = None
    for step in range(5):
        burst = fleet.burst(CAMERA, T0 + timedelta(seconds=7 * step), 8)
        baseline = learn_baseline(baseline, diagnose(analysed(burst)))
    return baseline


@pytest.fixture
def fleet() -> SimCameraFleet:
    fleet = SimCameraFleet()
    fleet.add(CAMERA)
    return fleet


def test_picture_moves_and_has_the_camera_size() -> None:
    scene = SimScene.create(CAMERA)
    first = render_frame(scene, T0)
    later = render_frame(scene, T0 + timedelta(seconds=1))
    assert first is not None and later is not None
    assert first.shape == (360, 640, 3) and first.dtype == np.uint8
    assert np.count_nonzero(cv2.absdiff(first, later).max(axis=2) > 20) > 200


def test_same_camera_same_scene_other_camera_other_scene() -> None:
    same = render_frame(SimScene.create(CAMERA), T0)
    again = render_frame(SimScene.create(CAMERA), T0)
    other = render_frame(SimScene.create("15010201001320000002"), T0)
    assert same is not None and again is not None and other is not None
    assert np.array_equal(same, again)
    assert not np.array_equal(same, other)


def test_healthy_camera_passes_every_check(fleet: SimCameraFleet) -> None:
    diagnosis = diagnose(analysed(fleet.burst(CAMERA, T0, 8)), None, learned_baseline(fleet))
    assert diagnosis.ok, diagnosis.explain()


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        (SimFault.BLACK, Check.SIGNAL_LOSS),
        (SimFault.FROZEN, Check.FROZEN),
        (SimFault.BLURRED, Check.BLUR),
    ],
)
def test_injected_faults_are_what_the_diagnosis_finds(
    fleet: SimCameraFleet, fault: SimFault, check: Check
) -> None:
    baseline = learned_baseline(fleet)
    fleet.set_fault(CAMERA, fault)
    diagnosis = diagnose(analysed(fleet.burst(CAMERA, T0, 8)), None, baseline)
    assert check in diagnosis.faults


def test_offline_camera_has_no_pictures_until_repaired(fleet: SimCameraFleet) -> None:
    fleet.set_fault(CAMERA, SimFault.OFFLINE)
    assert fleet.burst(CAMERA, T0, 8) == []
    assert fleet.frame(CAMERA, T0) is None
    assert fleet.faulty() == {CAMERA: SimFault.OFFLINE}
    fleet.set_fault(CAMERA, SimFault.NONE)
    assert len(fleet.burst(CAMERA, T0, 8)) == 8
    assert fleet.faulty() == {}


def test_unknown_camera_is_refused(fleet: SimCameraFleet) -> None:
    with pytest.raises(KeyError):
        fleet.set_fault("nope", SimFault.BLACK)


def test_burst_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        render_burst(SimScene.create(CAMERA), T0, 3, fps=0)
