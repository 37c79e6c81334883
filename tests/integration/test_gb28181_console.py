"""The maintenance view shows per GB/T 28181 device whether its alarms are armed and when
the last alarm came (Chromium, zh-CN and English): an NVR that took SetGuard and the alarm
subscription shows armed with its last alarm; a camera that refused both shows a warning,
and its detail says why."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from adapters.gb28181.simulator import DeviceSimulator, SimChannel
from tests.integration.console_district import add_operator
from tests.integration.console_support import (
    SCREENSHOTS,
    english_labels,
    launch_browser,
    login,
    require_browser_peers,
    serve_hub,
)

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.slow]

PLATFORM = "15020700002000000001"
DOMAIN = "1502070000"
NVR = "15020700001180000041"
CAMERA = "15020700001320000042"


async def test_maintenance_view_shows_armed_and_unarmed_gb28181_devices(tmp_path: Path) -> None:
    require_browser_peers()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    gb = {
        "enabled": True,
        "sip_port": 0,
        "platform_id": PLATFORM,
        "domain": DOMAIN,
        "password": "platform-default",
        "auto_register": True,
    }
    prefix = f"gw-gbc-{uuid.uuid4().hex[:8]}"
    with serve_hub(tmp_path, prefix, patrol={"enabled": False}, gb28181=gb) as running:
        hub = running.hub
        running.run(add_operator(hub, "fixer", role="maintenance"))

        def device(device_id: str, **kwargs: object) -> DeviceSimulator:
            return DeviceSimulator(
                device_id,
                "platform-default",
                server=("127.0.0.1", hub.gb28181.port),
                server_id=PLATFORM,
                domain=DOMAIN,
                **kwargs,  # type: ignore[arg-type]
            )

        nvr = device(NVR, channels=[SimChannel("15020700001320000043", "沙河镇 学校门口")])
        camera = device(CAMERA)
        camera.refuse_arming = True
        async with nvr, camera, launch_browser() as browser:
            assert await nvr.register() == 200
            assert await camera.register() == 200
            for _ in range(300):
                rows = {r.device_id: r for r in running.run(hub.gb28181.devices())}
                if NVR in rows and rows[NVR].armed and CAMERA in rows and rows[CAMERA].arm_error:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("arming never settled")
            assert await nvr.alarm(priority=2, method=5, alarm_type=2) == 200

            page = await (
                await browser.new_context(viewport={"width": 1440, "height": 900})
            ).new_page()
            await login(page, running.base_url, "fixer")
            await page.click("#nav button[data-view=maintenance]")
            nvr_row = f"#maint-body tr[data-device-id='{NVR}']"
            camera_row = f"#maint-body tr[data-device-id='{CAMERA}']"
            await page.wait_for_selector(f"{nvr_row} td.gb-alarms")
            await page.wait_for_selector(f"{camera_row} td.gb-alarms")

            nvr_cell = await page.inner_text(f"{nvr_row} td.gb-alarms")
            assert "已布防" in nvr_cell and "最近报警" in nvr_cell, nvr_cell
            camera_cell = await page.inner_text(f"{camera_row} td.gb-alarms")
            assert "未布防" in camera_cell and "从未报警" in camera_cell, camera_cell
            # The unarmed device stands out: a warning colour, not the armed green.
            colours = await page.evaluate(
                """([a, b]) => [a, b].map((s) =>
                    getComputedStyle(document.querySelector(s + ' .armed')).color)""",
                [nvr_row, camera_row],
            )
            assert colours[0] != colours[1]
            assert colours[1] == "rgb(247, 107, 21)"  # --p2, the warning colour
            channel_row = "#maint-body tr[data-device-id='15020700001320000043']"
            await page.wait_for_selector(channel_row)
            assert (await page.inner_text(f"{channel_row} td:last-child")).strip() == "—"

            await page.click(camera_row)
            await page.wait_for_selector("#maint-detail .armed-no")
            detail = await page.inner_text("#maint-detail")
            assert "未布防" in detail and "国标注册" in detail and "已注册" in detail
            assert "SetGuard answered 403" in detail
            assert await english_labels(page) == []
            await page.screenshot(path=str(SCREENSHOTS / "gb28181-maintenance-zh.png"))

            await page.select_option("#lang", "en")
            await page.wait_for_selector("#maint-detail .armed-no")
            await page.click("#maint-filter button[type=submit]")
            for _ in range(50):
                text = await page.inner_text(f"{camera_row} td.gb-alarms")
                if "Not armed" in text:
                    break
                await asyncio.sleep(0.1)
            assert "Not armed" in await page.inner_text(f"{camera_row} td.gb-alarms")
            assert "Armed" in await page.inner_text(f"{nvr_row} td.gb-alarms")
            assert "last alarm" in await page.inner_text(f"{nvr_row} td.gb-alarms")
            assert "Not armed" in await page.inner_text("#maint-detail")
            await page.screenshot(path=str(SCREENSHOTS / "gb28181-maintenance-en.png"))
