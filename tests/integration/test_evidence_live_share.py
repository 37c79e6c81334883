"""A buffered camera is pulled once: its live viewers are served from the pre-alarm
buffer's RTSP connection (counted in the kernel's socket table), not a second one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import Json
from tests.helpers import act_as, make_event
from tests.integration.health_seed import seed_camera, seed_tree
from tests.integration.test_live_view_limits import eventually, rtsp_connections, watch
from tests.peers.rtsp import rtsp_peer

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]


async def buffered_ball_camera(hub: Hub, url: str) -> None:
    """cam-ball linked to panic button btn-1, its buffer filling (over a second held)."""
    await seed_tree(hub.store)
    await seed_camera(hub.store, "cam-ball", urls=[url])
    await seed_camera(hub.store, "btn-1", kind="alarm_point")
    async with hub.store.transaction() as tx:
        await tx.execute(
            "UPDATE devices SET linked_cameras = %s WHERE id = 'btn-1'",
            (Json(["cam-ball"]),),
        )
    hub.evidence.request_refresh()
    await eventually(lambda: any(b.seconds > 1 for b in hub.evidence.buffered()), "buffering")


async def test_live_view_of_a_buffered_camera_shares_the_buffer_pull(tmp_path: Path) -> None:
    with rtsp_peer(tmp_path) as peer:
        settings = load_settings(
            None,
            data_dir=tmp_path,
            patrol={"enabled": False},
            live={"idle_close_seconds": 0.5},
            evidence={"prebuffer_s": 3, "refresh_s": 1},
        )
        async with Hub(settings) as hub:
            await buffered_ball_camera(hub, peer.url("ball"))
            assert rtsp_connections(peer.port) == 1

            app = hub.app()
            act_as(app, role="operator", scope=("/150102/150102001/",), subject="watcher")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                viewer = await watch(client, "cam-ball")
                assert viewer.status == 200 and viewer.body["passthrough"] is True
                first = await viewer.frame()
                second = await viewer.frame()
                assert (first.width, first.height) == (640, 360)
                assert second.pts > first.pts
                # Still the buffer's one connection, now also feeding the viewer.
                assert rtsp_connections(peer.port) == 1
                assert hub.live.relay.pulls() == 1
                stopped = await client.delete(f"/api/live/viewers/{viewer.viewer_id}")
                assert stopped.status_code == 204
                await viewer.pc.close()
            await eventually(lambda: hub.live.relay.pulls() == 0, "live pull closed")
            # The buffer keeps its pull (and keeps buffering) after the viewer left.
            assert rtsp_connections(peer.port) == 1
            packets = hub.evidence.buffered()[0].packets
            await eventually(lambda: hub.evidence.buffered()[0].packets != packets, "buffering on")


async def test_an_alarm_snapshot_of_a_buffered_camera_comes_from_the_buffer_pull(
    tmp_path: Path,
) -> None:
    """An alarm storm must not open a snapshot session per camera beside the buffer's:
    the picture is the buffer's newest key frame, and the camera still has one client."""
    with rtsp_peer(tmp_path) as peer:
        settings = load_settings(
            None,
            data_dir=tmp_path,
            patrol={"enabled": False},
            evidence={"prebuffer_s": 3, "postroll_s": 1, "refresh_s": 1},
        )
        async with Hub(settings) as hub:
            await buffered_ball_camera(hub, peer.url("ball"))
            connections: set[int] = set()

            async def count() -> None:
                while True:
                    connections.add(rtsp_connections(peer.port))
                    await asyncio.sleep(0.01)

            counting = asyncio.create_task(count())
            await hub.writer.submit(
                make_event(1, device_id="btn-1", kind="panic.press", source="mqtt")
            )
            app = hub.app()
            act_as(app, role="operator", scope=("/150102/150102001/",), subject="watcher")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                async with asyncio.timeout(10):
                    while not (items := (await client.get("/api/alarms")).json()["items"]):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                await hub.alarms.wait_for_linkage()
                counting.cancel()
                detail = (await client.get(f"/api/alarms/{items[0]['id']}")).json()
                (item,) = detail["media"]
                assert item["device_id"] == "cam-ball" and item["source"] == "stream-frame"
                got = await client.get(f"/api/alarms/{detail['alarm']['id']}/media/{item['id']}")
                assert got.headers["content-type"] == "image/jpeg"
                picture = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_COLOR)
                assert picture is not None and picture.shape[:2] == (360, 640)
            # The buffer's one connection all along: no snapshot session beside it.
            assert connections == {1}
