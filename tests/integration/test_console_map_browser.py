"""The map on the queue screen, in a real Chromium against a real hub.

Boundaries imported as GeoJSON through `gridwatch jurisdictions import`, device markers, and
an alarm pinned at its device; clicking the pin opens the alarm with its camera playing live.
Switching the language keeps that video (the same viewer, still playing, none leaked). With a
tile server configured (a small HTTP server here, standing in for a site's own or 天地图),
the page's policy lets its tiles in and they load; without one, the boundaries still draw.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.mqtt_devices import PanicButtonSim
from tests.integration.console_district import (
    TOWNS,
    Placed,
    add_operator,
    import_district,
    seed_devices,
    town_centre,
)
from tests.integration.console_support import (
    SCREENSHOTS,
    english_labels,
    login,
    serve_hub,
    video_advances,
    wait_js,
)
from tests.peers.rtsp import RtspPeer

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.rtsp, pytest.mark.slow]


def _png(width: int = 256, height: int = 256) -> bytes:
    """A plain grey-green PNG tile."""
    raw = b"".join(b"\x00" + bytes((40, 60, 50)) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class _Tiles(BaseHTTPRequestHandler):
    served: list[str] = []  # noqa: RUF012 - one server per test, read after it stops
    tile = _png()

    def do_GET(self) -> None:
        type(self).served.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.tile)))
        self.end_headers()
        self.wfile.write(self.tile)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def tile_server() -> Iterator[str]:
    _Tiles.served = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tiles)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tiles/{{z}}/{{x}}/{{y}}.png"
    finally:
        server.shutdown()
        server.server_close()


def fleet(camera_peer: RtspPeer, prefix: str) -> list[Placed]:
    return [
        Placed("cam-1", "赛汗 北门", "camera", 0, urls=[camera_peer.url("ball")], offset=0.02),
        Placed("cam-2", "沙河 桥头", "camera", 1, health="offline", offset=0.02),
        Placed("cam-3", "萨如拉 广场", "camera", 2, health="degraded", offset=0.02),
        Placed(
            "btn-1",
            "第一小学 一键报警",
            "alarm_point",
            0,
            linked=["cam-1"],
            mqtt_id=f"{prefix}-btn-1",
            offset=-0.02,
        ),
    ]


async def test_map_pins_an_alarm_and_plays_its_camera(
    chromium: Any, tmp_path: Path, camera_peer: RtspPeer
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = f"gw-map-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(import_district, tmp_path / "hub")
    with serve_hub(tmp_path, prefix, patrol={"enabled": False}) as running:
        running.run(seed_devices(running.hub, fleet(camera_peer, prefix)))
        running.run(add_operator(running.hub, "duty"))
        directory = running.hub.mqtt.directory
        async with asyncio.timeout(15):
            while not directory.lookup(f"{prefix}-btn-1"):  # noqa: ASYNC110 - hub thread
                await asyncio.sleep(0.1)
        page = await (
            await chromium.new_context(viewport={"width": 1600, "height": 1000})
        ).new_page()
        await login(page, running.base_url, "duty")
        await page.wait_for_selector("#map[data-ready=true]")
        assert await page.get_attribute("#map", "data-tiles") == "off"
        # The district and its 8 towns, named on the map; every placed device a marker.
        assert await page.get_attribute("#map", "data-boundaries") == "9"
        labels = await page.eval_on_selector_all(
            ".boundary-label", "els => els.map(e => e.textContent)"
        )
        assert sorted(labels) == sorted(["九原区", *(name for _, name in TOWNS)])
        assert await page.get_attribute("#map", "data-devices") == "4"
        assert "未配置底图" in await page.inner_text("#map-summary")

        with PanicButtonSim(f"{prefix}-btn-1", prefix=prefix) as button:
            button.press()
            await page.wait_for_selector(".alarm-pin.prio-1", timeout=15000)
        pin = ".alarm-pin.prio-1"
        alarm_id = await page.get_attribute(pin, "data-alarm-id")
        # Pinned where it happened: at the button's coordinates, inside 赛汗街道's outline.
        lat, lon = town_centre(0)
        at = await page.evaluate(
            "s => [Number(document.querySelector(s).dataset.lat),"
            " Number(document.querySelector(s).dataset.lng)]",
            pin,
        )
        assert at == pytest.approx([lat - 0.02, lon - 0.02])
        inside = await page.evaluate(
            """([pin, town]) => {
              const p = document.querySelector(pin).getBoundingClientRect();
              const label = [...document.querySelectorAll('.boundary-label')]
                .find((e) => e.textContent === town).getBoundingClientRect();
              const district = [...document.querySelectorAll('.boundary-label')]
                .find((e) => e.textContent === '九原区').getBoundingClientRect();
              return { below: p.top > district.bottom, left: p.left < district.left,
                       near: Math.abs(p.left - label.left) < 150 };
            }""",
            [pin, TOWNS[0][1]],
        )
        assert inside == {"below": True, "left": True, "near": True}
        assert not await english_labels(page)
        await page.screenshot(path=str(SCREENSHOTS / "map.png"), full_page=True)

        # Click the pin: the alarm's detail, its camera live.
        await page.click(pin)
        await page.wait_for_selector(f"#detail[data-alarm-id='{alarm_id}']")
        assert await video_advances(page, "video.live") == (640, 360)
        viewer = await page.get_attribute("video.live", "data-viewer")
        assert running.hub.live.relay.viewers() == 1
        await page.screenshot(path=str(SCREENSHOTS / "map_alarm_live.png"), full_page=True)

        # A language switch keeps the same viewer playing and leaks none.
        await page.select_option("#lang", "en")
        await page.wait_for_selector(
            "#detail button[data-camera=cam-1]:has-text('Watch 赛汗 北门')"
        )
        assert await page.get_attribute("video.live", "data-viewer") == viewer
        await video_advances(page, "video.live")
        assert running.hub.live.relay.viewers() == 1
        await page.select_option("#lang", "zh-CN")
        await page.wait_for_selector("#detail button[data-camera=cam-1]:has-text('观看 赛汗 北门')")
        assert await page.get_attribute("video.live", "data-viewer") == viewer
        assert running.hub.live.relay.viewers() == 1

        # A camera's dot opens its name, health and live video; closing the popup stops it.
        cam_lat, cam_lon = town_centre(0)
        x, y = await page.evaluate(
            """([lat, lng]) => {
              const map = document.getElementById('map');
              const point = map.gwMap.latLngToContainerPoint([lat, lng]);
              const box = map.getBoundingClientRect();
              return [box.left + point.x, box.top + point.y];
            }""",
            [cam_lat + 0.02, cam_lon + 0.02],
        )
        await page.mouse.click(x, y)
        await page.wait_for_selector(".device-popup[data-device-id=cam-1]")
        popup = await page.inner_text(".device-popup")
        assert "赛汗 北门" in popup and "在线" in popup
        close = ".leaflet-popup-close-button"
        assert await page.get_attribute(close, "aria-label") == "关闭"
        await page.click(".device-popup button")
        assert await video_advances(page, "video.popup-live") == (640, 360)
        assert running.hub.live.relay.viewers() == 2 and running.hub.live.relay.pulls() == 1
        await page.screenshot(path=str(SCREENSHOTS / "map_camera_popup.png"), full_page=True)
        await page.click(close)
        async with asyncio.timeout(15):
            while running.hub.live.relay.viewers() != 1:  # noqa: ASYNC110 - hub thread
                await asyncio.sleep(0.1)


async def test_map_loads_the_sites_tiles_when_configured(
    chromium: Any, tmp_path: Path, tile_server: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(import_district, tmp_path / "hub")
    tiles = {"tile_url": tile_server, "attribution": "本区瓦片服务", "max_zoom": 16}
    with serve_hub(tmp_path, f"gw-tiles-{uuid.uuid4().hex[:8]}", map=tiles) as running:
        running.run(add_operator(running.hub, "duty"))
        page = await (
            await chromium.new_context(viewport={"width": 1600, "height": 1000})
        ).new_page()
        refused: list[str] = []
        page.on(
            "console", lambda m: refused.append(m.text) if "Content Security" in m.text else None
        )
        await login(page, running.base_url, "duty")
        await page.wait_for_selector("#map[data-ready=true][data-tiles=on]")
        await wait_js(
            page,
            "[...document.querySelectorAll('.leaflet-tile-pane img')]"
            ".some((img) => img.complete && img.naturalWidth === 256)",
            15,
        )
        assert _Tiles.served and all(p.startswith("/tiles/") for p in _Tiles.served)
        assert refused == []
        assert "本区瓦片服务" in await page.inner_text(".leaflet-control-attribution")
        assert await page.get_attribute("#map", "data-boundaries") == "9"
        await page.screenshot(path=str(SCREENSHOTS / "map_tiles.png"), full_page=True)
