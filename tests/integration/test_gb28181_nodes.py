"""GB/T 28181 registrations are kept in the database: a restarted hub still knows who is
registered until the registration runs out, and a second hub node on the same PostgreSQL
database reports a device registered through the first, takes its messages, and does not
call it silent while its keepalives reach the other node."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gb28181_support import (
    NVR,
    channel,
    device_at,
    eventually,
    free_sip_port,
    gb_hub,
    health_becomes,
    health_of,
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


async def test_a_restarted_hub_knows_the_device_is_registered_until_its_registration_ends(
    tmp_path: Path, storage_url: str | None
) -> None:
    port = free_sip_port()
    gb: dict[str, Any] = {"sip_port": port, "register_expires_min_s": 10}
    async with device_at(port, channels=[channel(1)]) as device:
        async with gb_hub(tmp_path, storage_url, **gb) as (hub, client):
            assert await device.register(expires=14) == 200

            async def armed() -> bool:
                body = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
                return bool(body["armed"])

            await eventually(armed, "armed")
            node = hub.gb28181.node_id

        async with gb_hub(tmp_path, storage_url, tree=False, **gb) as (hub, client):
            assert hub.gb28181.node_id == node
            row = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
            assert row["registered"] is True
            assert row["armed"] is True
            assert row["node_id"] == node
            assert row["contact"].startswith(f"<sip:{NVR}@127.0.0.1:")
            assert (await client.get("/api/gb28181/status")).json()["registered"] == 1
            # Its messages are taken without a new REGISTER (no 403 after the restart).
            assert await device.keepalive() == 200
            assert await device.alarm(priority=2, method=2, alarm_type=2) == 200
            await health_becomes(client, NVR, "online")

            async def ended() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
                return body if not body["registered"] else None

            row = await eventually(ended, "registration ran out")
            assert row["last_alarm_at"] is not None
            await health_becomes(client, NVR, "offline")
            assert (await client.get("/api/gb28181/status")).json()["registered"] == 0
            assert await device.keepalive() == 403


@pytest.mark.postgres
async def test_two_nodes_on_one_database_share_registrations(tmp_path: Path, pg_dsn: str) -> None:
    gb: dict[str, Any] = {"keepalive_interval_s": 1.0, "keepalive_missed": 3}
    async with (
        gb_hub(tmp_path / "a", pg_dsn, node_id="node-a", **gb) as (node_a, client_a),
        gb_hub(tmp_path / "b", pg_dsn, tree=False, node_id="node-b", **gb) as (node_b, client_b),
        device_at(node_a.gb28181.port, channels=[channel(1)]) as via_a,
        # The same device as a front SIP address would spread it: this socket reaches node B.
        device_at(node_b.gb28181.port) as via_b,
    ):
        assert await via_a.register() == 200
        row = (await client_b.get(f"/api/gb28181/devices/{NVR}")).json()
        assert row["registered"] is True and row["node_id"] == "node-a"
        assert (await client_b.get("/api/gb28181/status")).json()["registered"] == 1
        await health_becomes(client_b, NVR, "online")

        # Node B takes the device's messages although it registered through A.
        assert await via_b.alarm(source_id=channel(1).channel_id, priority=1) == 200
        stored = await node_b.store.events(device_id=channel(1).channel_id)
        assert [e.kind for e in stored if e.kind.startswith("gb28181.alarm")] == [
            "gb28181.alarm.motion"
        ]
        # Keepalives reach only B for longer than A's silence limit (3 s): A, which
        # holds the device, sees them through the database and keeps it online.
        for _ in range(12):
            assert await via_b.keepalive() == 200
            await asyncio.sleep(0.5)
        assert await health_of(client_a, NVR) == "online"

        # Silence everywhere: the holding node alone takes it offline, once.
        await health_becomes(client_a, NVR, "offline")
        await asyncio.sleep(2.0)
        await node_a.writer.flush()
        await node_b.writer.flush()
        events = await node_a.store.events(device_id=NVR)
        assert [e.kind for e in events if e.kind == "health.offline"] == ["health.offline"]

        # Unregistering through B ends the registration for both nodes.
        assert await via_b.register(expires=0) == 200
        for client in (client_a, client_b):
            row = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
            assert row["registered"] is False
