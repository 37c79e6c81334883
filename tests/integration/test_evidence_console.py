"""The alarm detail plays each linked camera's evidence clip in a real Chromium: it
starts at the press, scrubs back to before it, offers a download, and the playback
is in the audit log."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.mqtt_devices import PanicButtonSim
from hub.runtime import Hub
from hub.storage import Json
from tests.integration.console_support import (
    PASSWORD,
    SCREENSHOTS,
    launch_browser,
    login,
    require_browser_peers,
    row,
    serve_hub,
    wait_js,
)
from tests.peers import peer_missing
from tests.peers.rtsp import gstreamer_available, start_rtsp_server

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.rtsp, pytest.mark.slow]

TOWN = "/150102/150102001/"
VIDEO = "#detail figure.clip[data-camera=cam-gate] video"


async def seed(hub: Hub, rtsp_url: str) -> None:
    """A school with a gate camera linked to its panic button, and its operator."""
    now = datetime.now(UTC)
    async with hub.store.transaction() as tx:
        for code, name, level, parent, path in (
            ("150102", "九原区", "district", None, "/150102/"),
            ("150102001", "沙河街道", "town", "150102", TOWN),
        ):
            await tx.execute(
                "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
                " VALUES (%s, %s, %s, %s, %s)",
                (code, name, level, parent, path),
            )
        for device_id, name, kind, urls, mqtt_id, linked in (
            ("cam-gate", "第三小学 校门", "camera", [rtsp_url], None, []),
            ("btn-gate", "第三小学 一键报警", "alarm_point", [], "mqtt-ev-btn", ["cam-gate"]),
        ):
            await tx.execute(
                "INSERT INTO devices (id, name, kind, jurisdiction, jurisdiction_path, rtsp_urls,"
                " mqtt_device_id, linked_cameras, enabled, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    *(device_id, name, kind, "150102001", TOWN),
                    *(Json(urls), mqtt_id, Json(linked), True, now, now),
                ),
            )
            await tx.execute(
                "INSERT INTO device_state (device_id, health, updated_at) VALUES (%s, %s, %s)",
                (device_id, "unknown", now),
            )
        # One linked camera only: short of the rule's two.
        await tx.execute("UPDATE devices SET project = 'school_alarm' WHERE id = 'btn-gate'")
    await hub.auth.refresh_tree()
    await hub.auth.create_user("school-op", PASSWORD, "operator", ["150102001"], actor="system:t")
    hub.evidence.request_refresh()


@pytest.fixture
def rtsp_url(tmp_path: Path) -> Iterator[str]:
    require_browser_peers()
    reason = gstreamer_available()
    if reason:
        peer_missing("rtsp", reason)
    with start_rtsp_server(tmp_path, width=320, height=180) as rtsp:
        yield rtsp.url("sound")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch_browser() as instance:
        yield instance


async def _buffered(hub: Hub, seconds: float) -> bool:
    return any(b.camera_id == "cam-gate" and b.seconds >= seconds for b in hub.evidence.buffered())


async def test_alarm_detail_plays_the_clip_from_the_press_and_scrubs_back(
    rtsp_url: str, browser: Any, tmp_path: Path
) -> None:
    prefix = f"gw-evidence-{uuid.uuid4().hex[:8]}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    evidence = {"prebuffer_s": 6, "postroll_s": 3, "refresh_s": 1}
    with serve_hub(tmp_path, prefix, evidence=evidence) as running:
        running.run(seed(running.hub, rtsp_url))
        deadline = asyncio.get_running_loop().time() + 60
        while not running.run(_buffered(running.hub, 7.0)):
            assert asyncio.get_running_loop().time() < deadline, "camera not buffered"
            await asyncio.sleep(0.2)
        while not running.hub.mqtt.directory.lookup("mqtt-ev-btn"):
            assert asyncio.get_running_loop().time() < deadline, "button not in the directory"
            await asyncio.sleep(0.1)

        context = await browser.new_context(viewport={"width": 1440, "height": 1000})
        page = await context.new_page()
        await login(page, running.base_url, "school-op")
        with PanicButtonSim("mqtt-ev-btn", prefix=prefix) as button:
            button.press()
            await page.wait_for_selector(row("btn-gate"), timeout=15000)
        await page.click(row("btn-gate"))
        await page.wait_for_selector("#detail .evidence-block")
        # Recording first (the post-roll), then the clip, without reloading the page.
        await page.wait_for_selector(VIDEO, timeout=30000)
        await wait_js(page, f"document.querySelector('{VIDEO}').readyState >= 1", 20)
        at_press = float(await page.get_attribute(VIDEO, "data-press-at") or 0)
        assert at_press >= 5.5
        # It opens at the press...
        await wait_js(
            page, f"Math.abs(document.querySelector('{VIDEO}').currentTime - {at_press}) < 0.5", 10
        )
        # ...plays (the pictures decode and move on)...
        await page.evaluate(f"document.querySelector('{VIDEO}').play()")
        await wait_js(page, f"document.querySelector('{VIDEO}').currentTime > {at_press} + 0.5", 15)
        size = await page.evaluate(
            f"[document.querySelector('{VIDEO}').videoWidth,"
            f" document.querySelector('{VIDEO}').videoHeight]"
        )
        assert size == [320, 180]
        # ...and scrubs back to before the press.
        await page.click("#detail figure.clip[data-camera=cam-gate] button.clip-before")
        await wait_js(page, f"document.querySelector('{VIDEO}').currentTime < {at_press} - 3", 10)
        await wait_js(page, f"document.querySelector('{VIDEO}').readyState >= 2", 10)
        href = await page.get_attribute("#detail a.clip-download", "href")
        assert href is not None and href.endswith("?download=true")
        download = await page.evaluate(
            "url => fetch(url).then(r => [r.status, r.headers.get('content-disposition')])", href
        )
        assert download[0] == 200 and download[1].startswith("attachment")
        caption = await page.inner_text("#detail figure.clip[data-camera=cam-gate] figcaption")
        assert "第三小学 校门" in caption and "报警前" in caption
        assert "不完整" not in caption  # a whole clip carries no warning
        await page.screenshot(path=str(SCREENSHOTS / "evidence-detail.png"), full_page=True)

        # A clip the stall guard cut short says so in the detail, in the operator's language.
        async def mark_short() -> None:
            async with running.hub.store.transaction() as tx:
                await tx.execute(
                    "UPDATE alarm_clips SET reason = %s WHERE camera_id = 'cam-gate'",
                    ("the post-roll is short: 1 s of 3 s after the alarm",),
                )

        running.run(mark_short())
        await page.reload()
        await page.click(row("btn-gate"))
        await page.wait_for_selector("#detail figure.clip[data-camera=cam-gate] .clip-short")
        caption = await page.inner_text("#detail figure.clip[data-camera=cam-gate] figcaption")
        assert "⚠ 报警后录像不完整：the post-roll is short: 1 s of 3 s" in caption

        async def audited() -> list[tuple[Any, ...]]:
            async with running.hub.store.reading() as tx:
                rows = await tx.fetchall(
                    "SELECT actor, action FROM audit_log WHERE action LIKE 'evidence.%%'"
                )
            return [tuple(r) for r in rows]

        # The maintenance view lists the school as short of DB15/T 3968.
        await page.click("button[data-view=maintenance]")
        shortfall = "#shortfalls tr[data-device-id=btn-gate]"
        await page.wait_for_selector(shortfall, timeout=10000)
        text = await page.inner_text(shortfall)
        assert "缺少地址" in text and "缺少坐标" in text and "可用联动摄像机 1 路" in text

        actions = running.run(audited())
        assert ("user:school-op", "evidence.play") in actions
        assert ("user:school-op", "evidence.download") in actions
