"""After a restart every camera is unknown until evidence; the registry list filters by health."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.config import load_settings
from hub.devices.health_storage import HealthRepository, TransitionRow
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.health_seed import seed_camera, seed_tree

AT = datetime(2024, 11, 20, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_restart_makes_cameras_unknown_and_lists_filter_by_health(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    settings = load_settings(
        None, data_dir=tmp_path, storage={"url": dsn}, patrol={"enabled": False}
    )
    async with Hub(settings) as hub:
        await seed_tree(hub.store)
        for device_id in ("cam-1", "cam-2", "cam-3"):
            await seed_camera(hub.store, device_id, urls=["rtsp://127.0.0.1:9/x"])
        await seed_camera(hub.store, "panic-1", kind="panic")
        await HealthRepository(hub.store).record(
            transitions=[
                TransitionRow("cam-1", AT, "unknown", "online", "picture ok"),
                TransitionRow("cam-2", AT, "unknown", "offline", "3 consecutive failures"),
                TransitionRow("panic-1", AT, "unknown", "online", "heartbeat"),
            ],
            now=AT,
        )
        app = hub.app()
        act_as(app, role="maintenance", scope=("/",))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            offline = await client.get("/api/devices", params={"health": "offline"})
            assert offline.status_code == 200, offline.text
            assert [d["id"] for d in offline.json()["items"]] == ["cam-2"]
            summary = (await client.get("/api/health/summary", params={"kind": "camera"})).json()
            assert summary["by_state"] == {"online": 1, "degraded": 0, "offline": 1, "unknown": 1}

    async with Hub(settings) as hub:
        history = await HealthRepository(hub.store).transitions("cam-2")
        assert (history[0].from_state, history[0].to_state) == ("offline", "unknown")
        assert "start-up" in history[0].reason
        app = hub.app()
        act_as(app, role="maintenance", scope=("/",))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            summary = (await client.get("/api/health/summary", params={"kind": "camera"})).json()
            assert summary["by_state"]["unknown"] == 3
            # Devices the patrol does not judge keep the state their own source gave them.
            panic = await client.get("/api/devices/panic-1/health")
            assert panic.json()["health"] == "online"


@pytest.mark.postgres
async def test_a_node_joining_live_ones_keeps_camera_health(pg_dsn: str, tmp_path: Path) -> None:
    # Restarting one node of several must not mark the other nodes' cameras unknown:
    # they were patrolled all along. A whole cluster starting again does.
    def settings(name: str) -> Any:
        return load_settings(
            None,
            data_dir=tmp_path / name,
            node_id=name,
            storage={"url": pg_dsn},
            patrol={"enabled": False},
            cluster={"heartbeat_s": 0.5, "node_timeout_s": 3.0},
        )

    async with Hub(settings("node-a")) as hub_a:
        await seed_tree(hub_a.store)
        await seed_camera(hub_a.store, "cam-1", urls=["rtsp://127.0.0.1:9/x"])
        await HealthRepository(hub_a.store).record(
            transitions=[TransitionRow("cam-1", AT, "unknown", "online", "picture ok")], now=AT
        )
        async with Hub(settings("node-b")) as hub_b:
            history = await HealthRepository(hub_b.store).transitions("cam-1")
            assert [(t.from_state, t.to_state) for t in history] == [("unknown", "online")]
    # Both stopped: the next start knows nothing of the cameras until evidence.
    async with Hub(settings("node-a")) as hub_a:
        history = await HealthRepository(hub_a.store).transitions("cam-1")
        assert (history[0].from_state, history[0].to_state) == ("online", "unknown")
