"""The simulated camera's live track delivers paced video frames of the camera."""

from __future__ import annotations

import pytest

from adapters.sim.frames import SimCameraFleet, SimFault
from adapters.sim.video import SimPlayer, SimVideoTrack

CAMERA = "15010201001320000001"


async def test_track_sends_frames_of_the_camera_size() -> None:
    fleet = SimCameraFleet()
    fleet.add(CAMERA)
    track = SimVideoTrack(fleet, CAMERA)
    first = await track.recv()
    second = await track.recv()
    assert (first.width, first.height) == fleet.size
    assert second.pts is not None and first.pts is not None and second.pts > first.pts
    fleet.set_fault(CAMERA, SimFault.OFFLINE)
    blank = await track.recv()
    assert blank.to_ndarray(format="bgr24").mean() < 20
    track.stop()


def test_player_shape_and_unknown_camera() -> None:
    fleet = SimCameraFleet()
    fleet.add(CAMERA)
    player = SimPlayer(fleet, CAMERA)
    assert player.video is not None and player.audio is None
    with pytest.raises(KeyError):
        SimVideoTrack(fleet, "other")
