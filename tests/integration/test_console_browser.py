"""The operator console in a real Chromium against a real hub server.

A panic press published to Mosquitto reaches the queue (P1, sound on); the
operator acknowledges it and the state survives a reload; the linked camera
(served by the GStreamer RTSP peer) plays live over WebRTC; a town operator
sees only their town's alarm; English and Chinese both work. Screenshots of the
queue and the detail go to test-output/screenshots/.
"""

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

TOWN_A = "/150102/150102001/"
TOWN_B = "/150102/150102002/"


async def seed(hub: Hub, rtsp_url: str) -> None:
    """Towns A and B, a school camera and panic button in each, three operators."""
    now = datetime.now(UTC)
    async with hub.store.transaction() as tx:
        for code, name, level, parent, path in (
            ("150102", "新城区", "district", None, "/150102/"),
            ("150102001", "海拉尔东路街道", "town", "150102", TOWN_A),
            ("150102002", "锡林南路街道", "town", "150102", TOWN_B),
        ):
            await tx.execute(
                "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
                " VALUES (%s, %s, %s, %s, %s)",
                (code, name, level, parent, path),
            )
        devices = [
            ("cam-school-a", "第一小学 门口", "camera", TOWN_A, [rtsp_url], None, []),
            (
                "btn-school-a",
                "第一小学 一键报警",
                "alarm_point",
                TOWN_A,
                [],
                "mqtt-btn-a",
                ["cam-school-a"],
            ),
            ("btn-school-b", "第二小学 一键报警", "alarm_point", TOWN_B, [], "mqtt-btn-b", []),
        ]
        for device_id, name, kind, path, urls, mqtt_id, linked in devices:
            await tx.execute(
                "INSERT INTO devices (id, name, kind, jurisdiction, jurisdiction_path, rtsp_urls,"
                " mqtt_device_id, linked_cameras, enabled, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    device_id,
                    name,
                    kind,
                    path.strip("/").rsplit("/", 1)[-1],
                    path,
                    Json(urls),
                    mqtt_id,
                    Json(linked),
                    True,
                    now,
                    now,
                ),
            )
            await tx.execute(
                "INSERT INTO device_state (device_id, health, updated_at) VALUES (%s, %s, %s)",
                (device_id, "unknown", now),
            )
    await hub.auth.refresh_tree()
    for username, scope in (("duty", ["/"]), ("town-a", ["150102001"]), ("town-b", ["150102002"])):
        await hub.auth.create_user(username, PASSWORD, "operator", scope, actor="system:test")


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[str]:
    require_browser_peers()
    reason = gstreamer_available()
    if reason:
        peer_missing("rtsp", reason)
    with start_rtsp_server(tmp_path) as rtsp:
        yield rtsp.url("ball")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch_browser() as instance:
        yield instance


async def test_operator_console_end_to_end(peers: str, browser: Any, tmp_path: Path) -> None:
    prefix = f"gw-console-{uuid.uuid4().hex[:8]}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_hub(tmp_path, prefix) as running:
        running.run(seed(running.hub, peers))
        directory = running.hub.mqtt.directory
        deadline = asyncio.get_running_loop().time() + 10
        while not (directory.lookup("mqtt-btn-a") and directory.lookup("mqtt-btn-b")):
            assert asyncio.get_running_loop().time() < deadline, "buttons not in the directory"
            await asyncio.sleep(0.1)

        context = await browser.new_context(viewport={"width": 1440, "height": 900})
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        await login(page, running.base_url, "duty")
        assert (await page.inner_text("#queue-view h2")).strip() == "告警队列"

        with (
            PanicButtonSim("mqtt-btn-a", prefix=prefix) as button_a,
            PanicButtonSim("mqtt-btn-b", prefix=prefix) as button_b,
        ):
            button_a.press()
            button_b.press()
            await page.wait_for_selector(row("btn-school-a") + "[data-sound=on]", timeout=15000)
            await page.wait_for_selector(row("btn-school-b") + "[data-sound=on]", timeout=15000)
        assert await page.get_attribute(row("btn-school-a"), "data-priority") == "1"
        assert await page.get_attribute("body", "data-alerting") == "true"
        await wait_js(page, "Number(document.body.dataset.beeps || 0) >= 2", 6)
        assert "剩余" in await page.inner_text(row("btn-school-a") + " td.sla")
        await page.screenshot(path=str(SCREENSHOTS / "queue.png"), full_page=True)

        # Detail: acknowledge, then watch the linked camera live.
        await page.click(row("btn-school-a"))
        await page.wait_for_selector("#detail button[data-action=acknowledge]")
        await page.click("#detail button[data-action=acknowledge]")
        await page.wait_for_selector("#detail[data-state=acknowledged]")
        await page.wait_for_selector(
            row("btn-school-a") + "[data-state=acknowledged][data-sound=off]"
        )
        await page.click("#detail button[data-camera=cam-school-a]")
        try:
            await wait_js(page, "document.querySelector('video.live').videoWidth > 0", 20)
        except TimeoutError:
            status = await page.inner_text(".live-status")
            raise AssertionError(f"no video: status {status!r}, console {console}") from None
        first = await page.evaluate("document.querySelector('video.live').currentTime")
        await page.wait_for_timeout(1500)
        second = await page.evaluate("document.querySelector('video.live').currentTime")
        size = await page.evaluate(
            "[document.querySelector('video.live').videoWidth,"
            " document.querySelector('video.live').videoHeight]"
        )
        assert second > first and size == [640, 360]
        # Chromium takes H.264, so the camera's stream went through without re-encoding.
        assert await page.get_attribute("video.live", "data-passthrough") == "true"
        page_text = await page.content()
        assert "rtsp://" not in page_text
        await page.screenshot(path=str(SCREENSHOTS / "detail.png"), full_page=True)
        assert running.hub.live.relay.pulls() == 1

        # The state persists: reload, still signed in, still acknowledged.
        await page.reload()
        await page.wait_for_selector("body[data-view=queue]")
        await page.wait_for_selector(row("btn-school-a") + "[data-state=acknowledged]")
        assert await page.get_attribute(row("btn-school-b"), "data-sound") == "on"

        # English, then back to Chinese.
        await page.select_option("#lang", "en")
        assert (await page.inner_text("#queue-view h2")).startswith("Alarm queue")
        assert "Acknowledged" in await page.inner_text(row("btn-school-a"))
        await page.select_option("#lang", "zh-CN")
        assert "已确认" in await page.inner_text(row("btn-school-a"))

        # A town B operator sees town B's alarm only, and town A's is 404 by id.
        other = await browser.new_context()
        town_b = await other.new_page()
        await login(town_b, running.base_url, "town-b")
        await town_b.wait_for_selector(row("btn-school-b"))
        assert await town_b.locator(row("btn-school-a")).count() == 0
        alarm_a = await page.get_attribute(row("btn-school-a"), "data-alarm-id")
        status = await town_b.evaluate(
            "id => fetch('/api/alarms/' + id).then(r => r.status)", alarm_a
        )
        assert status == 404
        live_status = await town_b.evaluate(
            "() => fetch('/api/live/cam-school-a/offer', {method: 'POST', headers: {"
            "'Content-Type': 'application/json', 'X-CSRF-Token': decodeURIComponent("
            "document.cookie.split('; ').find(c => c.startsWith('gw_csrf=')).slice(8))},"
            " body: JSON.stringify({sdp: 'v=0\\r\\nm=video 9', type: 'offer'})})"
            ".then(r => r.status)"
        )
        assert live_status == 404
        await other.close()

        # A foreign page cannot open the alarm stream with the operator's cookie.
        cookies = {c["name"]: c["value"] for c in await context.cookies()}
        import websockets

        ws_url = running.base_url.replace("http", "ws") + "/api/alarms/ws"
        header = {"Cookie": f"gw_session={cookies['gw_session']}", "Origin": "http://evil.example"}
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(ws_url, additional_headers=header):
                pass
        assert refused.value.response.status_code == 403
        header["Origin"] = running.base_url
        async with websockets.connect(ws_url, additional_headers=header) as ws:
            assert '"hello"' in str(await asyncio.wait_for(ws.recv(), 5))

        await context.close()
        audit = running.run(audit_actions(running.hub))
        assert {"login", "alarm.acknowledge", "live.start"} <= audit


async def audit_actions(hub: Hub) -> set[str]:
    async with hub.store.reading() as tx:
        rows = await tx.fetchall("SELECT DISTINCT action FROM audit_log")
    return {str(r[0]) for r in rows}
