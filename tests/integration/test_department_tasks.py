"""A school panic alarm dispatched to three departments, on SQLite and PostgreSQL.

The police station answers through its own system with an API key, the
education bureau misses its report-in deadline and is escalated to its
supervisor and then the center, the town office is sent back once; the alarm
closes only after every task is accepted, and the month's report shows the
figures of exactly that history.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openpyxl
import pytest

from adapters.sinks import TASK_BODY_SCHEMA
from hub.config import load_settings
from hub.departments.storage import DepartmentRecord
from hub.runtime import Hub
from tests.helpers import act_as, make_event
from tests.integration.alarm_support import (
    SECRET,
    Clock,
    Receiver,
    add_device,
    running_receiver,
)
from tests.peers import free_port

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DISTRICT = "/150207/"
TOWN_A = "/150207/150207001/"
TOWN_B = "/150207/150207002/"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """The police station's own system: a signed-webhook receiver."""
    async with running_receiver(Receiver(), free_port()) as running:
        yield running


@pytest.fixture(params=BACKENDS)
async def hub(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> AsyncIterator[Hub]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(
        None,
        data_dir=tmp_path,
        storage={"url": url},
        departments={
            "check_s": 600,
            "sinks": [
                {
                    "name": "police-a-system",
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{receiver.port}/hook",
                    "secrets": [SECRET],
                }
            ],
        },
    )
    running = Hub(settings)
    running.departments.use_clock(Clock())
    async with running:
        yield running


async def seed(hub: Hub) -> None:
    """District 150207 with towns A and B; the departments that serve them."""
    async with hub.store.transaction() as tx:
        for code, name, level, parent, path in (
            ("150207", "九原区", "district", None, DISTRICT),
            ("150207001", "沙河街道", "town", "150207", TOWN_A),
            ("150207002", "白音席勒街道", "town", "150207", TOWN_B),
        ):
            await tx.execute(
                "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
                " VALUES (%s, %s, %s, %s, %s)",
                (code, name, level, parent, path),
            )
    app = hub.app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as admin:
        act_as(app, role="admin")
        for department_id, body in (
            ("police-a", {"name": "沙河派出所", "kind": "police_station",
                          "jurisdictions": ["150207001"], "sinks": ["police-a-system"],
                          "supervisor": "所长"}),
            ("edu", {"name": "区教育局", "kind": "education_bureau", "jurisdictions": ["150207"]}),
            ("town-a", {"name": "沙河街道办", "kind": "town_office",
                        "jurisdictions": ["150207001"]}),
            ("town-b", {"name": "白音席勒街道办", "kind": "town_office",
                        "jurisdictions": ["150207002"]}),
        ):  # fmt: skip
            response = await admin.put(f"/api/departments/{department_id}", json=body)
            assert response.status_code == 200, response.text
        bad = await admin.put(
            "/api/departments/x", json={"name": "x", "kind": "fire", "jurisdictions": ["999"]}
        )
        assert bad.status_code == 422 and "unknown jurisdiction 999" in bad.json()["detail"]
        for department_id, members in (
            ("police-a", ["key:police-a-system"]),
            ("edu", ["user:edu-duty"]),
            ("town-a", ["user:town-a-duty"]),
            ("town-b", ["user:town-b-duty"]),
        ):
            response = await admin.put(
                f"/api/departments/{department_id}/members", json={"members": members}
            )
            assert response.status_code == 200, response.text


async def wait_for_tasks(client: httpx.AsyncClient, count: int) -> str:
    """The first alarm's id, once it has `count` tasks (dispatched by rule after opening)."""
    async with asyncio.timeout(10):
        while True:
            alarms = (await client.get("/api/alarms")).json()["items"]
            if alarms:
                lanes = (await client.get(f"/api/tasks/alarms/{alarms[0]['id']}")).json()
                if len(lanes) >= count:
                    return str(alarms[0]["id"])
            await asyncio.sleep(0.02)


class Caller:
    """Requests to the hub as one principal (an act_as user, or a real API key)."""

    def __init__(self, hub: Hub, app: Any, client: httpx.AsyncClient) -> None:
        self.hub, self.app, self.client = hub, app, client

    async def as_user(
        self, role: str, subject: str, scope: tuple[str, ...], method: str, url: str, **kw: Any
    ) -> httpx.Response:
        act_as(self.app, role=role, scope=scope, subject=subject)
        return await self.client.request(method, url, **kw)

    async def with_key(self, token: str, method: str, url: str, **kw: Any) -> httpx.Response:
        self.app.dependency_overrides.clear()
        headers = {"authorization": f"Bearer {token}", **kw.pop("headers", {})}
        return await self.client.request(method, url, headers=headers, **kw)


async def test_panic_alarm_three_departments_escalation_send_back_close_and_report(
    hub: Hub, receiver: Receiver
) -> None:
    await seed(hub)
    clock = hub.departments._clock
    assert isinstance(clock, Clock)
    key = await hub.auth.create_api_key(
        "police-a-system", "department", ["150207001"], actor="system:test"
    )
    app = hub.app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        call = Caller(hub, app, client)

        def center(method: str, url: str, **kw: Any) -> Any:
            return call.as_user("operator", "center", ("/",), method, url, **kw)

        def duty(department: str, method: str, url: str, **kw: Any) -> Any:
            return call.as_user("department", f"{department}-duty", (TOWN_A,), method, url, **kw)

        # A panic press at a school in town A: the rule dispatches at once.
        await add_device(hub.store, "btn-a", kind="panic", path=TOWN_A, name="沙河第一小学")
        await hub.writer.submit(make_event(1, device_id="btn-a", kind="panic.press", source="mqtt"))
        async with asyncio.timeout(10):
            while True:
                alarms = (await center("GET", "/api/alarms")).json()["items"]
                lanes = (
                    (await center("GET", f"/api/tasks/alarms/{alarms[0]['id']}")).json()
                    if alarms
                    else []
                )
                if len(lanes) == 3:
                    break
                await asyncio.sleep(0.02)
        alarm_id = alarms[0]["id"]
        task = {lane["department_id"]: lane["id"] for lane in lanes}
        assert sorted(task) == ["edu", "police-a", "town-a"]
        assert {lane["state"] for lane in lanes} == {"dispatched"}
        assert all(lane["stage"] == "report_in" for lane in lanes)

        # The police station's own system gets the task through the outbox, once per revision.
        async with hub.store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT idempotency_key, sink, payload FROM outbox WHERE alarm_id = %s",
                (task["police-a"],),
            )
        assert [(r[0], r[1]) for r in rows] == [
            (f"{task['police-a']}:1:police-a-system", "police-a-system")
        ]

        # Reporting in: the police by API key after 60 s, the town office after 120 s.
        clock.advance(60)
        answered = await call.with_key(
            key.token, "POST", f"/api/tasks/{task['police-a']}/report_in"
        )
        assert answered.status_code == 200, answered.text
        assert answered.json()["state"] == "reported_in"
        # The key cannot answer for another department, nor act as the center.
        other = await call.with_key(key.token, "POST", f"/api/tasks/{task['edu']}/report_in")
        assert other.status_code == 404
        accept = await call.with_key(key.token, "POST", f"/api/tasks/{task['police-a']}/accept")
        assert accept.status_code == 403
        clock.advance(60)
        assert (
            await duty("town-a", "POST", f"/api/tasks/{task['town-a']}/report_in")
        ).status_code == 200

        # The education bureau misses its 5-minute deadline: supervisor first, then the center.
        clock.advance(181)
        assert await hub.departments.escalate_due() == 1
        assert await hub.departments.escalate_due() == 0
        clock.advance(600)
        assert await hub.departments.escalate_due() == 1
        lanes = (await center("GET", f"/api/tasks/alarms/{alarm_id}")).json()
        edu = next(lane for lane in lanes if lane["department_id"] == "edu")
        assert edu["escalation_level"] == 2 and edu["overdue"] and edu["missed"] == ["report_in"]
        history = (await center("GET", f"/api/tasks/{task['edu']}")).json()["history"]
        assert [(h["action"], h["details"].get("to")) for h in history] == [
            ("dispatch", None),
            ("escalate", "supervisor"),
            ("escalate", "center"),
        ]
        clock.advance(119)  # 17 min after the dispatch
        assert (await duty("edu", "POST", f"/api/tasks/{task['edu']}/report_in")).status_code == 200

        # Everyone arrives and feeds back; the town office adds a photo.
        clock.advance(60)
        await call.with_key(key.token, "POST", f"/api/tasks/{task['police-a']}/arrive")
        assert (await duty("edu", "POST", f"/api/tasks/{task['edu']}/arrive")).status_code == 200
        assert (
            await duty("town-a", "POST", f"/api/tasks/{task['town-a']}/arrive")
        ).status_code == 200
        not_an_image = await duty(
            "town-a", "POST", f"/api/tasks/{task['town-a']}/photos",
            content=b"GIF89a....", headers={"content-type": "image/png"},
        )  # fmt: skip
        assert (
            not_an_image.status_code == 422 and "not a image/png" in not_an_image.json()["detail"]
        )
        wrong_type = await duty(
            "town-a", "POST", f"/api/tasks/{task['town-a']}/photos",
            content=b"<svg/>", headers={"content-type": "image/svg+xml"},
        )  # fmt: skip
        assert wrong_type.status_code == 415
        too_big = await duty(
            "town-a", "POST", f"/api/tasks/{task['town-a']}/photos",
            content=PNG + b"\x00" * (5 * 1024 * 1024), headers={"content-type": "image/png"},
        )  # fmt: skip
        assert too_big.status_code == 413
        photo = await duty(
            "town-a", "POST", f"/api/tasks/{task['town-a']}/photos",
            content=PNG, headers={"content-type": "image/png"},
        )  # fmt: skip
        assert photo.status_code == 201, photo.text
        fetched = await center("GET", photo.json()["url"])
        assert fetched.content == PNG and fetched.headers["content-type"] == "image/png"
        clock.advance(60)
        for department, answer in (("edu", "已到校核查"), ("town-a", "已疏导家长")):
            response = await duty(
                department, "POST", f"/api/tasks/{task[department]}/submit_feedback",
                json={"note": answer},
            )  # fmt: skip
            assert response.status_code == 200, response.text
        response = await call.with_key(
            key.token, "POST", f"/api/tasks/{task['police-a']}/submit_feedback",
            json={"note": "现场已控制"},
        )  # fmt: skip
        assert response.status_code == 200

        # The center: the alarm cannot close while tasks wait.
        base = f"/api/alarms/{alarm_id}"
        for action in ("acknowledge", "resolve"):
            assert (await center("POST", f"{base}/{action}", json={})).status_code == 200
        refused = await center("POST", f"{base}/close", json={"note": "done"})
        assert refused.status_code == 409
        assert "not all accepted" in refused.json()["detail"]
        assert "town-a (feedback_submitted)" in refused.json()["detail"]

        sent = await center(
            "POST", f"/api/tasks/{task['town-a']}/send_back", json={"note": "缺少现场照片说明"}
        )
        assert sent.status_code == 200 and sent.json()["state"] == "on_site"
        assert sent.json()["sent_back"] == 1
        for department in ("police-a", "edu"):
            response = await center("POST", f"/api/tasks/{task[department]}/accept")
            assert response.status_code == 200 and response.json()["state"] == "accepted"
        assert (await center("POST", f"{base}/close", json={"note": "x"})).status_code == 409
        clock.advance(60)
        response = await duty(
            "town-a", "POST", f"/api/tasks/{task['town-a']}/submit_feedback",
            json={"note": "已补充照片"},
        )  # fmt: skip
        assert response.status_code == 200
        assert (await center("POST", f"/api/tasks/{task['town-a']}/accept")).status_code == 200
        closed = await center("POST", f"{base}/close", json={"note": "闭环"})
        assert closed.status_code == 200 and closed.json()["state"] == "closed"

        # Every step is in the change log that the console's stream follows.
        async with hub.store.reading() as tx:
            actions = [
                str(r[0])
                for r in await tx.fetchall(
                    "SELECT action FROM alarm_changes WHERE alarm_id = %s AND action LIKE %s"
                    " ORDER BY seq",
                    (alarm_id, "task.%"),
                )
            ]
        assert actions.count("task.dispatch") == 3 and actions.count("task.escalate") == 2
        assert actions.count("task.send_back") == 1 and actions.count("task.accept") == 3

        # The report of November 2026 shows exactly that history.
        report = await center("GET", "/api/reports/dispatch?month=2026-11")
        assert report.status_code == 200, report.text
        by_code = {r["code"]: r for r in report.json()["departments"]}
        assert by_code["police-a"] == {
            "group": "department", "code": "police-a", "name": "沙河派出所", "received": 1,
            "reported_in": 1, "report_in_p50_s": 60.0, "report_in_p90_s": 60.0,
            "on_time_rate": 1.0, "sent_back_rate": 0.0,
        }  # fmt: skip
        edu, town_a = by_code["edu"], by_code["town-a"]
        assert (edu["report_in_p50_s"], edu["on_time_rate"]) == (1020.0, 0.0)
        assert (town_a["report_in_p50_s"], town_a["sent_back_rate"]) == (120.0, 1.0)
        assert town_a["on_time_rate"] == 1.0
        assert "town-b" not in by_code
        (town,) = report.json()["towns"]
        assert town == {
            "group": "town", "code": "150207001", "name": "沙河街道", "received": 3,
            "reported_in": 3, "report_in_p50_s": 120.0, "report_in_p90_s": 1020.0,
            "on_time_rate": 0.6667, "sent_back_rate": 0.3333,
        }  # fmt: skip
        as_csv = await center("GET", "/api/reports/dispatch?month=2026-11&format=csv")
        parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert [(r["code"], r["received"]) for r in parsed] == [
            ("edu", "1"), ("police-a", "1"), ("town-a", "1"), ("150207001", "3"),
        ]  # fmt: skip
        as_xlsx = await center("GET", "/api/reports/dispatch?month=2026-11&format=xlsx")
        sheet = openpyxl.load_workbook(io.BytesIO(as_xlsx.content)).active
        assert sheet is not None
        cells = [list(row) for row in sheet.iter_rows(values_only=True)]
        assert cells[-1][:6] == ["2026-11", "town", "150207001", "沙河街道", 3, 3]
        other_month = (await center("GET", "/api/reports/dispatch?month=2026-10")).json()
        assert other_month["departments"] == [] and other_month["towns"] == []
        week = (await center("GET", "/api/reports/dispatch?week=2026-W47")).json()
        assert sum(r["received"] for r in week["departments"]) == 3
        bad = await center("GET", "/api/reports/dispatch?month=2026-13")
        assert bad.status_code == 422
    app.dependency_overrides.clear()

    # The police station's system got each revision of its task once, signed, by its key.
    police = task["police-a"]
    async with asyncio.timeout(30):
        while len(receiver.accepted) < 5:  # noqa: ASYNC110 - filled by the receiver's handler
            await asyncio.sleep(0.05)
    assert receiver.bad_signatures == 0
    assert sorted(receiver.accepted) == [
        f"{police}:{revision}:police-a-system" for revision in range(1, 6)
    ]
    events = [receiver.accepted[f"{police}:{r}:police-a-system"]["event"] for r in range(1, 6)]
    assert events == [
        "task.dispatch", "task.report_in", "task.arrive", "task.submit_feedback", "task.accept",
    ]  # fmt: skip
    schema = json.loads(TASK_BODY_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for webhook_id, body in receiver.accepted.items():
        assert body["idempotency_key"] == webhook_id
        checker.validate(body)
    first = receiver.accepted[f"{police}:1:police-a-system"]
    act_as(app, role="operator", subject="center")
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        async with asyncio.timeout(30):
            while True:
                shown = (await client.get(f"/api/tasks/{police}")).json()["deliveries"]
                if len(shown) == 5 and {d["state"] for d in shown} == {"delivered"}:
                    break
                await asyncio.sleep(0.05)
        assert [(d["sink"], d["revision"]) for d in shown] == [
            ("police-a-system", revision) for revision in range(1, 6)
        ]
    app.dependency_overrides.clear()
    assert first["alarm"]["type"] == "panic" and first["department_id"] == "police-a"
    assert first["task"]["report_in_due"] and first["alarm"]["sop"]

    # The same figures from the command line, on the same database.
    env = {"GRIDWATCH_DATA_DIR": str(hub.settings.data_dir), "PATH": "/usr/bin:/bin"}
    if hub.store.dialect == "postgresql":
        env["GRIDWATCH_STORAGE__URL"] = hub.settings.storage_url()
    command = [sys.executable, "-m", "hub.cli", "report", "dispatch", "--month", "2026-11"]
    table = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, env=env, timeout=120
    )
    assert table.returncode == 0, table.stderr
    assert "150207001" in table.stdout and "66.7%" in table.stdout and "1020" in table.stdout
    out = Path(hub.settings.data_dir) / "dispatch.xlsx"
    written = await asyncio.to_thread(
        subprocess.run,
        [*command[:-2], "--week", "2026-W47", "--format", "xlsx", "--output", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert written.returncode == 0, written.stderr
    sheet = openpyxl.load_workbook(out).active
    assert sheet is not None
    assert [row[2] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        "edu", "police-a", "town-a", "150207001",
    ]  # fmt: skip
    wrong = await asyncio.to_thread(
        subprocess.run, [*command[:-1], "November"], capture_output=True, text=True, env=env
    )
    assert wrong.returncode == 2 and "month must look like 2026-11" in wrong.stderr


async def test_override_lets_the_alarm_close_and_is_audited(hub: Hub) -> None:
    await seed(hub)
    app = hub.app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        act_as(app, role="operator", subject="center")
        await add_device(hub.store, "btn-b", kind="panic", path=TOWN_B, name="白音席勒小学")
        await hub.writer.submit(make_event(1, device_id="btn-b", kind="panic.press", source="mqtt"))
        alarm_id = await wait_for_tasks(client, 2)
        # Town B has no police station of its own and none district-wide: two tasks.
        lanes = (await client.get(f"/api/tasks/alarms/{alarm_id}")).json()
        assert sorted(lane["department_id"] for lane in lanes) == ["edu", "town-b"]
        manual = await client.post(
            f"/api/tasks/alarms/{alarm_id}", json={"departments": ["police-a"]}
        )
        assert manual.status_code == 200 and len(manual.json()) == 1
        again = await client.post(f"/api/tasks/alarms/{alarm_id}", json={"departments": ["edu"]})
        assert again.json() == []
        unknown = await client.post(f"/api/tasks/alarms/{alarm_id}", json={"departments": ["no"]})
        assert unknown.status_code == 422
        base = f"/api/alarms/{alarm_id}"
        await client.post(f"{base}/acknowledge", json={})
        assert (await client.post(f"{base}/false_alarm", json={"note": "误报"})).status_code == 409
        empty = await client.post(f"/api/tasks/alarms/{alarm_id}/override", json={"reason": " "})
        assert empty.status_code == 422
        withdrawn = await client.post(
            f"/api/tasks/alarms/{alarm_id}/override", json={"reason": "学校确认误触"}
        )
        assert withdrawn.status_code == 200 and len(withdrawn.json()) == 3
        assert {t["state"] for t in withdrawn.json()} == {"withdrawn"}
        assert (await client.post(f"{base}/false_alarm", json={"note": "误报"})).status_code == 200
        async with hub.store.reading() as tx:
            row = await tx.fetchone(
                "SELECT actor, details FROM audit_log WHERE action = %s", ("alarm.task_override",)
            )
        assert row is not None and row[0] == "user:center"
        assert "学校确认误触" in str(row[1])
    app.dependency_overrides.clear()


async def test_an_alarm_opened_while_nothing_dispatched_is_dispatched_at_start(hub: Hub) -> None:
    """Rule dispatch catches up at start with open alarms that have no task."""
    await hub.departments.stop()
    async with hub.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
            " VALUES (%s, %s, %s, %s, %s), (%s, %s, %s, %s, %s)",
            ("150207", "九原区", "district", None, DISTRICT,
             "150207001", "沙河街道", "town", "150207", TOWN_A),
        )  # fmt: skip
    await add_device(hub.store, "btn-a", kind="panic", path=TOWN_A, name="沙河第一小学")
    await hub.writer.submit(make_event(1, device_id="btn-a", kind="panic.press", source="mqtt"))
    async with asyncio.timeout(10):
        while True:
            async with hub.store.reading() as tx:
                row = await tx.fetchone("SELECT id FROM alarms")
            if row is not None:
                break
            await asyncio.sleep(0.02)
    for department_id, kind in (("police-a", "police_station"), ("town-a", "town_office")):
        record = DepartmentRecord(department_id, department_id, kind, ("150207001",))
        await hub.departments.save_department("system:test", record)
    # The clock of the test is the alarm's day: the alarm is recent.
    assert await hub.departments.catch_up() == 2
    assert await hub.departments.catch_up() == 0
    tasks = await hub.departments.alarm_tasks(uuid.UUID(str(row[0])))
    assert sorted(t.department_id for t in tasks) == ["police-a", "town-a"]
