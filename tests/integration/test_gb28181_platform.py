"""GB/T 28181 platform behaviour over real SIP with the in-repo simulator, on SQLite and
PostgreSQL: catalog change notifications reach the registry and the health history, an
NVR's channels follow it offline and back, and subscriptions are renewed before they run
out (inside their dialog, anew when the device forgot it, and after re-registration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from camera_registry.models import DeviceIn
from tests.integration.gb28181_support import (
    NVR,
    channel,
    device_at,
    eventually,
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


async def _catalog_of(client: Any, count: int) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
    return body if body["channel_count"] == count and body["armed"] else None


async def test_catalog_notifications_change_registry_devices_and_their_health(
    tmp_path: Path, storage_url: str | None
) -> None:
    first, second, third, fourth = (channel(n) for n in range(1, 5))
    async with gb_hub(tmp_path, storage_url) as (hub, client):
        sim = device_at(hub.gb28181.port, channels=[first, second, third, fourth])
        async with sim as device:
            assert await device.register() == 200
            await eventually(lambda: _catalog_of(client, 4), "catalog of 4")
            for item in (first, second, third):
                await health_becomes(client, item.channel_id, "online")
            # A maintainer names channel 3 for the operators; the device did not change it.
            stored = (await client.get(f"/api/devices/{third.channel_id}")).json()
            renamed = {k: v for k, v in stored.items() if k in DeviceIn.model_fields}
            renamed["name"] = "学校门口 东"
            assert (
                await client.put(f"/api/devices/{third.channel_id}", json=renamed)
            ).status_code == 200

            moved = channel(1, name="沙河镇 新名称")
            moved = type(moved)(moved.channel_id, moved.name, moved.civil_code, "ON", 109.95, 40.65)
            fifth = channel(5)
            status = await device.catalog_notify(
                [(moved, "UPDATE"), (second, "OFF"), (fourth, "DEL"), (fifth, "ADD")]
            )
            assert status == 200

            async def renamed_and_moved() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get(f"/api/devices/{first.channel_id}")).json()
                return body if body["name"] == "沙河镇 新名称" else None

            body = await eventually(renamed_and_moved, "channel 1 renamed by its device")
            assert (body["latitude"], body["longitude"]) == (40.65, 109.95)
            await health_becomes(client, second.channel_id, "offline")
            await health_becomes(client, fourth.channel_id, "offline")
            added = await eventually(
                lambda: hub.registry.get(fifth.channel_id, scope=None), "channel 5 added"
            )
            assert added.device.name == fifth.name
            detail = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
            listed = {c["channel_id"]: c for c in detail["channels"]}
            assert fourth.channel_id not in listed and fifth.channel_id in listed
            assert listed[second.channel_id]["status"] == "OFF"

            assert await device.catalog_notify([(second, "ON")]) == 200
            await health_becomes(client, second.channel_id, "online")
            health = (await client.get(f"/api/devices/{second.channel_id}/health")).json()
            reasons = [t["reason"] for t in health["transitions"]]
            assert "catalog notification: offline" in reasons
            assert "catalog notification: online" in reasons

            # The full catalog again, as the device now has it (it never renamed
            # channel 3): the maintainer's name stays, the device's rename of 1 too.
            device.channels = [moved, second, third, fifth]
            before = detail["catalog_at"]
            assert (await client.post(f"/api/gb28181/devices/{NVR}/catalog")).status_code == 202

            async def read_again() -> bool:
                body = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
                return bool(body["catalog_at"] > before and body["channel_count"] == 4)

            await eventually(read_again, "catalog read again")
            three = (await client.get(f"/api/devices/{third.channel_id}")).json()
            assert three["name"] == "学校门口 东"
            one = (await client.get(f"/api/devices/{first.channel_id}")).json()
            assert one["name"] == "沙河镇 新名称"


async def test_an_nvr_offline_takes_its_channels_offline_and_back_with_it(
    tmp_path: Path, storage_url: str | None
) -> None:
    gb: dict[str, Any] = {"keepalive_interval_s": 0.5, "keepalive_missed": 2}
    items = [channel(1), channel(2), channel(3, status="OFF")]
    async with (
        gb_hub(tmp_path, storage_url, **gb) as (hub, client),
        device_at(hub.gb28181.port, channels=items) as device,
    ):
        assert await device.register() == 200
        assert await device.keepalive() == 200
        await eventually(lambda: _catalog_of(client, 3), "catalog of 3")
        for item, state in zip(items, ("online", "online", "offline"), strict=True):
            await health_becomes(client, item.channel_id, state)

        # Keepalives stop: the NVR goes offline, and every channel with it.
        await health_becomes(client, NVR, "offline")
        for item in items[:2]:
            await health_becomes(client, item.channel_id, "offline")
        health = (await client.get(f"/api/devices/{items[0].channel_id}/health")).json()
        assert health["transitions"][0]["reason"].startswith(f"its device {NVR} is offline")

        # It speaks again: the channels its catalog lists ON come back; 3 stays off.
        assert await device.keepalive() == 200
        await health_becomes(client, NVR, "online")
        for item in items[:2]:
            await health_becomes(client, item.channel_id, "online")
        assert await health_of(client, items[2].channel_id) == "offline"


async def test_subscriptions_are_renewed_before_they_run_out(
    tmp_path: Path, storage_url: str | None
) -> None:
    async with (
        gb_hub(tmp_path, storage_url) as (hub, client),
        device_at(hub.gb28181.port, channels=[channel(1)]) as device,
    ):
        device.subscription_grant_s = 6  # shorter than the hub asks (3600 s)
        assert await device.register() == 200
        row = await eventually(lambda: _catalog_of(client, 1), "armed with catalog")
        first_until = row["alarm_subscribed_until"]
        assert first_until is not None and row["catalog_subscribed_until"] is not None

        def refreshes(event: str) -> int:
            return sum(
                1 for e, in_dialog, _ in device.stats.subscribe_log if e == event and in_dialog
            )

        async def renewed_twice() -> bool:
            return refreshes("Catalog") >= 2 and refreshes("presence") >= 2

        await eventually(renewed_twice, "both subscriptions renewed in their dialogs twice")
        row = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
        assert row["alarm_subscribed_until"] > first_until
        assert row["armed"] is True

        # The device restarts and forgets its dialogs: the hub subscribes anew.
        seen = len(device.stats.subscribe_log)
        device.forget_subscriptions()

        async def subscribed_anew() -> bool:
            fresh = device.stats.subscribe_log[seen:]
            return {e for e, in_dialog, _ in fresh if not in_dialog} == {
                "Catalog",
                "presence",
            }

        await eventually(subscribed_anew, "new subscriptions after 481")
        assert hub.gb28181.subscriptions.counters["resubscribed"] >= 2

        # Re-registration arms and subscribes again (new dialogs).
        guards = device.stats.guard_commands
        seen = len(device.stats.subscribe_log)
        assert await device.register() == 200
        await eventually(subscribed_anew, "new subscriptions after re-registration")
        assert device.stats.guard_commands == guards + 1
