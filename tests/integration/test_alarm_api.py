"""The alarm API: walk a panic alarm through its cycle, 409 on invalid moves, scoping, pull API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as, make_event
from tests.integration.alarm_support import OTHER_TOWN, TOWN, add_device

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url})
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        yield c


async def panic_alarm(hub: Hub, client: httpx.AsyncClient) -> dict[str, Any]:
    await add_device(hub.store, "btn-001", kind="panic", path=TOWN, name="No. 1 School")
    await hub.writer.submit(make_event(1, device_id="btn-001", kind="panic.press", source="mqtt"))
    async with asyncio.timeout(10):
        while True:
            items = (await client.get("/api/alarms")).json()["items"]
            if items:
                return dict(items[0])
            await asyncio.sleep(0.02)


async def test_operator_walks_a_panic_alarm_through_its_cycle(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    act_as(client._transport.app, role="operator", scope=(TOWN,), subject="op1")  # type: ignore[attr-defined]
    alarm = await panic_alarm(hub, client)
    assert alarm["priority"] == 1 and alarm["state"] == "new"
    assert "acknowledge" in alarm["allowed_actions"]
    base = f"/api/alarms/{alarm['id']}"

    wrong = await client.post(f"{base}/close", json={"note": "done"})
    assert wrong.status_code == 409
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["detail"] == (
        "cannot close an alarm that is new; resolve it first or mark it a false alarm"
    )

    steps: list[tuple[str, dict[str, Any], str]] = [
        ("acknowledge", {"note": "seen on camera"}, "acknowledged"),
        ("dispatch", {"department": "police-station-3"}, "dispatched"),
        ("note", {"note": "unit on site"}, "dispatched"),
        ("resolve", {"note": "intruder detained"}, "resolved"),
        ("close", {"note": "report filed"}, "closed"),
    ]
    for action, body, state in steps:
        response = await client.post(f"{base}/{action}", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["state"] == state

    detail = (await client.get(base)).json()
    assert [h["action"] for h in detail["history"]] == [
        "open",
        "acknowledge",
        "dispatch",
        "note",
        "resolve",
        "close",
    ]
    assert [h["actor"] for h in detail["history"][1:]] == ["user:op1"] * 5
    assert detail["alarm"]["department"] == "police-station-3"
    async with hub.store.reading() as tx:
        audit = await tx.fetchall(
            "SELECT actor, action FROM audit_log WHERE target = %s", (alarm["id"],)
        )
    assert len(audit) == 5 and all(actor == "user:op1" for actor, _ in audit)

    act_as(client._transport.app, role="dispatcher", scope=("/",), subject="police")  # type: ignore[attr-defined]
    page = (await client.get("/api/alarms/changes", params={"since": 0})).json()
    seqs = [item["seq"] for item in page["items"]]
    assert seqs == sorted(seqs) and page["next_since"] == seqs[-1]
    assert [item["action"] for item in page["items"]] == [
        "open",
        "acknowledge",
        "dispatch",
        "note",
        "resolve",
        "close",
    ]
    again = (await client.get("/api/alarms/changes", params={"since": seqs[2]})).json()
    assert [item["seq"] for item in again["items"]] == seqs[3:]
    # Dispatchers read but do not act.
    assert (await client.post(f"{base}/reopen", json={})).status_code == 403


async def test_alarms_outside_the_scope_are_not_found(hub: Hub, client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    act_as(app, role="admin")
    alarm = await panic_alarm(hub, client)
    base = f"/api/alarms/{alarm['id']}"

    act_as(app, role="operator", scope=(OTHER_TOWN,))
    assert (await client.get(base)).status_code == 404
    assert (await client.post(f"{base}/acknowledge", json={})).status_code == 404
    assert (await client.get("/api/alarms")).json()["items"] == []
    assert (await client.get("/api/alarms/changes")).json()["items"] == []

    act_as(app, role="maintenance", scope=("/",))
    assert (await client.get(base)).status_code == 404  # a panic alarm is not maintenance work
    assert (await client.get("/api/alarms")).json()["items"] == []

    act_as(app, role="auditor", scope=("/",))
    assert (await client.get("/api/alarms")).status_code == 403

    act_as(app, role="operator", scope=(TOWN,))
    assert (await client.get(base)).status_code == 200
    unknown = await client.get("/api/alarms/00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
