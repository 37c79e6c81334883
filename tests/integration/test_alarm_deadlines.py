"""An ignored alarm keeps the deadline it opened with: escalation moves the running
deadline on and counts its level, the API and the live stream show both, and a resolved
alarm has no running deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import make_event
from tests.integration.alarm_support import TOWN, add_device
from tests.peers import free_port

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# Acknowledge within 1 s, escalate again every second while ignored.
SLA = {
    "targets": {level: {"ack": 1.0, "resolve": 3600.0 * level} for level in (1, 2, 3, 4)},
    "escalation": {"renotify_every": 1.0, "max_level": 3},
}


@pytest.fixture(params=BACKENDS)
async def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Hub, str, str]]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(
        None,
        data_dir=tmp_path,
        storage={"url": url},
        alarms={"sla": SLA, "escalation_check_s": 0.1},
    )
    async with Hub(settings) as hub:
        key = await hub.auth.create_api_key("ops", "operator", [TOWN], actor="user:admin")
        await add_device(hub.store, "btn-001", kind="panic", path=TOWN, name="School 1")
        port = free_port()
        config = uvicorn.Config(
            hub.app(), host="127.0.0.1", port=port, lifespan="off", log_config=None
        )
        web = uvicorn.Server(config)
        task = asyncio.create_task(web.serve())
        async with asyncio.timeout(10):
            while not web.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                await asyncio.sleep(0.02)
        try:
            yield hub, f"127.0.0.1:{port}", key.token
        finally:
            web.should_exit = True
            await task


async def next_change(ws: ClientConnection, action: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "change" and message["action"] == action:
                alarm: dict[str, Any] = message["payload"]["alarm"]
                return alarm


def when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


async def test_escalation_keeps_the_first_deadline_and_resolving_stops_the_clock(
    served: tuple[Hub, str, str],
) -> None:
    hub, address, token = served
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        connect(f"ws://{address}/api/alarms/ws", additional_headers=headers) as ws,
        httpx.AsyncClient(base_url=f"http://{address}", headers=headers) as api,
    ):
        await hub.writer.submit(make_event(1, device_id="btn-001", kind="panic.press"))
        opened = await next_change(ws, "open")
        assert opened["escalation_level"] == 0
        assert opened["ack_due_first"] == opened["ack_due"] is not None
        assert opened["resolve_due_first"] == opened["resolve_due"] is not None
        first_ack = when(opened["ack_due_first"])

        # Nobody acknowledges: two escalations move the running deadline on, not the first.
        once = await next_change(ws, "escalate")
        twice = await next_change(ws, "escalate")
        assert (once["escalation_level"], twice["escalation_level"]) == (1, 2)
        for escalated in (once, twice):
            assert when(escalated["ack_due_first"]) == first_ack
            assert escalated["resolve_due_first"] == opened["resolve_due_first"]
        assert first_ack is not None
        assert first_ack < when(once["ack_due"]) < when(twice["ack_due"])  # type: ignore[operator]

        base = f"/api/alarms/{opened['id']}"
        shown = (await api.get(base)).json()["alarm"]
        assert when(shown["ack_due_first"]) == first_ack
        assert shown["escalation_level"] >= 2
        listed = (await api.get("/api/alarms")).json()["items"][0]
        assert when(listed["ack_due_first"]) == first_ack and listed["escalation_level"] >= 2

        assert (await api.post(f"{base}/acknowledge", json={})).status_code == 200
        resolved = await api.post(f"{base}/resolve", json={"note": "handled"})
        assert resolved.status_code == 200, resolved.text
        after = resolved.json()
        assert after["ack_due"] is None and after["resolve_due"] is None
        assert when(after["ack_due_first"]) == first_ack
        change = await next_change(ws, "resolve")
        assert change["ack_due"] is None and change["resolve_due"] is None
        assert when(change["ack_due_first"]) == first_ack
        assert change["escalation_level"] == after["escalation_level"]
