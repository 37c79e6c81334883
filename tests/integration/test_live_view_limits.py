"""The live view's viewer limits and pull lifecycle, at the API, against the GStreamer peer.

aiortc plays the browser: it sends a real offer, gets the hub's answer and
receives decoded pictures. The hub must pull each camera's RTSP stream once
however many watch it, refuse viewers beyond the per-camera and the total
limit (429), and close the RTSP pull (the TCP connection to the camera) once
the last viewer of that camera has left — by DELETE or by hanging up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from hub.auth import audit_storage as audit
from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.health_seed import seed_camera, seed_tree
from tests.peers.rtsp import RtspPeer, rtsp_peer

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]

LIVE = {"max_viewers_per_camera": 2, "max_viewers_total": 3, "idle_close_seconds": 0.5}


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspPeer]:
    with rtsp_peer(tmp_path_factory.mktemp("rtsp")) as running:
        yield running


@pytest.fixture
async def hub(tmp_path: Path, peer: RtspPeer) -> AsyncIterator[Hub]:
    # No patrol: the only RTSP connections to the peer are the live view's pulls.
    settings = load_settings(None, data_dir=tmp_path, live=LIVE, patrol={"enabled": False})
    async with Hub(settings) as running:
        await seed_tree(running.store)
        await seed_camera(running.store, "cam-ball", urls=[peer.url("ball")])
        await seed_camera(running.store, "cam-frozen", urls=[peer.url("frozen")])
        yield running


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    app = hub.app()
    act_as(app, role="operator", scope=("/150102/150102001/",), subject="watcher")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
        yield http


def rtsp_connections(port: int) -> int:
    """Established TCP connections to the RTSP peer's port (client side), from /proc."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01":
                    count += 1
    return count


@dataclass
class Viewer:
    """One aiortc peer watching a camera through the hub."""

    pc: RTCPeerConnection
    status: int
    body: dict[str, Any]
    track: asyncio.Future[Any]

    @property
    def viewer_id(self) -> str:
        return str(self.body["viewer_id"])

    async def frame(self) -> Any:
        """The next decoded picture (within 15 s)."""
        async with asyncio.timeout(15):
            track = await asyncio.shield(self.track)
            return await track.recv()


async def watch(client: httpx.AsyncClient, camera_id: str, *, vp8_only: bool = False) -> Viewer:
    """Offer to watch `camera_id`; on 200 apply the hub's answer.

    `vp8_only` offers only VP8, as a browser without H.264 does."""
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    if vp8_only:
        capabilities = RTCRtpReceiver.getCapabilities("video")
        assert capabilities is not None
        vp8 = [c for c in capabilities.codecs if c.mimeType == "video/VP8"]
        transceiver.setCodecPreferences(vp8)
    track: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def _on_track(incoming: Any) -> None:
        if not track.done():
            track.set_result(incoming)

    await pc.setLocalDescription(await pc.createOffer())
    response = await client.post(
        f"/api/live/{camera_id}/offer",
        json={"sdp": pc.localDescription.sdp, "type": "offer"},
    )
    body = response.json()
    if response.status_code == 200:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
    else:
        await pc.close()
    return Viewer(pc, response.status_code, body, track)


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait up to 15 s for `check` (state of the relay or the kernel's socket table)."""
    try:
        async with asyncio.timeout(15):
            while not check():  # noqa: ASYNC110 - polled state has no event to wait on
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def test_viewer_limits_one_pull_per_camera_and_pull_closed_after_last_viewer(
    hub: Hub, client: httpx.AsyncClient, peer: RtspPeer
) -> None:
    relay = hub.live.relay
    viewers: list[Viewer] = []
    try:
        assert rtsp_connections(peer.port) == 0
        first = await watch(client, "cam-ball")
        viewers.append(first)
        assert first.status == 200, first.body
        assert first.body["passthrough"] is True  # aiortc offers H.264
        picture = await first.frame()
        assert (picture.width, picture.height) == (640, 360)

        second = await watch(client, "cam-ball")
        viewers.append(second)
        assert second.status == 200, second.body
        assert (await second.frame()).width == 640
        # Two viewers, one pull: one RTSP connection to the camera.
        assert relay.pulls() == 1 and relay.viewers("cam-ball") == 2
        assert rtsp_connections(peer.port) == 1

        # Per camera: a third viewer of the same camera is refused.
        third = await watch(client, "cam-ball")
        assert third.status == 429
        assert "2 viewers" in third.body["detail"]
        assert relay.viewers("cam-ball") == 2

        # Another camera still has room in the total.
        other = await watch(client, "cam-frozen")
        viewers.append(other)
        assert other.status == 200, other.body
        assert (await other.frame()).width == 640
        assert relay.pulls() == 2 and relay.viewers() == 3
        await eventually(lambda: rtsp_connections(peer.port) == 2, "a second pull")

        # In total: the hub serves 3, the next one is refused whatever the camera.
        fourth = await watch(client, "cam-frozen")
        assert fourth.status == 429
        assert "3 viewers" in fourth.body["detail"]

        # One viewer leaves by DELETE: the pull stays for the other, a slot frees up.
        gone = await client.delete(f"/api/live/viewers/{first.viewer_id}")
        assert gone.status_code == 204
        assert (await client.delete(f"/api/live/viewers/{first.viewer_id}")).status_code == 404
        await first.pc.close()
        assert relay.viewers("cam-ball") == 1 and relay.pulls() == 2
        assert (await second.frame()).width == 640  # still playing

        # The last viewer of cam-ball hangs up without a DELETE: the hub notices,
        # and closes the camera's pull after the idle delay; cam-frozen plays on.
        await second.pc.close()
        await eventually(lambda: relay.viewers("cam-ball") == 0, "viewer gone after hang-up")
        await eventually(lambda: relay.pulls() == 1, "cam-ball pull closed")
        await eventually(lambda: rtsp_connections(peer.port) == 1, "RTSP connection closed")
        assert (await other.frame()).width == 640

        # The freed total slot admits a new viewer of the closed camera (a new pull).
        again = await watch(client, "cam-ball")
        viewers.append(again)
        assert again.status == 200, again.body
        assert (await again.frame()).width == 640
        assert relay.pulls() == 2

        for viewer in (other, again):
            assert (await client.delete(f"/api/live/viewers/{viewer.viewer_id}")).status_code == 204
        await eventually(lambda: relay.pulls() == 0, "every pull closed")
        await eventually(lambda: rtsp_connections(peer.port) == 0, "no RTSP connection left")
        assert relay.viewers() == 0
    finally:
        for viewer in viewers:
            await viewer.pc.close()

    starts = await audit.query(hub.store, action="live.start")
    assert len(starts) == 4
    assert {e.actor for e in starts} == {"user:watcher"}
    assert {e.target for e in starts} == {"cam-ball", "cam-frozen"}


async def test_camera_outside_scope_or_without_stream_is_not_pulled(
    hub: Hub, client: httpx.AsyncClient, peer: RtspPeer
) -> None:
    await seed_camera(
        hub.store,
        "cam-other-town",
        urls=[peer.url("ball")],
        jurisdiction=("150102002", "锡林路街道", "town", "150102", "/150102/150102002/"),
    )
    await seed_camera(hub.store, "cam-dark", urls=[])
    outside = await watch(client, "cam-other-town")
    assert outside.status == 404
    missing = await watch(client, "cam-nowhere")
    assert missing.status == 404
    no_stream = await watch(client, "cam-dark")
    assert no_stream.status == 502
    assert hub.live.relay.pulls() == 0 and rtsp_connections(peer.port) == 0


async def test_a_viewer_without_h264_gets_the_stream_re_encoded(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    """A browser that offers only VP8 gets the camera decoded and re-encoded: a moving
    picture at the camera's size, from its own pull (passthrough viewers share another)."""
    viewer = await watch(client, "cam-ball", vp8_only=True)
    try:
        assert viewer.status == 200, viewer.body
        assert viewer.body["passthrough"] is False
        assert "H264" not in viewer.body["sdp"] and "VP8" in viewer.body["sdp"]
        first = await viewer.frame()
        assert (first.width, first.height) == (640, 360)
        # The ball moves: later pictures differ from the first.
        pixels = first.to_ndarray(format="gray")
        for _ in range(30):
            later = (await viewer.frame()).to_ndarray(format="gray")
            if abs(later.astype(int) - pixels.astype(int)).mean() > 0.5:
                break
        else:
            raise AssertionError("the re-encoded picture never changed")
        assert hub.live.relay.pulls() == 1 and hub.live.relay.viewers("cam-ball") == 1
    finally:
        await viewer.pc.close()
