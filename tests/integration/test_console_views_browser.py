"""The console's other views in a real Chromium against a real hub server.

- drills: a drill press is marked 演练/DRILL in the queue and the detail, the
  API and the WebSocket say `is_drill`, and a P1 drill still sounds;
- the alarm WebSocket breaks (the HTTP server restarts) while a press arrives:
  the console reconnects with its `since` cursor and shows the missed alarm
  without a page reload;
- maintenance: devices filtered by jurisdiction, kind and health; an offline
  camera (judged by the patrol on the GStreamer peer, then on a dead port)
  shows since when, why, and its evidence snapshot;
- KPI: a seeded state history drawn as bars whose numbers equal the API's;
- broadcast: a TTS to a simulated unit on the machine's Mosquitto, and its ack.

Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.sim.mqtt_devices import BroadcastUnitSim, PanicButtonSim
from hub.devices.health_storage import TransitionRow, insert_transitions
from hub.runtime import Hub
from hub.storage import Json
from tests.integration.console_support import (
    PASSWORD,
    SCREENSHOTS,
    RunningHub,
    launch_browser,
    login,
    require_browser_peers,
    row,
    serve_hub,
    wait_js,
)
from tests.integration.health_seed import TOWN_A, TOWN_B, seed_camera, seed_tree, set_urls
from tests.peers import free_port
from tests.peers.rtsp import RtspPeer, rtsp_peer

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.slow]

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def peers() -> None:
    require_browser_peers()


@pytest.fixture
async def browser(peers: None) -> AsyncIterator[Any]:
    async with launch_browser() as instance:
        yield instance


@pytest.fixture
def prefix() -> str:
    return f"gw-views-{uuid.uuid4().hex[:8]}"


async def register(
    hub: Hub,
    device_id: str,
    kind: str,
    *,
    path: str = TOWN_A[4],
    mqtt_id: str | None = None,
    tags: tuple[str, ...] = (),
) -> None:
    """A registry row and its device_state row, as the registry writes them."""
    now = datetime.now(UTC)
    async with hub.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO devices (id, name, kind, jurisdiction, jurisdiction_path, mqtt_device_id,"
            " tags, enabled, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                device_id,
                f"{device_id} 设备",
                kind,
                path.strip("/").rsplit("/", 1)[-1],
                path,
                mqtt_id,
                Json(list(tags)),
                True,
                now,
                now,
            ),
        )
        await tx.execute(
            "INSERT INTO device_state (device_id, health, updated_at) VALUES (%s, 'unknown', %s)",
            (device_id, now),
        )


async def add_users(hub: Hub, *users: tuple[str, str, list[str]]) -> None:
    await hub.auth.refresh_tree()
    for username, role, scope in users:
        await hub.auth.create_user(username, PASSWORD, role, scope, actor="system:test")


async def wait_for(running: RunningHub, check: Any, what: str, timeout_s: float = 15) -> None:
    """Poll a coroutine function on the hub's loop until it returns true."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not running.run(check()):
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.1)


async def in_directory(running: RunningHub, *mqtt_ids: str) -> None:
    directory = running.hub.mqtt.directory

    async def known() -> bool:
        return all(directory.lookup(m) for m in mqtt_ids)

    await wait_for(running, known, f"{mqtt_ids} in the MQTT directory")


async def open_alarm_ids(hub: Hub, device_id: str) -> list[str]:
    async with hub.store.reading() as tx:
        rows = await tx.fetchall("SELECT id FROM alarms WHERE device_id = %s", (device_id,))
    return [str(r[0]) for r in rows]


# -- drills -----------------------------------------------------------------------


async def test_drill_alarm_is_marked_and_a_p1_drill_still_sounds(
    browser: Any, tmp_path: Path, prefix: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_hub(tmp_path, prefix) as running:
        running.run(seed_tree(running.hub.store))
        running.run(register(running.hub, "btn-drill", "alarm_point", mqtt_id="mqtt-drill"))
        running.run(register(running.hub, "btn-real", "alarm_point", mqtt_id="mqtt-real"))
        running.run(add_users(running.hub, ("duty", "operator", ["/"])))
        await in_directory(running, "mqtt-drill", "mqtt-real")

        page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
        frames: list[str] = []
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
        await login(page, running.base_url, "duty")

        with (
            PanicButtonSim("mqtt-drill", prefix=prefix) as drill_button,
            PanicButtonSim("mqtt-real", prefix=prefix) as real_button,
        ):
            drill_button.press(drill=True)
            real_button.press()
            await page.wait_for_selector(row("btn-drill") + "[data-drill=true]", timeout=15000)
            await page.wait_for_selector(row("btn-real") + "[data-drill=false]", timeout=15000)

            # The buttons stay connected: a button that leaves is a device-offline alarm.
            drill_row = row("btn-drill")
            assert (await page.inner_text(drill_row + " .drill-badge")).strip() == "演练"
            assert await page.locator(row("btn-real") + " .drill-badge").count() == 0
            # The drill is a P1 like the real press and sounds like it (decided: a drill
            # exercises the real path, the operator's reaction included).
            assert await page.get_attribute(drill_row, "data-priority") == "1"
            assert await page.get_attribute(drill_row, "data-sound") == "on"
            assert await page.get_attribute("body", "data-alerting") == "true"

            alarm_id = await page.get_attribute(drill_row, "data-alarm-id")
            real_id = await page.get_attribute(row("btn-real"), "data-alarm-id")
            api = await page.evaluate(
                "ids => Promise.all(ids.map(id => fetch('/api/alarms/' + id).then(r => r.json())))",
                [alarm_id, real_id],
            )
            assert [a["alarm"]["is_drill"] for a in api] == [True, False]
            changes = [m for m in map(_json, frames) if m.get("type") == "change"]
            flags = {m["alarm_id"]: m["is_drill"] for m in changes}
            assert flags == {alarm_id: True, real_id: False}

            await page.click(drill_row)
            await page.wait_for_selector("#detail[data-drill=true] h3 .drill-badge")
            assert "无需出警" in await page.inner_text("#detail .drill-note")
            await page.screenshot(path=str(SCREENSHOTS / "drill.png"), full_page=True)

            await page.select_option("#lang", "en")
            assert (await page.inner_text(drill_row + " .drill-badge")).strip() == "DRILL"
            # The detail re-renders in English once it has re-read the alarm.
            await page.wait_for_selector("#detail .drill-note:has-text('no police dispatch')")
            # Acknowledging the drill silences it; the real P1 still sounds.
            await page.click("#detail button[data-action=acknowledge]")
            await page.wait_for_selector(drill_row + "[data-state=acknowledged][data-sound=off]")
            assert await page.get_attribute(row("btn-real"), "data-sound") == "on"
            await page.select_option("#lang", "zh-CN")


def _json(frame: Any) -> dict[str, Any]:
    import json

    try:
        value = json.loads(frame if isinstance(frame, str) else bytes(frame))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- WebSocket reconnect -------------------------------------------------------------


async def test_console_resyncs_missed_alarm_after_the_socket_drops(
    browser: Any, tmp_path: Path, prefix: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_hub(tmp_path, prefix) as running:
        running.run(seed_tree(running.hub.store))
        running.run(register(running.hub, "btn-gate", "alarm_point", mqtt_id="mqtt-gate"))
        running.run(add_users(running.hub, ("duty", "operator", ["/"])))
        await in_directory(running, "mqtt-gate")

        page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await login(page, running.base_url, "duty")
        await page.evaluate("window.__sameDocument = 'yes'")
        assert len(sockets) == 1 and "since=" not in sockets[0]

        # The HTTP server goes away (its WebSockets closed); the hub keeps ingesting.
        running.run(running.stop_http())
        await page.wait_for_selector("#conn[data-state=down]", timeout=10000)
        with PanicButtonSim("mqtt-gate", prefix=prefix) as button:
            button.press()

            async def stored() -> bool:
                return bool(await open_alarm_ids(running.hub, "btn-gate"))

            await wait_for(running, stored, "the press stored while the console is cut off")
        assert await page.locator(row("btn-gate")).count() == 0

        running.run(running.start_http())
        await page.wait_for_selector(row("btn-gate") + "[data-sound=on]", timeout=30000)
        await page.wait_for_selector("#conn[data-state=up]")
        # The same document (no reload), re-synced through the cursor it kept.
        assert await page.evaluate("window.__sameDocument") == "yes"
        assert len(sockets) >= 2 and all("since=" in url for url in sockets[1:])
        await page.screenshot(path=str(SCREENSHOTS / "resync.png"), full_page=True)


# -- maintenance ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspPeer]:
    with rtsp_peer(tmp_path_factory.mktemp("rtsp")) as running:
        yield running


PATROL = {
    "enabled": False,
    "frames": 6,
    "timeout_s": 4,
    "concurrency": 4,
    "policy": {"failures_to_offline": 3},
}


async def patrol_fleet(hub: Hub, rtsp: RtspPeer) -> None:
    """Cameras judged by the hub's own patrol: healthy, black picture, and one that
    showed black then stopped answering (offline after three failed probes)."""
    await seed_tree(hub.store)
    await seed_camera(hub.store, "cam-street", urls=[rtsp.url("ball")])
    await seed_camera(hub.store, "cam-dark", urls=[rtsp.url("black")])
    await seed_camera(hub.store, "cam-gone", urls=[rtsp.url("black")])
    await seed_camera(hub.store, "cam-far", urls=[rtsp.url("ball")], jurisdiction=TOWN_B)
    await seed_camera(hub.store, "btn-school", kind="alarm_point")
    await hub.patrol.run_once()
    await set_urls(hub.store, "cam-gone", [f"rtsp://127.0.0.1:{free_port()}/live"])
    for _ in range(3):
        await hub.patrol.run_once()


async def health_of(hub: Hub, device_id: str) -> tuple[str, datetime, str]:
    async with hub.store.reading() as tx:
        found = await tx.fetchone(
            "SELECT health, health_since, health_reason FROM device_state WHERE device_id = %s",
            (device_id,),
        )
    assert found is not None
    since = found[1] if isinstance(found[1], datetime) else datetime.fromisoformat(found[1])
    return str(found[0]), since.astimezone(UTC), str(found[2])


def shanghai(at: datetime) -> str:
    """How the console writes a time with its date (zh-CN, Asia/Shanghai)."""
    return at.astimezone(SHANGHAI).strftime("%Y/%m/%d %H:%M:%S")


async def shown_devices(page: Any) -> list[str]:
    ids: list[str] = await page.evaluate(
        "[...document.querySelectorAll('#maint-body tr[data-device-id]')]"
        ".map(r => r.dataset.deviceId)"
    )
    return sorted(ids)


async def apply_filter(page: Any, **values: str) -> None:
    """Fill the maintenance filter, submit, and wait for the list it loads."""
    await page.fill("#maint-filter input[name=jurisdiction]", values.get("jurisdiction", ""))
    await page.select_option("#maint-filter select[name=kind]", values.get("kind", ""))
    await page.select_option("#maint-filter select[name=health]", values.get("health", ""))
    async with page.expect_response(lambda r: "/api/devices?" in r.url) as answer:
        await page.click("#maint-filter button[type=submit]")
    assert (await answer.value).status == 200


async def expect_shown(page: Any, expected: list[str]) -> None:
    """The device list shows exactly `expected` once it has rendered the answer."""
    deadline = time.monotonic() + 10
    while (shown := await shown_devices(page)) != expected:
        assert time.monotonic() < deadline, f"shown {shown}, expected {expected}"
        await asyncio.sleep(0.05)


@pytest.mark.rtsp
async def test_maintenance_view_filters_and_explains_an_offline_camera(
    browser: Any, tmp_path: Path, prefix: str, rtsp: RtspPeer
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_hub(tmp_path, prefix, patrol=PATROL) as running:
        running.run(patrol_fleet(running.hub, rtsp), timeout=120)
        running.run(add_users(running.hub, ("fixer", "maintenance", ["/"])))
        state, since, reason = running.run(health_of(running.hub, "cam-gone"))
        assert state == "offline" and "consecutive failures" in reason

        page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
        await login(page, running.base_url, "fixer")
        await page.click("#nav button[data-view=maintenance]")
        await page.wait_for_selector("#maint-body tr[data-device-id=cam-gone]")
        # Only the chosen view shows (the queue is a grid that must still hide).
        assert not await page.is_visible("#queue-view")
        await expect_shown(
            page,
            [
                "btn-school",
                "cam-dark",
                "cam-far",
                "cam-gone",
                "cam-street",
            ],
        )

        await apply_filter(page, health="offline")
        await expect_shown(page, ["cam-gone"])
        gone = "#maint-body tr[data-device-id=cam-gone]"
        assert (await page.inner_text(gone + " td.health-offline")).strip() == "离线"
        assert shanghai(since) in await page.inner_text(gone)

        await page.click(gone)
        await page.wait_for_selector("#maint-detail h3")
        detail = await page.inner_text("#maint-detail")
        assert "cam-gone" in detail and "离线" in detail
        assert shanghai(since) in detail
        assert reason in detail
        # The reason's code in the operator's language, above the hub's sentence.
        assert "无法连接摄像机" in detail
        await page.wait_for_selector("#maint-detail img")
        await wait_js(page, "document.querySelector('#maint-detail img').naturalWidth > 0", 10)
        size = await page.evaluate(
            "[document.querySelector('#maint-detail img').naturalWidth,"
            " document.querySelector('#maint-detail img').naturalHeight]"
        )
        assert size[0] > 0 and size[1] > 0
        await page.screenshot(path=str(SCREENSHOTS / "maintenance.png"), full_page=True)

        await apply_filter(page, health="degraded")
        await expect_shown(page, ["cam-dark"])
        await apply_filter(page, health="online")
        await expect_shown(page, ["cam-far", "cam-street"])
        await apply_filter(page, jurisdiction=TOWN_B[0])
        await expect_shown(page, ["cam-far"])
        await apply_filter(page, jurisdiction=TOWN_A[0], kind="alarm_point")
        await expect_shown(page, ["btn-school"])
        await apply_filter(page, jurisdiction=TOWN_A[0], kind="camera", health="online")
        await expect_shown(page, ["cam-street"])


# -- KPI --------------------------------------------------------------------------


def cst(text: str) -> datetime:
    """An Asia/Shanghai wall time as an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


HISTORY = [
    # (device, at (Shanghai), from, to): October 2024
    ("cam-a1", "2024-10-01T00:00:00", "unknown", "online"),
    ("cam-a2", "2024-10-01T00:00:00", "unknown", "online"),
    ("cam-a2", "2024-10-16T08:00:00", "online", "offline"),
    ("cam-a3", "2024-10-01T00:00:00", "unknown", "degraded"),
    ("cam-a3", "2024-10-11T00:00:00", "degraded", "online"),
    ("cam-b1", "2024-10-01T00:00:00", "unknown", "degraded"),
    ("cam-b1", "2024-10-21T00:00:00", "degraded", "online"),
    ("cam-b2", "2024-10-01T00:00:00", "unknown", "offline"),
    ("cam-b2", "2024-10-25T12:00:00", "offline", "online"),
]


async def kpi_history(hub: Hub) -> None:
    await seed_tree(hub.store)
    for device in ("cam-a1", "cam-a2", "cam-a3"):
        await seed_camera(hub.store, device)
    for device in ("cam-b1", "cam-b2"):
        await seed_camera(hub.store, device, jurisdiction=TOWN_B)
    async with hub.store.transaction() as tx:
        for device, at, before, after in HISTORY:
            row = TransitionRow(device, cst(at), before, after, f"seeded {after}")
            await insert_transitions(tx, [row], cst(at))


SUMMARY_SAYS = "document.getElementById('kpi-summary').innerText.includes('{}')"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


async def check_kpi(page: Any, query: str) -> dict[str, Any]:
    """The chart and summary show exactly the API's numbers for `query`."""
    report: dict[str, Any] = await page.evaluate(
        "q => fetch('/api/kpi?' + q).then(r => r.json())", query
    )
    summary = await page.inner_text("#kpi-summary")
    node = report["node"]
    assert f"在线率 {pct(node['online_rate'])}" in summary
    assert f"完好率 {pct(node['intact_rate'])}" in summary
    assert f"设备数 {node['devices']}" in summary
    bars = await page.evaluate(
        "[...document.querySelectorAll('#kpi-chart svg rect[height] title')]"
        ".map(t => [t.textContent, Number(t.parentElement.getAttribute('height'))])"
    )
    expected = []
    for child in report["children"]:
        for key, label in (("online_rate", "在线率"), ("intact_rate", "完好率")):
            value = child[key]
            expected.append([f"{child['name']} {label} {pct(value)}", (value or 0) * 180])
    assert len(bars) == len(expected)
    for (title, height), (want_title, want_height) in zip(bars, expected, strict=True):
        assert title == want_title
        assert abs(height - want_height) < 0.01
    return report


async def test_kpi_view_draws_the_apis_rates_per_jurisdiction(
    browser: Any, tmp_path: Path, prefix: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_hub(tmp_path, prefix, patrol={"enabled": False}) as running:
        running.run(kpi_history(running.hub))
        running.run(add_users(running.hub, ("fixer", "maintenance", ["/"])))
        page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
        await login(page, running.base_url, "fixer")
        await page.click("#nav button[data-view=kpi]")
        assert not await page.is_visible("#queue-view")

        await page.fill("#kpi-filter input[name=jurisdiction]", "150102")
        await page.select_option("#kpi-filter select[name=period]", "month")
        await page.fill("#kpi-filter input[name=when]", "2024-10")
        await page.click("#kpi-filter button[type=submit]")
        await page.wait_for_selector("#kpi-chart svg")
        await wait_js(
            page, "document.getElementById('kpi-summary').innerText.includes('2024-10')", 10
        )
        month = await check_kpi(page, "jurisdiction=150102&month=2024-10")
        rates = {c["code"]: (c["online_rate"], c["intact_rate"]) for c in month["children"]}
        # Town A: a2 offline from the 16th 08:00; a3 degraded for ten days (online, not intact).
        online_a, intact_a = rates["150102001"]
        assert online_a is not None and intact_a is not None
        assert 0.8 < online_a < 0.9 and intact_a < online_a
        online_b, _ = rates["150102002"]
        assert online_b is not None and online_b < online_a
        await page.screenshot(path=str(SCREENSHOTS / "kpi_month.png"), full_page=True)

        await page.select_option("#kpi-filter select[name=period]", "day")
        await page.fill("#kpi-filter input[name=when]", "2024-10-20")
        await page.click("#kpi-filter button[type=submit]")
        await wait_js(
            page, "document.getElementById('kpi-summary').innerText.includes('2024-10-20')", 10
        )
        day = await check_kpi(page, "jurisdiction=150102&day=2024-10-20")
        by_code = {c["code"]: c for c in day["children"]}
        # On the 20th town A has a2 offline all day; town B has b1 degraded, b2 offline.
        assert by_code["150102001"]["online_rate"] == pytest.approx(2 / 3)
        assert by_code["150102002"]["online_rate"] == pytest.approx(0.5)
        assert by_code["150102002"]["intact_rate"] == pytest.approx(0.0)
        await page.screenshot(path=str(SCREENSHOTS / "kpi_day.png"), full_page=True)


# -- broadcast --------------------------------------------------------------------


async def test_broadcast_panel_sends_tts_and_shows_the_units_ack(
    browser: Any, tmp_path: Path, prefix: str
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve_hub(tmp_path, prefix) as running:
        running.run(seed_tree(running.hub.store))
        running.run(
            register(
                running.hub, "spk-school", "broadcast_unit", mqtt_id="mqtt-spk", tags=("school-01",)
            )
        )
        running.run(add_users(running.hub, ("duty", "operator", ["/"])))
        await in_directory(running, "mqtt-spk")
        page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
        await login(page, running.base_url, "duty")

        with BroadcastUnitSim("mqtt-spk", prefix=prefix, behaviour="ack") as unit:
            await page.click("#nav button[data-view=broadcast]")
            assert not await page.is_visible("#queue-view")
            await page.wait_for_selector(
                "#bc-target option[value='unit:spk-school']", state="attached"
            )
            await page.select_option("#bc-target", "unit:spk-school")
            await page.fill("#bc-form input[name=text]", "请各班有序疏散到操场")
            await page.click("#bc-form button[type=submit]")
            await page.wait_for_selector("#bc-result [data-outcome=acked]", timeout=20000)
            assert "终端已确认" in await page.inner_text("#bc-result")
            assert [c.command.get("text") for c in unit.commands] == ["请各班有序疏散到操场"]
            assert unit.commands[0].command.get("action") == "tts"
            await page.screenshot(path=str(SCREENSHOTS / "broadcast.png"), full_page=True)
