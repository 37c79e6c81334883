"""The live alarm stream over a real HTTP server (uvicorn): WebSocket `/api/alarms/ws` and
SSE `/api/alarms/stream` — hello with a cursor, changes only after commit, replay with
`since`, jurisdiction scoping per API key, cross-origin handshakes refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from camera_registry.events import DeviceEvent
from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import Tx
from tests.helpers import make_event
from tests.integration.alarm_support import OTHER_TOWN, TOWN, add_device
from tests.peers import free_port

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Server:
    hub: Hub
    port: int
    town: str  # API key token of an operator of TOWN
    other: str  # API key token of an operator of OTHER_TOWN

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/alarms/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(params=BACKENDS)
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url})
    async with Hub(settings) as hub:
        keys = hub.auth
        town = await keys.create_api_key("town ops", "operator", [TOWN], actor="user:admin")
        other = await keys.create_api_key("other ops", "operator", [OTHER_TOWN], actor="user:admin")
        for device, path in (("btn-town", TOWN), ("btn-other", OTHER_TOWN)):
            await add_device(hub.store, device, kind="panic", path=path, name=device)
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
            yield Server(hub, port, town.token, other.token)
        finally:
            web.should_exit = True
            await task


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5.0))
    assert isinstance(message, dict)
    return message


async def nothing_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def press(hub: Hub, device: str, n: int) -> None:
    """A panic press through the event writer, as an MQTT device would send it."""
    await hub.writer.submit(make_event(n, device_id=device, kind="panic.press", source="mqtt"))


async def test_websocket_hello_scope_after_commit_and_replay(server: Server) -> None:
    hub = server.hub
    async with (
        connect(server.ws_url, additional_headers=bearer(server.town)) as town,
        connect(server.ws_url, additional_headers=bearer(server.other)) as other,
    ):
        hello = await receive(town)
        assert hello == {"type": "hello", "cursor": 0}
        assert (await receive(other))["type"] == "hello"

        # Another town's alarm is not for this operator; their own is.
        await press(hub, "btn-other", 1)
        await press(hub, "btn-town", 2)
        change = await receive(town)
        assert change["type"] == "change" and change["action"] == "open"
        assert change["payload"]["alarm"]["device_id"] == "btn-town"
        assert change["payload"]["alarm"]["priority"] == 1
        theirs = await receive(other)
        assert theirs["payload"]["alarm"]["device_id"] == "btn-other"
        assert await nothing_within(town, 0.5) and await nothing_within(other, 0.3)

        # Announced only after commit: committed data is readable when the change arrives,
        # and nothing arrives while the transaction is still open.
        async with httpx.AsyncClient(base_url=server.http_url, headers=bearer(server.town)) as api:
            detail = await api.get(f"/api/alarms/{change['alarm_id']}")
            assert detail.status_code == 200
            assert (await api.get(f"/api/alarms/{theirs['alarm_id']}")).status_code == 404

        holding = asyncio.Event()
        release = asyncio.Event()

        async def slow_hook(tx: Tx, events: list[DeviceEvent]) -> object:
            outcome = await hub.alarms.in_transaction(tx, events)
            holding.set()
            await release.wait()
            return outcome

        event = make_event(3, device_id="btn-town", kind="panic.press", key="held")
        ingest = asyncio.create_task(hub.store.ingest([event], in_transaction=slow_hook))
        await holding.wait()
        assert await nothing_within(town, 0.5)
        release.set()
        hub.alarms.after_commit(await ingest)
        repeat = await receive(town)
        assert repeat["alarm_id"] == change["alarm_id"] and repeat["action"] == "repeat"
        assert repeat["seq"] > change["seq"]
        live = [change["seq"], repeat["seq"]]

    # Reconnecting with the last cursor seen replays what was missed, in order and in scope.
    async with connect(
        f"{server.ws_url}?since={hello['cursor']}", additional_headers=bearer(server.town)
    ) as again:
        assert await receive(again) == {"type": "hello", "cursor": 0}
        replayed = [await receive(again), await receive(again)]
        assert [m["seq"] for m in replayed] == live
        assert all(m["payload"]["alarm"]["device_id"] == "btn-town" for m in replayed)
        assert await nothing_within(again, 0.3)
        await press(hub, "btn-town", 4)  # then live again
        assert (await receive(again))["seq"] > live[-1]


async def test_websocket_refuses_foreign_origins_and_unauthenticated_callers(
    server: Server,
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            server.ws_url,
            additional_headers=bearer(server.town),
            origin="http://evil.example",  # type: ignore[arg-type]
        ):
            pass
    assert refused.value.response.status_code == 403

    own = f"http://127.0.0.1:{server.port}"
    async with connect(
        server.ws_url,
        additional_headers=bearer(server.town),
        origin=own,  # type: ignore[arg-type]
    ) as ws:
        assert (await receive(ws))["type"] == "hello"

    for headers in ({}, bearer("gw_0123456789ab_forged")):
        try:
            async with connect(server.ws_url, additional_headers=headers) as ws:
                await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
        except InvalidStatus as status:
            assert status.response.status_code == 403
        else:
            pytest.fail("an unauthenticated WebSocket got a message")


async def sse_events(lines: AsyncIterator[str], count: int) -> list[tuple[str, dict[str, str]]]:
    """The next `count` events (name, fields) of an SSE line stream; comments skipped."""
    events: list[tuple[str, dict[str, str]]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(10):
        async for line in lines:
            if not line:
                if fields:
                    events.append((fields.get("event", "message"), fields))
                    fields = {}
                    if len(events) == count:
                        return events
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.lstrip(" ")
    return events


async def test_sse_stream_hello_scoped_changes_and_replay(server: Server) -> None:
    hub = server.hub
    async with (
        httpx.AsyncClient(base_url=server.http_url, headers=bearer(server.town)) as api,
        api.stream("GET", "/api/alarms/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        ((name, hello),) = await sse_events(lines, 1)
        assert name == "hello" and json.loads(hello["data"]) == {"cursor": 0}
        await press(hub, "btn-other", 1)
        await press(hub, "btn-town", 2)
        ((name, fields),) = await sse_events(lines, 1)
        data = json.loads(fields["data"])
        assert name == "alarm" and fields["id"] == str(data["seq"])
        assert data["payload"]["alarm"]["device_id"] == "btn-town"

    # Last-seen cursor: the replay holds only this town's change.
    async with (
        httpx.AsyncClient(base_url=server.http_url, headers=bearer(server.town)) as api,
        api.stream("GET", "/api/alarms/stream", params={"since": 0}) as response,
    ):
        lines = response.aiter_lines()
        (_, replay_hello), (_, replayed) = await sse_events(lines, 2)
        assert json.loads(replay_hello["data"]) == {"cursor": 0}
        assert json.loads(replayed["data"])["seq"] == data["seq"]
