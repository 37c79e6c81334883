"""Every route of the app has an authorization case: 401, 403 and (for ids) 404 out of scope.

`ROUTES` lists each route with the roles it admits. A route added without a
line here fails `test_every_route_has_an_authorization_case`, naming the route:
add its case (and make the route check role and jurisdiction) to make it pass.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from hub.auth.guards import Role
from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as

TOWN_A = "/150102/150102001/"
TOWN_B = "/150102/150102002/"
ALL = tuple(r for r in Role if r is not Role.ADMIN)
PUBLIC = "public"
LOOPBACK = "loopback"  # public from 127.0.0.1 only (see hub.auth.guards.metrics_access)
OP, DI, MA, AU = Role.OPERATOR, Role.DISPATCHER, Role.MAINTENANCE, Role.AUDITOR
DE = Role.DEPARTMENT
ADMIN_ONLY: tuple[Role, ...] = ()
RANDOM = str(uuid.UUID(int=7))
GB_DEVICE = "15020700001320000099"


@dataclass(frozen=True)
class Case:
    """Who may call a route, a concrete path for it, and what to send."""

    roles: tuple[Role, ...] | str
    path: str | None = None
    body: Any = None
    #: "record": the id names a real record in town A; "absent": no such record exists
    #: (the 404 then only shows the route answers 404, not 403/200, for a foreign id);
    #: None: the route takes no jurisdiction-scoped id.
    scoped_id: str | None = None


SDP = {"sdp": "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\nm=video 9 UDP 0\r\n", "type": "offer"}
TTS = {"action": "tts", "text": "请立即疏散"}
DEVICE_PUT = {"id": "cam-a", "name": "Gate camera", "kind": "camera", "jurisdiction": "150102001"}

ROUTES: dict[tuple[str, str], Case] = {
    ("GET", "/openapi.json"): Case(PUBLIC),
    ("GET", "/docs"): Case(PUBLIC),
    ("GET", "/redoc"): Case(PUBLIC),
    # The static files of /docs and /redoc (a mount, listed without methods).
    ("WS", "/docs/assets"): Case(PUBLIC),
    ("GET", "/healthz"): Case(PUBLIC),
    ("GET", "/readyz"): Case(PUBLIC),
    ("GET", "/metrics"): Case(LOOPBACK),
    ("GET", "/"): Case(PUBLIC),
    ("GET", "/console/{name:path}"): Case(PUBLIC, "/console/app.js"),
    ("POST", "/api/auth/login"): Case(PUBLIC),
    ("POST", "/api/auth/logout"): Case(ALL),
    ("GET", "/api/auth/me"): Case(ALL),
    ("POST", "/api/auth/password"): Case(ALL, body={"current_password": "x", "new_password": "y"}),
    ("GET", "/api/users"): Case(ADMIN_ONLY),
    ("POST", "/api/users"): Case(ADMIN_ONLY, body={}),
    ("GET", "/api/users/{username}"): Case(ADMIN_ONLY, "/api/users/admin"),
    ("PATCH", "/api/users/{username}"): Case(ADMIN_ONLY, "/api/users/admin", body={}),
    ("GET", "/api/apikeys"): Case(ADMIN_ONLY),
    ("POST", "/api/apikeys"): Case(ADMIN_ONLY, body={}),
    ("DELETE", "/api/apikeys/{key_id}"): Case(ADMIN_ONLY, "/api/apikeys/0123456789ab"),
    ("GET", "/api/audit"): Case((AU,)),
    ("POST", "/api/live/{camera_id}/offer"): Case(
        (OP, MA), "/api/live/cam-a/offer", body=SDP, scoped_id="record"
    ),
    ("DELETE", "/api/live/viewers/{viewer_id}"): Case(
        (OP, MA), f"/api/live/viewers/{RANDOM}", scoped_id="absent"
    ),
    # Registry
    ("GET", "/api/devices"): Case((OP, MA, DI)),
    ("GET", "/api/devices/export"): Case((OP, MA, DI)),
    ("GET", "/api/devices/import-template"): Case((OP, MA, DI)),
    ("GET", "/api/devices/next-id"): Case((MA,)),
    ("POST", "/api/devices/import"): Case((MA,)),
    ("POST", "/api/devices/bulk"): Case((MA,), body={}),
    ("POST", "/api/devices"): Case((MA,), body={}),
    ("GET", "/api/devices/{device_id}"): Case(
        (OP, MA, DI), "/api/devices/cam-a", scoped_id="record"
    ),
    ("PUT", "/api/devices/{device_id}"): Case(
        (MA,), "/api/devices/cam-a", body=DEVICE_PUT, scoped_id="record"
    ),
    ("DELETE", "/api/devices/{device_id}"): Case((MA,), "/api/devices/cam-a", scoped_id="record"),
    ("GET", "/api/devices/{device_id}/nearby-cameras"): Case(
        (OP, MA, DI), "/api/devices/cam-a/nearby-cameras", scoped_id="record"
    ),
    ("GET", "/api/jurisdictions"): Case((OP, MA, DI)),
    ("GET", "/api/jurisdictions/tree"): Case((OP, MA, DI)),
    ("GET", "/api/jurisdictions/counts"): Case((OP, MA, DI)),
    ("GET", "/api/jurisdictions/boundaries"): Case((OP, MA, DI)),
    ("GET", "/api/console/map"): Case((OP, MA, DI)),
    ("GET", "/api/jurisdictions/{code}"): Case(
        (OP, MA, DI), "/api/jurisdictions/150102001", scoped_id="record"
    ),
    ("GET", "/api/jurisdictions/{code}/counts"): Case(
        (OP, MA, DI), "/api/jurisdictions/150102001/counts", scoped_id="record"
    ),
    ("POST", "/api/jurisdictions"): Case(ADMIN_ONLY, body={}),
    ("PUT", "/api/jurisdictions/{code}"): Case(ADMIN_ONLY, "/api/jurisdictions/150102001", body={}),
    # Alarms
    ("GET", "/api/alarms"): Case((OP, DI, MA)),
    ("GET", "/api/alarms/changes"): Case((DI, OP)),
    ("GET", "/api/alarms/sinks"): Case((OP,)),
    ("POST", "/api/alarms/sinks/{name}/enable"): Case(ADMIN_ONLY, "/api/alarms/sinks/x/enable"),
    ("GET", "/api/alarms/stream"): Case((OP, DI, MA)),
    ("WS", "/api/alarms/ws"): Case((OP, DI, MA)),
    ("GET", "/api/alarms/{alarm_id}"): Case(
        (OP, DI, MA), "/api/alarms/{alarm}", scoped_id="record"
    ),
    ("GET", "/api/alarms/{alarm_id}/media/{media_id}"): Case(
        (OP, DI, MA), f"/api/alarms/{{alarm}}/media/{RANDOM}", scoped_id="record"
    ),
    ("POST", "/api/alarms/{alarm_id}/{action}"): Case(
        (OP,), "/api/alarms/{alarm}/acknowledge", body={}, scoped_id="record"
    ),
    ("POST", "/api/drills"): Case(ADMIN_ONLY, body={}),
    # Broadcast
    ("GET", "/api/broadcast/units"): Case((OP, DI)),
    ("POST", "/api/broadcast/units/{unit_id}/commands"): Case(
        (OP,), "/api/broadcast/units/bc-a/commands", body=TTS, scoped_id="record"
    ),
    ("POST", "/api/broadcast/zones/{zone}/commands"): Case(
        (OP,), "/api/broadcast/zones/school/commands", body=TTS
    ),
    ("GET", "/api/broadcast/commands/{command_id}"): Case(
        (OP, DI), f"/api/broadcast/commands/{RANDOM}", scoped_id="absent"
    ),
    # The cluster's nodes
    ("GET", "/api/cluster/nodes"): Case(ADMIN_ONLY),
    # GB/T 28181 devices (ids of devices that do not exist in town A)
    ("GET", "/api/gb28181/status"): Case((MA, OP)),
    ("GET", "/api/gb28181/devices"): Case((MA, OP)),
    ("GET", "/api/gb28181/devices/{device_id}"): Case(
        (MA, OP), f"/api/gb28181/devices/{GB_DEVICE}", scoped_id="absent"
    ),
    ("POST", "/api/gb28181/devices/{device_id}/accept"): Case(
        (MA,), f"/api/gb28181/devices/{GB_DEVICE}/accept", body={}, scoped_id="absent"
    ),
    ("DELETE", "/api/gb28181/devices/{device_id}/pending"): Case(
        (MA,), f"/api/gb28181/devices/{GB_DEVICE}/pending", scoped_id="absent"
    ),
    ("POST", "/api/gb28181/devices/{device_id}/arm"): Case(
        (MA,), f"/api/gb28181/devices/{GB_DEVICE}/arm", scoped_id="absent"
    ),
    ("POST", "/api/gb28181/devices/{device_id}/catalog"): Case(
        (MA,), f"/api/gb28181/devices/{GB_DEVICE}/catalog", scoped_id="absent"
    ),
    # Evidence clips and pre-alarm buffers
    ("GET", "/api/evidence/alarms/{alarm_id}/clips"): Case(
        (OP, DI), f"/api/evidence/alarms/{RANDOM}/clips", scoped_id="absent"
    ),
    ("GET", "/api/evidence/clips/{clip_id}"): Case(
        (OP, DI), f"/api/evidence/clips/{RANDOM}", scoped_id="absent"
    ),
    ("GET", "/api/evidence/buffers"): Case((MA, OP)),
    ("GET", "/api/evidence/shortfalls"): Case((MA, OP)),
    # Health, patrol, KPI, ONVIF
    ("GET", "/api/devices/{device_id}/health"): Case(
        (OP, MA), "/api/devices/cam-a/health", scoped_id="record"
    ),
    ("GET", "/api/health/summary"): Case((OP, MA)),
    ("GET", "/api/media/evidence/{evidence_id}"): Case(
        (OP, MA), f"/api/media/evidence/{RANDOM}", scoped_id="absent"
    ),
    ("GET", "/api/patrol"): Case((OP, MA)),
    ("POST", "/api/patrol/run"): Case((MA,)),
    ("GET", "/api/kpi"): Case((OP, MA)),
    ("POST", "/api/devices/{device_id}/probe"): Case(
        (MA,), "/api/devices/cam-a/probe", scoped_id="record"
    ),
    ("GET", "/api/devices/{device_id}/onvif"): Case(
        (MA, OP), "/api/devices/cam-a/onvif", scoped_id="record"
    ),
    ("GET", "/api/onvif/discovery"): Case((MA,)),
    ("POST", "/api/onvif/discovery/onboard"): Case((MA,), body={}),
    # Departments and department tasks
    ("GET", "/api/departments"): Case((OP, DE)),
    ("PUT", "/api/departments/{department_id}"): Case(ADMIN_ONLY, "/api/departments/x", body={}),
    ("PUT", "/api/departments/{department_id}/members"): Case(
        ADMIN_ONLY, "/api/departments/x/members", body={}
    ),
    ("GET", "/api/tasks/alarms/{alarm_id}"): Case(
        (OP, DI), "/api/tasks/alarms/{alarm}", scoped_id="record"
    ),
    ("POST", "/api/tasks/alarms/{alarm_id}"): Case(
        (OP,), "/api/tasks/alarms/{alarm}", body={"departments": ["police-a"]}, scoped_id="record"
    ),
    ("POST", "/api/tasks/alarms/{alarm_id}/by-rule"): Case(
        (OP,), "/api/tasks/alarms/{alarm}/by-rule", scoped_id="record"
    ),
    ("POST", "/api/tasks/alarms/{alarm_id}/override"): Case(
        (OP,), "/api/tasks/alarms/{alarm}/override", body={"reason": "x"}, scoped_id="record"
    ),
    ("GET", "/api/tasks"): Case((OP, DI, DE)),
    ("GET", "/api/tasks/{task_id}"): Case((OP, DI, DE), "/api/tasks/{task}", scoped_id="record"),
    ("POST", "/api/tasks/{task_id}/photos"): Case(
        (OP, DE), "/api/tasks/{task}/photos", scoped_id="record"
    ),
    ("GET", "/api/tasks/{task_id}/photos/{photo_id}"): Case(
        (OP, DI, DE), f"/api/tasks/{{task}}/photos/{RANDOM}", scoped_id="record"
    ),
    ("GET", "/api/tasks/{task_id}/alarm-media/{media_id}"): Case(
        (OP, DI, DE), f"/api/tasks/{{task}}/alarm-media/{RANDOM}", scoped_id="record"
    ),
    ("POST", "/api/tasks/{task_id}/{action}"): Case(
        (OP, DE), "/api/tasks/{task}/note", body={"note": "x"}, scoped_id="record"
    ),
    ("GET", "/api/reports/dispatch"): Case((OP, AU), "/api/reports/dispatch?month=2026-11"),
}


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves; WebSockets as method WS."""
    found: list[tuple[str, str]] = []
    for context in iter_route_contexts(app.routes):
        methods = getattr(context, "methods", None) or getattr(
            context.original_route, "methods", None
        )
        path = str(context.path)
        if not methods:
            found.append(("WS", path))
            continue
        found.extend((m, path) for m in sorted(set(methods) - {"HEAD"}))
    return found


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    settings = load_settings(None, data_dir=tmp_path)
    async with Hub(settings) as running:
        yield running


async def seed_town_a(hub: Hub) -> dict[str, str]:
    """A district with towns A and B; a camera, a broadcast unit and an alarm in town A."""
    now = datetime.now(UTC)
    async with hub.store.transaction() as tx:
        for code, name, level, parent, path in (
            ("150102", "新城区", "district", None, "/150102/"),
            ("150102001", "甲街道", "town", "150102", TOWN_A),
            ("150102002", "乙街道", "town", "150102", TOWN_B),
        ):
            await tx.execute(
                "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
                " VALUES (%s, %s, %s, %s, %s)",
                (code, name, level, parent, path),
            )
        for device_id, kind in (("cam-a", "camera"), ("bc-a", "broadcast_unit")):
            await tx.execute(
                "INSERT INTO devices (id, name, kind, jurisdiction, jurisdiction_path,"
                " rtsp_urls, mqtt_device_id, enabled, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    device_id,
                    device_id,
                    kind,
                    "150102001",
                    TOWN_A,
                    "[]",
                    device_id if kind == "broadcast_unit" else None,
                    True,
                    now,
                    now,
                ),
            )
            await tx.execute(
                "INSERT INTO device_state (device_id, updated_at) VALUES (%s, %s)"
                " ON CONFLICT (device_id) DO NOTHING",
                (device_id, now),
            )
    from tests.integration.alarm_support import add_device

    await add_device(hub.store, "btn-a", kind="panic", path=TOWN_A, name="No. 1 School")
    from tests.helpers import make_event

    await hub.writer.submit(make_event(1, device_id="btn-a", kind="panic.press", source="mqtt"))
    async with asyncio.timeout(10):
        while True:
            async with hub.store.reading() as tx:
                row = await tx.fetchone("SELECT id FROM alarms")
            if row:
                break
            await asyncio.sleep(0.02)
    alarm_id = str(row[0])
    return {"alarm": alarm_id, "task": await seed_task(hub, uuid.UUID(alarm_id))}


async def seed_task(hub: Hub, alarm_id: uuid.UUID) -> str:
    """Town A's police station, with a task of the town A alarm; town B's, with none."""
    from hub.departments.storage import DepartmentRecord

    for department_id, code, member in (
        ("police-a", "150102001", "user:police-a-duty"),
        ("police-b", "150102002", "user:police-b-duty"),
    ):
        record = DepartmentRecord(department_id, department_id, "police_station", (code,))
        await hub.departments.save_department("system:test", record)
        await hub.departments.set_members("system:test", department_id, [member], None)
    (task,) = await hub.departments.dispatch(
        alarm_id, ["police-a"], "system:test", visible=lambda _: True
    )
    return str(task.id)


def concrete(case: Case, path: str, ids: dict[str, str]) -> str:
    path = (case.path or path).replace("{alarm}", ids.get("alarm", RANDOM))
    return path.replace("{task}", ids.get("task", RANDOM))


def test_every_route_has_an_authorization_case(tmp_path: Path) -> None:
    app = Hub(load_settings(None, data_dir=tmp_path)).app()
    missing = [f"{m} {p}" for m, p in app_routes(app) if (m, p) not in ROUTES]
    assert not missing, (
        "routes without an authorization case in tests/integration/"
        f"test_authorization_routes.py ROUTES: {', '.join(missing)}"
    )
    stale = [f"{m} {p}" for m, p in ROUTES if (m, p) not in set(app_routes(app))]
    assert not stale, f"ROUTES lists routes the app no longer has: {', '.join(stale)}"


async def call(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    if body is None:
        return await client.request(method, url)
    return await client.request(method, url, json=body)


async def ws_refusal(app: FastAPI, path: str) -> str:
    """The close reason of a refused WebSocket handshake ('' if it was accepted)."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"hub.test"), (b"origin", b"http://hub.test")],
        "client": ("10.1.2.3", 5555),
        "server": ("hub.test", 80),
        "subprotocols": [],
    }
    sent: list[MutableMapping[str, Any]] = []
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async with asyncio.timeout(10):
        await app(scope, receive, send)
    first = sent[0] if sent else {}
    if first.get("type") == "websocket.close":
        return f"{first.get('reason', '')}" or f"closed {first.get('code')}"
    return ""


async def test_unauthenticated_wrong_role_and_wrong_jurisdiction(hub: Hub) -> None:
    ids = await seed_town_a(hub)
    app = hub.app()
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    failures: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        for (method, path), case in ROUTES.items():
            url = concrete(case, path, ids)
            name = f"{method} {path}"
            if case.roles == PUBLIC:
                continue
            app.dependency_overrides.clear()
            if method == "WS":
                reason = await ws_refusal(app, url)
                if not reason.startswith("401"):
                    failures.append(f"{name}: unauthenticated handshake gave {reason!r}")
            else:
                response = await call(client, method, url, case.body)
                if response.status_code != 401:
                    failures.append(f"{name}: unauthenticated gave {response.status_code}")
            if case.roles == LOOPBACK:
                act_as(app, role="operator")
                response = await call(client, method, url, None)
                if response.status_code != 403:
                    failures.append(f"{name}: operator gave {response.status_code}")
                continue
            assert isinstance(case.roles, tuple)
            outsiders = [r for r in ALL if r not in case.roles]
            if outsiders:
                act_as(app, role=outsiders[0].value, scope=("/",))
                if method == "WS":
                    reason = await ws_refusal(app, url)
                    if not reason.startswith("403"):
                        failures.append(f"{name}: role {outsiders[0]} handshake gave {reason!r}")
                else:
                    response = await call(client, method, url, case.body)
                    if response.status_code != 403:
                        failures.append(f"{name}: role {outsiders[0]} gave {response.status_code}")
            if case.scoped_id is not None:
                role = case.roles[0] if case.roles else Role.ADMIN
                act_as(app, role=role.value, scope=(TOWN_B,))
                response = await call(client, method, url, case.body)
                if response.status_code != 404:
                    failures.append(
                        f"{name}: town B {role} gave {response.status_code} for a town A record"
                    )
    app.dependency_overrides.clear()
    assert not failures, "\n".join(failures)


async def test_a_town_a_principal_reaches_the_same_records(hub: Hub) -> None:
    """The 404s above come from the scope, not from missing records."""
    ids = await seed_town_a(hub)
    app = hub.app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        for path in ("/api/devices/cam-a", "/api/alarms/{alarm}", "/api/jurisdictions/150102001"):
            act_as(app, role="operator", scope=(TOWN_A,))
            url = path.replace("{alarm}", ids["alarm"])
            assert (await client.get(url)).status_code == 200, url


DEPARTMENT_READS = ("/api/tasks/{task}", "/api/tasks/{task}/alarm-media/" + RANDOM)


async def test_a_department_sees_only_its_own_tasks_in_its_own_town(hub: Hub) -> None:
    """Role x department x jurisdiction: the town A police station's user sees its task;
    town B's police station (scope B) and a town A user of another department see nothing."""
    ids = await seed_town_a(hub)
    app = hub.app()
    transport = httpx.ASGITransport(app=app)
    task_url = f"/api/tasks/{ids['task']}"
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        act_as(app, role="department", scope=(TOWN_A,), subject="police-a-duty")
        queue = (await client.get("/api/tasks")).json()
        assert [t["id"] for t in queue] == [ids["task"]]
        detail = await client.get(task_url)
        assert detail.status_code == 200
        assert detail.json()["allowed"] == ["note", "report_in"]
        assert detail.json()["alarm"]["title"]
        assert [d["id"] for d in (await client.get("/api/departments")).json()] == ["police-a"]
        assert (await client.post(f"{task_url}/report_in")).status_code == 200
        assert (await client.post(f"{task_url}/accept")).status_code == 403

        # Town B's police station: nothing of town A.
        act_as(app, role="department", scope=(TOWN_B,), subject="police-b-duty")
        assert (await client.get("/api/tasks")).json() == []
        assert (await client.get(task_url)).status_code == 404
        assert (await client.post(f"{task_url}/arrive")).status_code == 404
        assert (await client.get(f"{task_url}/alarm-media/{RANDOM}")).status_code == 404
        assert [d["id"] for d in (await client.get("/api/departments")).json()] == ["police-b"]
        # A town A user whose department got no task, and one in no department.
        for subject in ("police-b-duty", "nobody"):
            act_as(app, role="department", scope=(TOWN_A,), subject=subject)
            assert (await client.get("/api/tasks")).json() == []
            assert (await client.get(task_url)).status_code == 404
            photo = await client.post(
                f"{task_url}/photos",
                content=b"\x89PNG\r\n\x1a\n",
                headers={"content-type": "image/png"},
            )
            assert photo.status_code == 404

        # A department reaches no route that is not for departments.
        act_as(app, role="department", scope=("/",), subject="police-a-duty")
        reached = []
        for (method, path), case in ROUTES.items():
            if case.roles in (PUBLIC, LOOPBACK, ALL) or method == "WS":
                continue
            assert isinstance(case.roles, tuple)
            if DE in case.roles:
                continue
            response = await call(client, method, concrete(case, path, ids), case.body)
            if response.status_code != 403:
                reached.append(f"{method} {path}: {response.status_code}")
        assert not reached, reached
    app.dependency_overrides.clear()
