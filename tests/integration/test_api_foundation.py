"""The API skeleton: health, readiness, metrics, docs, problem+json errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hub.config import load_settings
from hub.runtime import Hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    settings = load_settings(None, data_dir=tmp_path)
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        yield c


async def test_health_and_readiness(client: httpx.AsyncClient, tmp_path: Path) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["storage"] == "sqlite"
    assert (tmp_path / "gridwatch.sqlite3").exists()


async def test_readiness_fails_with_a_problem_when_storage_is_gone(hub: Hub) -> None:
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        await hub.store.close()
        response = await c.get("/readyz")
        await hub.store.open()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Storage unreachable"


async def test_metrics_count_committed_events(hub: Hub, client: httpx.AsyncClient) -> None:
    from tests.helpers import make_event

    for i in range(3):
        await hub.writer.submit(make_event(i, source="mqtt"))
    await hub.writer.stop()
    await hub.writer.start()
    text = (await client.get("/metrics")).text
    assert 'gridwatch_events_stored_total{source="mqtt"} 3.0' in text


async def test_unknown_route_and_bad_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json() == {"type": "about:blank", "title": "Not Found", "status": 404}
    wrong = await client.post("/healthz")
    assert wrong.status_code == 405


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/readyz" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200
