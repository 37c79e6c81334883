"""Department tasks in a real Chromium against a real hub server.

A school panic press is dispatched by rule to three departments. The police
station's duty officer signs in to the department view, reports in, arrives and
submits feedback with a photo, while the center's alarm view shows the police
lane change without a reload; a missed deadline stands out; the center accepts
the feedback; the dispatch report draws its chart. Screenshots go to
test-output/screenshots/.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.departments.storage import DepartmentRecord
from hub.runtime import Hub
from tests.helpers import make_event
from tests.integration.alarm_support import add_device
from tests.integration.console_support import (
    PASSWORD,
    SCREENSHOTS,
    login,
    row,
    serve_hub,
)

pytestmark = [pytest.mark.browser, pytest.mark.mqtt, pytest.mark.slow]

TOWN_A = "/150207/150207001/"


def png(width: int = 4, height: int = 4) -> bytes:
    """A small valid PNG (red square), built without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def seed(hub: Hub) -> None:
    """Town A of district 150207, its school's panic button, three departments, two users."""
    async with hub.store.transaction() as tx:
        for code, name, level, parent, path in (
            ("150207", "九原区", "district", None, "/150207/"),
            ("150207001", "沙河街道", "town", "150207", TOWN_A),
        ):
            await tx.execute(
                "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
                " VALUES (%s, %s, %s, %s, %s)",
                (code, name, level, parent, path),
            )
    await add_device(hub.store, "btn-school-a", kind="panic", path=TOWN_A, name="沙河第一小学")
    await hub.auth.refresh_tree()
    for department_id, name, kind, code in (
        ("police-a", "沙河派出所", "police_station", "150207001"),
        ("edu", "区教育局", "education_bureau", "150207"),
        ("town-a", "沙河街道办", "town_office", "150207001"),
    ):
        record = DepartmentRecord(department_id, name, kind, (code,))
        await hub.departments.save_department("system:test", record)
    await hub.departments.set_members("system:test", "police-a", ["user:police-duty"], None)
    await hub.auth.create_user("center", PASSWORD, "operator", ["/"], actor="system:test")
    await hub.auth.create_user(
        "police-duty", PASSWORD, "department", ["150207001"], actor="system:test"
    )


def lane(department: str, state: str | None = None) -> str:
    found = f"#task-lanes .lane[data-department={department}]"
    return found + (f"[data-state={state}]" if state else "")


async def test_department_reports_in_and_feeds_back_while_the_center_watches(
    chromium: Any, tmp_path: Path
) -> None:
    browser = chromium
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    photo = tmp_path / "现场.png"
    photo.write_bytes(png())
    with serve_hub(tmp_path, f"gw-tasks-{uuid.uuid4().hex[:8]}") as running:
        running.run(seed(running.hub))
        center = await (
            await browser.new_context(viewport={"width": 1440, "height": 1000})
        ).new_page()
        await login(center, running.base_url, "center")
        running.run(
            running.hub.writer.submit(
                make_event(1, device_id="btn-school-a", kind="panic.press", source="mqtt")
            )
        )
        await center.wait_for_selector(row("btn-school-a"), timeout=15000)
        await center.click(row("btn-school-a"))
        # Dispatched by rule at once: one lane per department, each with its clock.
        for department in ("police-a", "edu", "town-a"):
            await center.wait_for_selector(lane(department, "dispatched"), timeout=15000)
        assert "报到剩余" in await center.inner_text(lane("police-a") + " .task-clock")

        # The police station's duty officer sees the department view only.
        officer = await (
            await browser.new_context(viewport={"width": 1280, "height": 900})
        ).new_page()
        await officer.goto(running.base_url + "/")
        await officer.fill("#username", "police-duty")
        await officer.fill("#password", PASSWORD)
        await officer.click("#login-submit")
        await officer.wait_for_selector("body[data-view=tasks]")
        assert await officer.is_hidden("#nav button[data-view=queue]")
        await officer.wait_for_selector("#task-queue-body tr")
        assert await officer.locator("#task-queue-body tr").count() == 1
        await officer.click("#task-queue-body tr")
        await officer.wait_for_selector("#task-detail[data-state=dispatched]")
        assert "沙河第一小学" in await officer.inner_text("#task-detail h3")

        await officer.click("#task-detail button[data-task-action=report_in]")
        await officer.wait_for_selector("#task-detail[data-state=reported_in]")
        # The center sees the police lane change, live (no reload, no click).
        await center.wait_for_selector(lane("police-a", "reported_in"), timeout=10000)

        await officer.click("#task-detail button[data-task-action=arrive]")
        await officer.wait_for_selector("#task-detail[data-state=on_site]")
        await center.wait_for_selector(lane("police-a", "on_site"), timeout=10000)
        await officer.fill("#task-detail textarea[name=feedback]", "学生已安全疏散，现场已控制")
        await officer.set_input_files("#task-detail input[name=photos]", str(photo))
        await officer.click("#task-detail button[data-task-action=submit_feedback]")
        await officer.wait_for_selector("#task-detail[data-state=feedback_submitted]")
        await officer.wait_for_selector("#task-detail .media img[src*='/photos/']")
        await officer.screenshot(path=str(SCREENSHOTS / "department-task.png"), full_page=True)

        await center.wait_for_selector(lane("police-a", "feedback_submitted"), timeout=10000)
        await center.wait_for_selector(lane("police-a") + " .lane-photos img", timeout=10000)
        assert "学生已安全疏散" in await center.inner_text(lane("police-a"))
        loaded = await center.evaluate(
            f'document.querySelector("{lane("police-a")} .lane-photos img").naturalWidth'
        )
        assert loaded == 4

        # The education bureau and the town office miss their report-in: they stand out.
        later = datetime.now(UTC) + timedelta(minutes=6)
        assert running.run(running.hub.departments.escalate_due(later)) == 2
        await center.wait_for_selector(lane("edu") + ".overdue .task-escalated", timeout=10000)
        assert "已报分管领导" in await center.inner_text(lane("edu"))
        assert not await center.locator(lane("police-a") + ".overdue").count()

        # The center accepts the police feedback.
        await center.click(lane("police-a") + " button[data-task-action=accept]")
        await center.wait_for_selector(lane("police-a", "accepted"), timeout=10000)
        await center.screenshot(path=str(SCREENSHOTS / "center-lanes.png"), full_page=True)

        # English texts for the same lanes.
        await center.select_option("#lang", "en")
        await center.wait_for_selector("#task-lanes h4:has-text('Department tasks')")
        assert "supervisor told" in await center.inner_text(lane("edu"))

        # The dispatch report of this month, with its chart.
        await center.click("#nav button[data-view=dispatch]")
        await center.click("#dispatch-form button[type=submit]")
        await center.wait_for_selector("#dispatch-out svg.report-chart rect.on-time")
        assert await center.locator("#dispatch-out svg rect.on-time").count() == 3
        assert "police-a" in await center.inner_html("table.report[data-group=department]")
        await center.screenshot(path=str(SCREENSHOTS / "dispatch-report.png"), full_page=True)
