"""A GB/T 28181 channel plays in the console (Chromium): the simulated NVR registers, its
channel joins the registry from the catalog, an operator puts it on the video wall and the
picture (GStreamer's PS over RTP, INVITEd by the hub) moves."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from adapters.gb28181.ps_stream import gst_available, start_gst_stream
from adapters.gb28181.simulator import DeviceSimulator, SimChannel
from tests.integration.console_district import add_operator
from tests.integration.console_support import (
    SCREENSHOTS,
    launch_browser,
    login,
    require_browser_peers,
    serve_hub,
    video_advances,
)
from tests.peers import peer_missing

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.slow]

PLATFORM = "15020700002000000001"
DOMAIN = "1502070000"
NVR = "15020700001180000031"
CHANNEL = "15020700001320000031"


async def test_a_gb28181_channel_plays_on_the_console_video_wall(tmp_path: Path) -> None:
    require_browser_peers()
    if not gst_available():
        peer_missing("gstreamer", "gst-launch-1.0 is not installed")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    gb = {
        "enabled": True,
        "sip_port": 0,
        "platform_id": PLATFORM,
        "domain": DOMAIN,
        "password": "platform-default",
        "auto_register": True,
        "media_ports": [31400, 31500],
    }
    prefix = f"gw-gb-{uuid.uuid4().hex[:8]}"
    with serve_hub(tmp_path, prefix, patrol={"enabled": False}, gb28181=gb) as running:
        hub = running.hub
        running.run(add_operator(hub, "duty"))
        device = DeviceSimulator(
            NVR,
            "platform-default",
            server=("127.0.0.1", hub.gb28181.port),
            server_id=PLATFORM,
            domain=DOMAIN,
            channels=[SimChannel(CHANNEL, "沙河镇 国标通道")],
            media=start_gst_stream,
        )
        async with device, launch_browser() as browser:
            assert await device.register() == 200
            for _ in range(300):
                if hub.registry.lookup_cached(CHANNEL) is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the channel never joined the registry")
            page = await (
                await browser.new_context(viewport={"width": 1400, "height": 900})
            ).new_page()
            await login(page, running.base_url, "duty")
            await page.click("#nav button[data-view=wall]")
            await page.wait_for_selector(
                f"#wall-camera option[value='{CHANNEL}']", state="attached"
            )
            await page.select_option("#wall-camera", CHANNEL)
            await page.click("#wall-form button[type=submit]")
            tile = f"#wall .tile[data-camera='{CHANNEL}']"
            await page.wait_for_selector(f"{tile}[data-state=playing]", timeout=30000)
            assert await video_advances(page, f"{tile} video", timeout_s=30) == (320, 240)
            assert device.stats.invites == 1
            await page.screenshot(path=str(SCREENSHOTS / "gb28181_wall.png"), full_page=True)
