"""The video wall in a real Chromium: 4 tiles of live cameras (the GStreamer RTSP peer) whose
frames advance, each its own WebRTC viewer sharing the hub's one pull per camera; a second
console watching the same camera adds a viewer, not a pull; the hub's viewer limit shows on
the refused tile; closing a tab or leaving the wall ends its viewers; a P1 alarm puts its
linked cameras up."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.mqtt_devices import PanicButtonSim
from tests.integration.console_district import Placed, add_operator, import_district, seed_devices
from tests.integration.console_support import (
    SCREENSHOTS,
    RunningHub,
    english_labels,
    login,
    serve_hub,
    video_advances,
)
from tests.peers.rtsp import RtspPeer

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.rtsp, pytest.mark.slow]

CAMERAS = [
    ("cam-1", "赛汗 北门"),
    ("cam-2", "沙河 桥头"),
    ("cam-3", "萨如拉 广场"),
    ("cam-4", "麻池 路口"),
]
CAMERAS += [("cam-5", "哈业胡同 东街"), ("cam-6", "阿嘎如泰 牧场")]


def tile(camera: str) -> str:
    return f"#wall .tile[data-camera={camera}]"


async def put_up(page: Any, camera: str) -> None:
    await page.select_option("#wall-camera", camera)
    await page.click("#wall-form button[type=submit]")


async def until(running: RunningHub, check: Any, what: str) -> None:
    async with asyncio.timeout(20):
        while not check():  # noqa: ASYNC110 - state held by the hub's thread
            await asyncio.sleep(0.1)
    assert check(), what


async def test_a_four_tile_wall_plays_sharing_one_pull_per_camera(
    chromium: Any, tmp_path: Path, camera_peer: RtspPeer
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = f"gw-wall-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(import_district, tmp_path / "hub")
    devices = [
        Placed(cam, name, "camera", i, urls=[camera_peer.url("ball")])
        for i, (cam, name) in enumerate(CAMERAS)
    ]
    devices.append(
        Placed(
            "btn-1",
            "第一小学 一键报警",
            "alarm_point",
            0,
            linked=["cam-5", "cam-6"],
            mqtt_id=f"{prefix}-btn-1",
        )
    )
    live = {"max_viewers_total": 5, "idle_close_seconds": 0}
    with serve_hub(tmp_path, prefix, live=live, patrol={"enabled": False}) as running:
        running.run(seed_devices(running.hub, devices))
        running.run(add_operator(running.hub, "duty"))
        running.run(add_operator(running.hub, "chief"))
        relay = running.hub.live.relay
        page = await (
            await chromium.new_context(viewport={"width": 1600, "height": 1000})
        ).new_page()
        await login(page, running.base_url, "duty")
        await page.click("#nav button[data-view=wall]")
        await page.wait_for_selector("#wall-camera option[value=cam-4]", state="attached")
        assert await page.locator("#wall .tile").count() == 4
        for camera, _ in CAMERAS[:4]:
            await put_up(page, camera)
        for index, (camera, name) in enumerate(CAMERAS[:4]):
            await page.wait_for_selector(tile(camera) + "[data-state=playing]", timeout=30000)
            assert await video_advances(page, f"{tile(camera)} video") == (640, 360)
            assert await page.get_attribute(tile(camera), "data-index") == str(index)
            assert (await page.inner_text(tile(camera) + " .tile-label")) == name
        assert relay.pulls() == 4 and relay.viewers() == 4
        assert not await english_labels(page)
        await page.screenshot(path=str(SCREENSHOTS / "wall_4.png"), full_page=True)

        # A second console on cam-1: one more viewer, no further pull.
        other = await (
            await chromium.new_context(viewport={"width": 1280, "height": 800})
        ).new_page()
        await login(other, running.base_url, "chief")
        await other.click("#nav button[data-view=wall]")
        await other.wait_for_selector("#wall-camera option[value=cam-1]", state="attached")
        await put_up(other, "cam-1")
        await other.wait_for_selector(tile("cam-1") + "[data-state=playing]", timeout=30000)
        await video_advances(other, f"{tile('cam-1')} video")
        assert relay.pulls() == 4 and relay.viewers() == 5
        # The hub's limit (5 viewers) refuses a sixth; the tile says so.
        await put_up(other, "cam-2")
        await other.wait_for_selector(tile("cam-2") + "[data-state=busy]", timeout=15000)
        assert "超出观看上限" in await other.inner_text(tile("cam-2"))
        assert relay.viewers() == 5

        # Closing the second console's tab ends its viewer at once.
        await other.close(run_before_unload=True)
        await until(running, lambda: relay.viewers() == 4, "the closed tab's viewer ended")

        # 9 tiles keep the four playing; leaving the wall ends its viewers.
        await page.select_option("#wall-layout", "9")
        assert await page.locator("#wall .tile").count() == 9
        await video_advances(page, f"{tile('cam-4')} video")
        await page.click("#nav button[data-view=queue]")
        await until(running, lambda: relay.viewers() == 0, "the wall's viewers ended")

        # A P1 press puts its linked cameras on the wall, playing once the wall is shown.
        await page.click("#nav button[data-view=wall]")
        await page.click("#wall-clear")
        await page.click("#nav button[data-view=queue]")
        with PanicButtonSim(f"{prefix}-btn-1", prefix=prefix) as button:
            button.press()
            await page.wait_for_selector("#queue-body tr[data-priority='1']", timeout=15000)
        await page.click("#nav button[data-view=wall]")
        for camera in ("cam-5", "cam-6"):
            await page.wait_for_selector(tile(camera) + "[data-state=playing]", timeout=30000)
            await video_advances(page, f"{tile(camera)} video")
        assert "一键报警：第一小学 一键报警" in await page.inner_text("#wall-note")
        await page.screenshot(path=str(SCREENSHOTS / "wall_p1.png"), full_page=True)
