"""Pieces shared by the tests of the MQTT devices inside a running hub."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import Json, SqlStore
from tests.helpers import act_as

__all__ = [
    "OTHER_TOWN_PATH",
    "SCHOOL_PATH",
    "hub_with_mqtt",
    "mqtt_hub_settings",
    "register_device",
    "storage_url",
    "unique_client_id",
    "wait_until",
]

SCHOOL_PATH = "/150102/150102001/"
OTHER_TOWN_PATH = "/150102/150102009/"


def storage_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None (SQLite in the data dir) or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return None
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


def mqtt_hub_settings(host: str, port: int, prefix: str, client_id: str) -> dict[str, Any]:
    """The hub's `mqtt` section for a test broker with fast reconnects."""
    return {
        "enabled": True,
        "host": host,
        "port": port,
        "topic_prefix": prefix,
        "client_id": client_id,
        "session_expiry_s": 300,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 1.0,
        # Generous: one slow round trip on a loaded machine must not turn into a retry.
        "command_timeout_s": 3.0,
        "command_retries": 1,
        "device_refresh_s": 0.2,
    }


async def register_device(
    store: SqlStore,
    device_id: str,
    kind: str,
    *,
    mqtt_device_id: str | None = None,
    jurisdiction_path: str = SCHOOL_PATH,
    tags: Sequence[str] = (),
    name: str = "",
) -> None:
    """Put a device into the registry tables as the registry would (row + device_state)."""
    now = datetime.now(UTC)
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO devices (id, name, kind, jurisdiction, attributes, enabled, created_at,"
            " updated_at, mqtt_device_id, jurisdiction_path, tags)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                device_id,
                name or device_id,
                kind,
                jurisdiction_path.strip("/").rsplit("/", 1)[-1],
                {},
                True,
                now,
                now,
                mqtt_device_id,
                jurisdiction_path,
                Json(list(tags)),
            ),
        )
        await tx.execute(
            "INSERT INTO device_state (device_id, health, updated_at) VALUES (%s, 'unknown', %s)",
            (device_id, now),
        )


@asynccontextmanager
async def hub_with_mqtt(
    tmp_path: Path,
    url: str | None,
    mqtt: dict[str, Any],
    *,
    role: str = "operator",
    scope: tuple[str, ...] = (SCHOOL_PATH,),
) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    """A started hub with MQTT enabled, and an HTTP client acting as `role` in `scope`."""
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url}, mqtt=mqtt)
    async with Hub(settings) as hub:
        app = hub.app()
        act_as(app, role=role, scope=scope, subject="duty-officer")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield hub, client


async def wait_until(
    condition: Callable[[], Any],
    timeout: float = 10.0,  # noqa: ASYNC109 - a plain polling deadline
    what: str = "condition",
) -> None:
    """Poll an async or plain condition until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.05)


def unique_client_id() -> str:
    """A hub client id of this test only."""
    return f"gw-hub-test-{uuid.uuid4().hex[:10]}"
