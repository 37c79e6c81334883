"""Console streams across hub nodes: two nodes (own `Hub`s, own HTTP servers) over one
PostgreSQL database. A WebSocket or SSE client of node A sees every alarm change node B
commits, once each and in `seq` order, including after A's LISTEN session is cut; a
transaction that rolls back announces nothing; `since` replay is unchanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from camera_registry.events import DeviceEvent
from hub.alarms import query_storage
from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import Tx
from tests.helpers import make_event
from tests.integration.alarm_support import OTHER_TOWN, TOWN, add_device
from tests.peers import free_port

pytestmark = pytest.mark.postgres


@dataclass
class Node:
    hub: Hub
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/alarms/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def node(dsn: str, data_dir: Path, node_id: str) -> AsyncIterator[Node]:
    settings = load_settings(None, data_dir=data_dir, node_id=node_id, storage={"url": dsn})
    async with Hub(settings) as hub:
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
            yield Node(hub, port)
        finally:
            web.should_exit = True
            await task


@dataclass
class Cluster:
    a: Node
    b: Node
    admin: str  # an admin API key's token, valid on both nodes (one database)
    town: str  # an operator of TOWN only


@pytest.fixture
async def cluster(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with (
        node(pg_dsn, tmp_path / "a", "node-a") as a,
        node(pg_dsn, tmp_path / "b", "node-b") as b,
    ):
        admin = await a.hub.auth.create_api_key("ops", "admin", ["/"], actor="user:admin")
        town = await a.hub.auth.create_api_key("town", "operator", [TOWN], actor="user:admin")
        for device, path in (("btn-town", TOWN), ("btn-other", OTHER_TOWN)):
            await add_device(a.hub.store, device, kind="panic", path=path, name=device)
        yield Cluster(a, b, admin.token, town.token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        assert isinstance(message, dict)
        if message["type"] != "keepalive":
            return message


async def nothing_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def press(hub: Hub, device: str, n: int) -> None:
    """A panic press through the node's event writer, as an MQTT device would send it."""
    await hub.writer.submit(
        make_event(n, device_id=device, kind="panic.press", source="mqtt", key=f"p-{device}-{n}")
    )


class RolledBack(Exception):
    pass


async def rolled_back_press(hub: Hub, n: int, key: str) -> None:
    """A press whose transaction runs the alarm engine (taking a change-log seq), then fails."""

    async def failing_hook(tx: Tx, events: list[DeviceEvent]) -> object:
        await hub.alarms.in_transaction(tx, events)
        raise RolledBack

    held = make_event(n, device_id="btn-town", kind="panic.press", source="mqtt", key=key)
    with pytest.raises(RolledBack):
        await hub.store.ingest([held], in_transaction=failing_hook)


def device(message: dict[str, Any]) -> str:
    return str(message["payload"]["alarm"]["device_id"])


async def stored_changes(hub: Hub) -> list[int]:
    changes = await query_storage.changes(hub.alarms.store, 0, limit=10_000, scope_paths=None)
    return [change.seq for change in changes]


async def test_a_console_on_one_node_sees_every_change_committed_on_the_other(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    async with connect(a.ws_url, additional_headers=bearer(cluster.admin)) as ws:
        hello = await receive(ws)
        assert hello == {"type": "hello", "cursor": 0}

        # Presses on node B, an operator action on node B, presses on node A: all of
        # them reach the console on A, in seq order, once each.
        for n in range(20):
            await press(b.hub, "btn-town" if n % 2 else "btn-other", n)
        first = await receive(ws)
        assert first["type"] == "change" and first["action"] == "open"
        async with httpx.AsyncClient(base_url=b.http_url, headers=bearer(cluster.admin)) as api:
            acked = await api.post(f"/api/alarms/{first['alarm_id']}/acknowledge", json={})
            assert acked.status_code == 200, acked.text
        for n in range(20, 30):
            await press(a.hub, "btn-town", n)

        await a.hub.writer.flush()
        await b.hub.writer.flush()
        expected = await stored_changes(a.hub)
        seen = [first]
        async with asyncio.timeout(10):
            while len(seen) < len(expected):
                seen.append(await receive(ws))
        assert [m["seq"] for m in seen] == expected  # every committed change, in order
        assert {m["action"] for m in seen} >= {"open", "repeat", "acknowledge"}
        assert await nothing_within(ws, 0.5)  # and nothing twice

        # The LISTEN session of node A is cut (a failover, a restarted pooler): what B
        # commits meanwhile still arrives, once, after A listens again.
        with psycopg.connect(b.hub.settings.storage_url(), autocommit=True) as admin:
            cut = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'gridwatch-feed:node-a'"
            ).fetchall()
        assert cut == [(True,)]
        for n in range(30, 40):
            await press(b.hub, "btn-other", n)
        await b.hub.writer.flush()
        expected = await stored_changes(a.hub)
        async with asyncio.timeout(15):
            while len(seen) < len(expected):
                seen.append(await receive(ws, 15))
        assert [m["seq"] for m in seen] == expected
        assert await nothing_within(ws, 0.5)
        assert a.hub.change_feed is not None and a.hub.change_feed.reconnects >= 1

    # Reconnecting with a cursor replays from the log, then goes live across nodes.
    middle = seen[len(seen) // 2]["seq"]
    async with connect(f"{a.ws_url}?since={middle}", additional_headers=bearer(cluster.town)) as ws:
        assert await receive(ws) == {"type": "hello", "cursor": middle}
        visible = [m["seq"] for m in seen if m["seq"] > middle and device(m) == "btn-town"]
        replayed = [(await receive(ws))["seq"] for _ in visible]
        assert replayed == visible
        assert await nothing_within(ws, 0.3)
        await press(b.hub, "btn-other", 40)  # another town: not for this operator
        await press(b.hub, "btn-town", 41)
        live = await receive(ws)
        assert live["seq"] > seen[-1]["seq"] and device(live) == "btn-town"
        assert await nothing_within(ws, 0.5)


async def test_only_committed_changes_cross_nodes(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    async with connect(a.ws_url, additional_headers=bearer(cluster.admin)) as ws:
        await receive(ws)
        await rolled_back_press(b.hub, 1, "gone")
        assert await nothing_within(ws, 1.0)
        assert await stored_changes(a.hub) == []

        # SSE on node A sees B's committed change as well.
        await press(b.hub, "btn-town", 2)
        message = await receive(ws)
        async with (
            httpx.AsyncClient(base_url=a.http_url, headers=bearer(cluster.admin)) as api,
            api.stream("GET", "/api/alarms/stream", params={"since": 0}) as stream,
        ):
            lines = stream.aiter_lines()
            data = []
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith("data: ") and '"seq"' in line:
                        data.append(json.loads(line.removeprefix("data: ")))
                        break
        assert [d["seq"] for d in data] == [message["seq"]]


async def test_a_nodes_own_changes_reach_its_consoles_without_reading_the_log(
    cluster: Cluster,
) -> None:
    """Node A's own committed changes go to its consoles straight after commit (the
    next `seq` each time); after a rolled-back transaction leaves a gap in the
    sequence, A's next change comes through the log read instead: in order, once."""
    a = cluster.a
    assert a.hub.change_feed is not None
    async with connect(a.ws_url, additional_headers=bearer(cluster.admin)) as ws:
        await receive(ws)
        for n in range(10):
            await press(a.hub, "btn-town" if n % 2 else "btn-other", n)
        await a.hub.writer.flush()
        expected = await stored_changes(a.hub)
        seen = [(await receive(ws))["seq"] for _ in expected]
        assert seen == expected
        assert a.hub.change_feed.published_here == len(expected)
        await rolled_back_press(a.hub, 99, "gap")
        fast = a.hub.change_feed.published_here
        await press(a.hub, "btn-other", 100)
        after_gap = await receive(ws)
        assert after_gap["seq"] > seen[-1] + 1  # the rolled-back seq is never shown
        assert device(after_gap) == "btn-other"
        assert a.hub.change_feed.published_here == fast  # read from the log
        assert await nothing_within(ws, 0.5)
