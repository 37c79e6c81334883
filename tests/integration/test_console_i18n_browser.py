"""The zh-CN console a district control room reads all day, in a real Chromium.

- an ignored P1 is overdue from its FIRST deadline (in red) with its escalation level,
  although each escalation moved the stored deadline on; a resolved alarm shows no clock;
- every view (queue with its map, detail, maintenance, KPI, broadcast, video wall) shows no
  Latin-only label outside ids and names; English mode relabels everything, the connection
  badge included;
- layout: the KPI chart's 8 town names and its legend do not overlap, "新告警" stays on one
  line, the maintenance detail is a label/value grid.

Screenshots of each view go to test-output/screenshots/.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.mqtt_devices import PanicButtonSim
from camera_registry.events import DeviceEvent
from tests.integration.console_district import (
    TOWNS,
    Placed,
    add_operator,
    import_district,
    seed_devices,
)
from tests.integration.console_support import (
    SCREENSHOTS,
    RunningHub,
    english_labels,
    login,
    row,
    serve_hub,
    wait_js,
)
from tests.peers.rtsp import RtspPeer

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.rtsp, pytest.mark.slow]

#: P1 must be acknowledged within 2 s and is re-escalated every 2 s, so the test sees an
#: ignored panic alarm escalate twice within seconds.
FAST_SLA = {
    "sla": {
        "targets": {
            1: {"ack": 2, "resolve": 1800},
            2: {"ack": 300, "resolve": 14400},
            3: {"ack": 1800, "resolve": 86400},
            4: {"ack": 14400, "resolve": 259200},
        }
    },
    "escalation_check_s": 0.5,
}


def fleet(camera_peer: RtspPeer, prefix: str) -> list[Placed]:
    cameras = [
        Placed(
            f"cam-{i + 1}", f"{name} 路口", "camera", i, urls=[camera_peer.url("ball")], offset=0.03
        )
        for i, (_, name) in enumerate(TOWNS)
    ]
    cameras[2] = Placed("cam-3", "萨如拉 广场", "camera", 2, health="offline", offset=0.03)
    cameras[3] = Placed("cam-4", "白音席勒 桥头", "camera", 3, health="degraded", offset=0.03)
    return [
        *cameras,
        Placed(
            "btn-1",
            "第一小学 一键报警",
            "alarm_point",
            0,
            linked=["cam-1"],
            mqtt_id=f"{prefix}-btn-1",
            offset=0.01,
        ),
        Placed(
            "btn-2",
            "第二小学 一键报警",
            "alarm_point",
            1,
            linked=["cam-2"],
            mqtt_id=f"{prefix}-btn-2",
            offset=0.01,
        ),
        Placed("spk-1", "第一小学 广播", "broadcast_unit", 0, tags=["school-01"], offset=-0.01),
    ]


async def directory_knows(running: RunningHub, *mqtt_ids: str) -> None:
    directory = running.hub.mqtt.directory
    await wait_js_python(lambda: all(directory.lookup(m) for m in mqtt_ids))


async def wait_js_python(check: Any, timeout_s: float = 15) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - state set by the hub's thread
            await asyncio.sleep(0.1)


async def no_english(page: Any, view: str) -> None:
    found = await english_labels(page)
    await page.screenshot(path=str(SCREENSHOTS / f"zh_{view}.png"), full_page=True)
    assert not found, f"English labels in the {view} view: {found}"


SLA_SECONDS = """
(selector) => {
  const text = document.querySelector(selector).innerText;
  const m = text.match(/(\\d+):(\\d+)(?::(\\d+))?/);
  if (!m) return null;
  return m[3] === undefined ? Number(m[1]) * 60 + Number(m[2])
    : Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
}
"""

KPI_LAYOUT = """
() => {
  const labels = [...document.querySelectorAll('#kpi-chart text.axis-label')];
  const boxes = labels.map((e) => e.getBoundingClientRect());
  const legend = document.querySelector('#kpi-chart g.legend').getBoundingClientRect();
  const hit = (a, b) =>
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const pairs = [];
  boxes.forEach((a, i) => boxes.forEach((b, j) => { if (i < j && hit(a, b)) pairs.push([i, j]); }));
  return { names: labels.map((e) => e.textContent), pairs,
           legend: boxes.filter((b) => hit(b, legend)).length };
}
"""

ONE_LINE = """
(selector) => {
  const cell = document.querySelector(selector);
  const range = document.createRange();
  range.selectNodeContents(cell);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}
"""


async def test_an_ignored_p1_is_overdue_and_every_view_speaks_chinese(
    chromium: Any, tmp_path: Path, camera_peer: RtspPeer
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = f"gw-zh-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(import_district, tmp_path / "hub")
    with serve_hub(tmp_path, prefix, alarms=FAST_SLA, patrol={"enabled": False}) as running:
        running.run(seed_devices(running.hub, fleet(camera_peer, prefix)))
        running.run(add_operator(running.hub, "duty"))
        await directory_knows(running, f"{prefix}-btn-1", f"{prefix}-btn-2")
        page = await (
            await chromium.new_context(viewport={"width": 1600, "height": 1000})
        ).new_page()
        await login(page, running.base_url, "duty")

        # The buttons stay connected throughout: one that leaves is a device-offline alarm.
        with contextlib.ExitStack() as connected:
            for button in ("btn-1", "btn-2"):
                sim = PanicButtonSim(f"{prefix}-{button}", prefix=prefix)
                connected.enter_context(sim).press()
                await page.wait_for_selector(row(button), timeout=15000)
            await walk_the_console(page, running)


async def health_event(running: RunningHub, device_id: str, kind: str) -> None:
    """What the patrol sends when a camera goes offline or comes back."""
    event = DeviceEvent(time=datetime.now(UTC), device_id=device_id, kind=kind, source="patrol")
    await running.hub.writer.submit(event)


async def walk_the_console(page: Any, running: RunningHub) -> None:
    """The ignored and the handled P1, then every view in Chinese, then English."""
    # The ignored P1: escalated twice; the clock counts from the first deadline, in red.
    alarm_id = await page.get_attribute(row("btn-1"), "data-alarm-id")
    p1_row = f"#queue-body tr[data-alarm-id='{alarm_id}']"
    p1_sla = p1_row + " td.sla"
    await page.wait_for_selector(p1_sla + "[data-late=true]", timeout=15000)
    await wait_js(page, f"Number(document.querySelector({(p1_sla)!r}).dataset.escalation) >= 2", 20)
    alarm = await page.evaluate("id => fetch('/api/alarms/' + id).then(r => r.json())", alarm_id)
    opened = alarm["alarm"]["opened_at"]
    first_due_ms = await page.evaluate("t => Date.parse(t) + 2000", opened)
    first = alarm["alarm"]["ack_due_first"]
    assert await page.evaluate("t => Date.parse(t)", first) == first_due_ms
    # Each escalation moved the stored deadline beyond the first one.
    assert await page.evaluate("t => Date.parse(t)", alarm["alarm"]["ack_due"]) > first_due_ms
    shown = await page.evaluate(SLA_SECONDS, p1_sla)
    late = await page.evaluate("due => (Date.now() - due) / 1000", first_due_ms)
    text = await page.inner_text(p1_sla)
    assert text.startswith("超时"), text
    assert shown is not None and abs(shown - late) <= 2.5, (text, late)
    level = int(await page.get_attribute(p1_sla, "data-escalation") or 0)
    assert f"已升级 {level} 级" in text
    colour = await page.evaluate(
        "s => getComputedStyle(document.querySelector(s + ' .sla-clock')).color", p1_sla
    )
    assert colour == "rgb(229, 72, 77)"
    assert "一键报警：第一小学 一键报警" in await page.inner_text(row("btn-1"))
    assert "新告警" in await page.inner_text(row("btn-1") + " td.state")
    assert await page.evaluate(ONE_LINE, p1_row + " td.state") == 1
    await page.wait_for_selector("#map[data-ready=true]")
    await page.wait_for_selector(".alarm-pin")
    await no_english(page, "queue")

    # The handled P1: acknowledged and resolved, it leaves the queue and shows no clock.
    handled_id = await page.get_attribute(row("btn-2"), "data-alarm-id")
    await page.click(row("btn-2"))
    await page.click("#detail button[data-action=acknowledge]")
    await page.wait_for_selector("#detail[data-state=acknowledged]")
    await page.click("#detail button[data-action=resolve]")
    await page.wait_for_selector("#detail[data-state=resolved]")
    assert (await page.inner_text("#detail dd.sla")).strip() == ""
    await page.wait_for_selector(f"#queue-body tr[data-alarm-id='{handled_id}']", state="detached")

    # The ignored alarm's detail: Chinese title, SOP, history actors, camera names.
    await page.click(row("btn-1"))
    await page.wait_for_selector(f"#detail[data-alarm-id='{alarm_id}'] .history li")
    detail = await page.inner_text("#detail")
    assert "一键报警：第一小学 一键报警" in detail and "调派最近的警力" in detail
    assert "规则引擎" in detail and "时限监控" in detail and "升级" in detail
    assert "赛汗街道" in await page.inner_text("#detail dd.jurisdiction")
    await page.wait_for_selector("#detail button[data-camera=cam-1]")
    assert (await page.inner_text("#detail button[data-camera=cam-1]")) == "观看 赛汗街道 路口"
    assert (await page.inner_text("#detail dd.sla")).startswith("超时")
    await no_english(page, "detail")

    # A camera offline: a maintenance alarm in Chinese; back online, it closes itself and
    # the history says so in Chinese.
    running.run(health_event(running, "cam-3", "health.offline"))
    await page.wait_for_selector(row("cam-3"), timeout=15000)
    assert "设备离线：萨如拉 广场" in await page.inner_text(row("cam-3"))
    offline_id = await page.get_attribute(row("cam-3"), "data-alarm-id")
    await page.click(row("cam-3"))
    await page.wait_for_selector(f"#detail[data-alarm-id='{offline_id}'][data-state=new]")
    assert "检查现场供电与网络" in await page.inner_text("#detail .sop")
    running.run(health_event(running, "cam-3", "health.online"))
    await page.wait_for_selector(f"#detail[data-alarm-id='{offline_id}'][data-state=closed]")
    await page.wait_for_selector("#detail .history .note")
    assert "设备已恢复（恢复在线），告警自动关闭" in await page.inner_text("#detail .history")
    assert (await page.inner_text("#detail dd.sla")).strip() == ""
    await no_english(page, "detail_closed")

    # Maintenance: an offline camera's detail as a label/value grid.
    await page.click("#nav button[data-view=maintenance]")
    await page.wait_for_selector("#maint-body tr[data-device-id=cam-3]")
    await page.click("#maint-body tr[data-device-id=cam-3]")
    await page.wait_for_selector("#maint-detail dl")
    assert (
        await page.evaluate("getComputedStyle(document.querySelector('#maint-detail dl')).display")
        == "grid"
    )
    maint = await page.inner_text("#maint-detail")
    assert "离线" in maint and "萨如拉街道" in maint and "状态变更" in maint
    await no_english(page, "maintenance")

    # KPI: eight town names, none overlapping another or the legend.
    await page.click("#nav button[data-view=kpi]")
    await page.fill("#kpi-filter input[name=jurisdiction]", "150207")
    await page.click("#kpi-filter button[type=submit]")
    await wait_js(page, "document.querySelectorAll('#kpi-chart text.axis-label').length == 8", 10)
    layout = await page.evaluate(KPI_LAYOUT)
    assert layout["names"] == [name for _, name in TOWNS]
    assert layout["pairs"] == [] and layout["legend"] == 0, layout
    assert "九原区" in await page.inner_text("#kpi-summary")
    await no_english(page, "kpi")
    await page.fill("#kpi-filter input[name=jurisdiction]", "")
    await page.click("#kpi-filter button[type=submit]")
    await wait_js(page, "document.getElementById('kpi-summary').innerText.includes('全辖区')", 10)

    # Broadcast: the unit's state in Chinese.
    await page.click("#nav button[data-view=broadcast]")
    await page.wait_for_selector("#bc-units tr[data-unit-id=spk-1]")
    status = await page.inner_text("#bc-units tr[data-unit-id=spk-1] td.status")
    assert re.fullmatch(r"[\u4e00-\u9fff]+", status.strip()), status
    await no_english(page, "broadcast")

    # The wall: the P1's linked camera was put on it and plays once the wall is shown.
    await page.click("#nav button[data-view=wall]")
    await page.wait_for_selector(
        "#wall .tile[data-camera=cam-1][data-state=playing]", timeout=20000
    )
    await no_english(page, "wall")

    # English mode relabels everything, the connection badge too.
    await page.select_option("#lang", "en")
    assert (await page.inner_text("#conn")).strip() == "Live"
    assert (await page.inner_text("#wall-view h2")).strip() == "Video wall"
    await page.click("#nav button[data-view=queue]")
    assert "Panic alarm: 第一小学 一键报警" in await page.inner_text(row("btn-1"))
    assert (await page.inner_text(p1_sla)).startswith("late")
    assert "escalation level" in await page.inner_text(p1_sla)
    await page.screenshot(path=str(SCREENSHOTS / "en_queue.png"), full_page=True)
    await page.select_option("#lang", "zh-CN")
    assert (await page.inner_text("#conn")).strip() == "实时"
