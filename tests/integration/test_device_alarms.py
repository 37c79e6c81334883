"""What an MQTT device's failures turn into: the right alarm, closed when the device recovers.

Real Mosquitto (the machine's), real writer, real health machine and alarm engine.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest

from adapters.sim import BroadcastUnitSim, PanicButtonSim
from hub.runtime import Hub
from tests.integration.health_seed import seed_tree
from tests.integration.hub_mqtt_support import (
    hub_with_mqtt,
    mqtt_hub_settings,
    register_device,
    storage_url,
    wait_until,
)
from tests.integration.mqtt_support import unique_prefix

pytestmark = pytest.mark.mqtt

BUTTON = "school-05-btn-1"
SPEAKER = "school-05-spk-1"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def _alarms(hub: Hub, device_id: str) -> list[tuple[str, int, str, str]]:
    """(type, priority, category, state) of the device's alarms, oldest first."""
    async with hub.store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT type, priority, category, state FROM alarms WHERE device_id = %s"
            " ORDER BY opened_at",
            (device_id,),
        )
    return [(str(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]


async def _health(hub: Hub, device_id: str) -> str | None:
    async with hub.store.reading() as tx:
        row = await tx.fetchone(
            "SELECT health FROM device_state WHERE device_id = %s", (device_id,)
        )
    return None if row is None else str(row[0])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_offline_panic_button_opens_a_p2_alarm_that_closes_when_it_is_back(
    backend: str,
    broker: tuple[str, int],
    client_id: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = storage_url(backend, request)
    prefix = unique_prefix()
    mqtt = mqtt_hub_settings(*broker, prefix, client_id)
    async with hub_with_mqtt(tmp_path, url, mqtt) as (hub, client):
        await register_device(hub.store, BUTTON, "alarm_point", name="School 5 gate button")
        adapter = hub.mqtt.adapter
        assert adapter is not None and await adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(BUTTON), what="registry")

        button = PanicButtonSim(BUTTON, host=broker[0], port=broker[1], prefix=prefix)
        button.start()
        try:
            await wait_until(lambda: _is(_health(hub, BUTTON), "online"), what="online")
            button.crash()  # link dies: the broker publishes the last will
            await wait_until(
                lambda: _is(_health(hub, BUTTON), "offline"), timeout=60, what="offline"
            )
            await hub.writer.flush()
            assert await _alarms(hub, BUTTON) == [("device_offline", 2, "maintenance", "new")]
            health = (await client.get(f"/api/devices/{BUTTON}/health")).json()
            assert (health["reason_code"], health["reason_params"]) == ("mqtt.last_will", {})
            listed = (await client.get("/api/alarms")).json()["items"]
            [alarm] = [a for a in listed if a["device_id"] == BUTTON]
            assert alarm["title"] == "Panic button offline: School 5 gate button"

            button = PanicButtonSim(BUTTON, host=broker[0], port=broker[1], prefix=prefix)
            button.start()  # back: announces online
            await wait_until(lambda: _is(_health(hub, BUTTON), "online"), what="back online")
            await hub.writer.flush()
            assert await _alarms(hub, BUTTON) == [("device_offline", 2, "maintenance", "closed")]
        finally:
            button.crash()  # whichever of the two sims is current, possibly crashed already


async def test_a_silent_broadcast_unit_opens_the_offline_alarm_and_heartbeats_close_it(
    broker: tuple[str, int], client_id: str, tmp_path: Path
) -> None:
    """A hung unit (connected, no last will) is found by its missed heartbeats; the
    device-offline alarm is the same one a camera gets (P3), closed by its next heartbeat."""
    prefix = unique_prefix()
    mqtt = {**mqtt_hub_settings(*broker, prefix, client_id), "heartbeat_missed_intervals": 2}
    async with hub_with_mqtt(tmp_path, None, mqtt) as (hub, _):
        await register_device(hub.store, SPEAKER, "broadcast_unit")
        adapter = hub.mqtt.adapter
        assert adapter is not None and await adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(SPEAKER), what="registry")
        with BroadcastUnitSim(SPEAKER, host=broker[0], port=broker[1], prefix=prefix) as unit:
            unit.heartbeat_interval_s = 1.0  # announces 1 s; sent by hand
            unit.heartbeat()
            await wait_until(lambda: _is(_health(hub, SPEAKER), "online"), what="online")
            await wait_until(
                lambda: _is(_health(hub, SPEAKER), "offline"), timeout=30, what="silent → offline"
            )
            await hub.writer.flush()
            assert await _alarms(hub, SPEAKER) == [("device_offline", 3, "maintenance", "new")]
            unit.heartbeat()
            await wait_until(lambda: _is(_health(hub, SPEAKER), "online"), what="heard again")
            await hub.writer.flush()
            assert await _alarms(hub, SPEAKER) == [("device_offline", 3, "maintenance", "closed")]


async def test_button_tamper_is_p2_and_low_battery_p4_maintenance(
    broker: tuple[str, int], client_id: str, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    mqtt = mqtt_hub_settings(*broker, prefix, client_id)
    async with hub_with_mqtt(tmp_path, None, mqtt) as (hub, _):
        await register_device(hub.store, BUTTON, "alarm_point")
        adapter = hub.mqtt.adapter
        assert adapter is not None and await adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(BUTTON), what="registry")
        with PanicButtonSim(BUTTON, host=broker[0], port=broker[1], prefix=prefix) as button:
            button.tamper()
            await wait_until(lambda: _count(hub, BUTTON, 1), what="tamper alarm")
            button.low_battery(8)
            await wait_until(lambda: _count(hub, BUTTON, 2), what="battery alarm")
        assert await _alarms(hub, BUTTON) == [
            ("tamper", 2, "security", "new"),
            ("low_battery", 4, "maintenance", "new"),
        ]


async def _count(hub: Hub, device_id: str, expected: int) -> bool:
    return len(await _alarms(hub, device_id)) >= expected


async def _is(value: Awaitable[str | None], expected: str) -> bool:
    return await value == expected


async def test_a_button_registered_through_the_registry_is_known_at_once(
    broker: tuple[str, int], client_id: str, tmp_path: Path
) -> None:
    """The MQTT directory follows the registry's change notifications, not only its poll
    (here an hour, so only the notification can make the button known)."""
    prefix = unique_prefix()
    mqtt = {**mqtt_hub_settings(*broker, prefix, client_id), "device_refresh_s": 3600}
    async with hub_with_mqtt(tmp_path, None, mqtt, role="admin") as (hub, client):
        await seed_tree(hub.store)
        created = await client.post(
            "/api/devices",
            json={
                "id": BUTTON,
                "name": "School 5 gate button",
                "kind": "alarm_point",
                "jurisdiction": "150102001",
                "mqtt_device_id": "sos-5",
            },
        )
        assert created.status_code == 201, created.text
        await wait_until(lambda: hub.mqtt.directory.lookup("sos-5"), what="directory")
        deleted = await client.delete(f"/api/devices/{BUTTON}")
        assert deleted.status_code == 204
        await wait_until(lambda: hub.mqtt.directory.lookup("sos-5") is None, what="gone")
