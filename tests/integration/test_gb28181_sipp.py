"""GB/T 28181 against sipp, an independent SIP peer: a device registering with digest,
keepalive and alarm (SQLite and PostgreSQL); a wrong-password flood; a malformed-message
flood."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_gb28181_hub import (
    DOMAIN,
    PLATFORM,
    eventually,
    running_hub,
    simulator,
    storage_url,
)
from tests.peers.sipp import run_sipp

CAMERA = "15020700001320000021"


def sipp_variables(*, channel: bool = False) -> dict[str, str]:
    variables = {"domain": DOMAIN, "platform": PLATFORM}
    return {**variables, "channel": CAMERA} if channel else variables


__all__ = ["storage_url"]  # the SQLite/PostgreSQL fixture, shared with the hub tests


async def test_sipp_device_registers_keepalives_and_raises_an_alarm(
    tmp_path: Path, storage_url: str | None
) -> None:
    async with running_hub(tmp_path, storage_url, auto_register=True) as (hub, client):
        run = await run_sipp(
            "gb28181_device.xml",
            ("127.0.0.1", hub.gb28181.port),
            user=CAMERA,
            password="platform-default",
            variables=sipp_variables(channel=True),
            workdir=tmp_path,
        )
        assert run.returncode == 0, run.output[-3000:]

        async def registered() -> dict[str, Any] | None:
            # The registry write follows the 200 OK (the REGISTER never waits for it),
            # so it may land after the scenario's last message.
            answer = await client.get(f"/api/devices/{CAMERA}")
            return dict(answer.json()) if answer.status_code == 200 else None

        device = await eventually(registered, "the registered device in the registry")
        assert device["kind"] == "camera"

        async def alarm() -> dict[str, Any] | None:
            page = (await client.get("/api/alarms", params={"device_id": CAMERA})).json()
            items: list[dict[str, Any]] = page["items"]
            return items[0] if items else None

        opened = await eventually(alarm, "alarm from sipp")
        assert opened["priority"] == 1 and opened["type"] == "device_alarm"
        row = (await client.get(f"/api/gb28181/devices/{CAMERA}")).json()
        assert row["version"] == "2.0" and row["last_alarm_at"] is not None
        assert row["last_keepalive_at"] is not None or CAMERA in hub.gb28181.sessions
        assert row["node_id"] == hub.gb28181.node_id
        assert row["contact"] is not None and CAMERA in row["contact"]


async def test_sipp_wrong_password_flood_is_cut_off_and_others_still_register(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path, None, auto_register=True, auth_failures_per_minute=10) as (
        hub,
        client,
    ):
        run = await run_sipp(
            "gb28181_wrong_password.xml",
            ("127.0.0.1", hub.gb28181.port),
            user=CAMERA,
            password="wrong",
            variables=sipp_variables(),
            local_host="127.0.0.3",
            calls=60,
            rate=30,
            workdir=tmp_path,
        )
        # sipp exits 1 when calls ended unanswered: the flood is meant to end so.
        assert run.returncode in (0, 1), run.output[-3000:]
        assert "Total-calls" in run.output
        counters = hub.gb28181.counters
        assert counters["auth_failures"] == 10
        assert counters["ignored_over_budget"] >= 40
        assert CAMERA not in hub.gb28181.sessions
        async with simulator(hub, CAMERA, "platform-default") as device:
            assert await device.register() == 200
        status = (await client.get("/api/gb28181/status")).json()
        assert status["registered"] == 1


async def test_sipp_malformed_flood_leaves_the_hub_answering(tmp_path: Path) -> None:
    async with running_hub(tmp_path, None, auto_register=True) as (hub, client):
        run = await run_sipp(
            "gb28181_malformed.xml",
            ("127.0.0.1", hub.gb28181.port),
            user="15020700001320000077",
            password="unused",
            variables=sipp_variables(),
            calls=100,
            rate=50,
            workdir=tmp_path,
        )
        assert run.returncode == 0, run.output[-3000:]
        assert hub.gb28181.counters["refused_messages"] >= 200
        async with simulator(hub, CAMERA, "platform-default") as device:
            assert await device.register() == 200
            assert await device.keepalive() == 200
        health = await client.get("/api/gb28181/status")
        assert health.status_code == 200
