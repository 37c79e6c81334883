"""Probing a real ONVIF device (the ipycam simulator) and opening the stream it advertises."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from adapters.onvif.client import ProbeError, probe
from adapters.onvif.models import ProbeFailure
from tests.peers import free_port
from tests.peers.onvif import IpycamInfo, ipycam_peer

pytestmark = pytest.mark.onvif


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpycamInfo]:
    with ipycam_peer(Path(tmp_path_factory.mktemp("ipycam"))) as info:
        yield info


async def test_probe_reads_model_profiles_and_media_uris(camera: IpycamInfo) -> None:
    result = await probe(camera.host, camera.onvif_port, camera.username, camera.password)

    assert result.device.manufacturer == "PythonCam"
    assert result.device.model == "VirtualCam-1"
    assert result.device.serial_number and result.device.firmware_version
    assert result.clock_offset is not None and abs(result.clock_offset.total_seconds()) < 5
    assert "http://www.onvif.org/ver10/media/wsdl" in result.services
    tokens = [p.token for p in result.profiles]
    assert tokens == ["Profile_Main", "Profile_Sub"]
    main = result.profiles[0]
    assert (main.encoding, main.width, main.height) == ("H264", 320, 240)
    assert main.stream_uri == f"rtsp://127.0.0.1:{camera.rtsp_port}/video_main"
    assert main.snapshot_uri is not None and main.snapshot_uri.startswith(
        f"http://127.0.0.1:{camera.onvif_port}/"
    )
    for profile in result.profiles:
        for uri in (profile.stream_uri, profile.snapshot_uri):
            assert uri is not None and camera.password not in uri and "@" not in uri


async def test_wrong_password_is_reported_as_an_auth_failure(camera: IpycamInfo) -> None:
    with pytest.raises(ProbeError) as failure:
        await probe(camera.host, camera.onvif_port, camera.username, "not-the-password")
    assert failure.value.failure is ProbeFailure.AUTH
    assert "not-the-password" not in str(failure.value)


async def test_nothing_listening_is_reported_as_unreachable() -> None:
    with pytest.raises(ProbeError) as failure:
        await probe("127.0.0.1", free_port(), "operator", "secret", timeout=3)
    assert failure.value.failure is ProbeFailure.UNREACHABLE


async def test_the_snapshot_uri_serves_a_jpeg(camera: IpycamInfo) -> None:
    result = await probe(camera.host, camera.onvif_port, camera.username, camera.password)
    snapshot_uri = result.profiles[0].snapshot_uri
    assert snapshot_uri is not None
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(snapshot_uri, auth=(camera.username, camera.password))
    assert response.status_code == 200
    assert response.content[:2] == b"\xff\xd8"


async def test_the_advertised_rtsp_stream_opens_and_decodes(camera: IpycamInfo) -> None:
    result = await probe(camera.host, camera.onvif_port, camera.username, camera.password)
    stream_uri = result.profiles[1].stream_uri
    assert stream_uri is not None

    def first_frame_size() -> tuple[int, int]:
        with av.open(stream_uri, options={"rtsp_transport": "tcp"}, timeout=15) as container:
            for frame in container.decode(video=0):
                return frame.width, frame.height
        raise AssertionError("stream ended without a frame")

    assert await asyncio.to_thread(first_frame_size) == (160, 120)
