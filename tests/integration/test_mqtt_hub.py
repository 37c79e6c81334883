"""MQTT devices inside a running hub (real writer and storage, the machine's Mosquitto)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from adapters.mqtt import UnitStatus
from adapters.sim import BroadcastUnitSim, PanicButtonSim
from camera_registry.events import Severity
from hub.config import load_settings
from hub.runtime import Hub
from tests.integration.hub_mqtt_support import (
    hub_with_mqtt,
    mqtt_hub_settings,
    register_device,
    storage_url,
    wait_until,
)
from tests.integration.mqtt_support import unique_prefix

pytestmark = pytest.mark.mqtt

BUTTON = "school-03-btn-1"
BUTTON_MQTT_ID = "sos-0a1b2c"
SPEAKER = "school-03-spk-1"

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def writes_blocked(hub: Hub, url: str | None, tmp_path: Path) -> Iterator[None]:
    """Hold the database's write lock from outside the hub, so no batch can commit."""
    if url is None:
        conn = sqlite3.connect(tmp_path / "gridwatch.sqlite3", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(url) as pg:
        pg.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


async def _device_health(hub: Hub, device_id: str) -> str | None:
    """The device's stored health (None before anything was stored about it)."""
    async with hub.store.reading() as tx:
        row = await tx.fetchone(
            "SELECT health FROM device_state WHERE device_id = %s", (device_id,)
        )
    return None if row is None else str(row[0])


async def _stored_presses(hub: Hub, device_id: str) -> int:
    return await hub.store.count_events(device_id=device_id, kind="panic.press")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_press_is_stored_then_acknowledged(
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
        await register_device(hub.store, BUTTON, "alarm_point", mqtt_device_id=BUTTON_MQTT_ID)
        adapter = hub.mqtt.adapter
        assert adapter is not None
        assert await adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(BUTTON_MQTT_ID), what="registry")

        with PanicButtonSim(BUTTON_MQTT_ID, host=broker[0], port=broker[1], prefix=prefix) as sim:
            # The online announcement goes through the same path: wait for it to settle.
            await wait_until(lambda: adapter.metrics.acked >= 1, what="online announced")
            acked_before = adapter.metrics.acked
            with writes_blocked(hub, url, tmp_path):
                msg_id = sim.press()
                await wait_until(lambda: adapter.metrics.received >= acked_before + 1)
                await asyncio.sleep(0.5)
                # Received, not committed: no PUBACK has gone to the broker.
                assert adapter.metrics.acked == acked_before
                assert await _stored_presses(hub, BUTTON) == 0
            await wait_until(lambda: adapter.metrics.acked == acked_before + 1, what="ack")
            assert await _stored_presses(hub, BUTTON) == 1

        (press,) = await hub.store.events(device_id=BUTTON, kind="panic.press")
        assert press.severity is Severity.CRITICAL
        assert press.payload["msg_id"] == msg_id
        assert press.dedup_key == f"mqtt:{BUTTON}:{msg_id}"

        engine = getattr(hub, "alarm_engine", None) or getattr(hub, "alarms", None)
        if engine is not None:
            async with hub.store.reading() as tx:
                rows = await tx.fetchall(
                    "SELECT priority, state FROM alarms WHERE device_id = %s", (BUTTON,)
                )
            assert [(int(p), s) for p, s in rows] == [(1, "new")]

        ready = (await client.get("/readyz")).json()
        assert ready["mqtt"]["enabled"] is True
        assert ready["mqtt"]["connected"] is True
        metrics = (await client.get("/metrics")).text
        assert "gridwatch_mqtt_connected 1.0" in metrics
        assert "gridwatch_mqtt_acked_total" in metrics


@pytest.mark.parametrize("backend", BACKENDS)
async def test_availability_and_heartbeats_move_device_health(
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
        await register_device(hub.store, SPEAKER, "broadcast_unit")
        adapter = hub.mqtt.adapter
        assert adapter is not None and await adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(SPEAKER), what="registry")

        async def health() -> str | None:
            return await _device_health(hub, SPEAKER)

        unit = BroadcastUnitSim(SPEAKER, host=broker[0], port=broker[1], prefix=prefix)
        unit.start()
        await wait_until(lambda: _is(health, "online"), what="online")
        unit.report_status("fault")
        await wait_until(lambda: _is(health, "degraded"), what="fault → degraded")
        listed = (await client.get("/api/broadcast/units")).json()
        assert [(u["id"], u["status"]) for u in listed] == [(SPEAKER, "fault")]
        unit.report_status("idle")
        await wait_until(lambda: _is(health, "online"), what="idle → online")
        unit.crash()  # the broker publishes the last will
        await wait_until(lambda: _is(health, "offline"), timeout=60, what="last will → offline")
        listed = (await client.get("/api/broadcast/units")).json()
        assert listed[0]["status"] == "offline"
        # Every change is in the health history the KPIs are computed from.
        async with hub.store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT from_state, to_state FROM device_health_history"
                " WHERE device_id = %s ORDER BY at, id",
                (SPEAKER,),
            )
        assert [tuple(r) for r in rows] == [
            ("unknown", "online"),
            ("online", "degraded"),
            ("degraded", "online"),
            ("online", "offline"),
        ]


async def _is(health: object, expected: str) -> bool:
    assert callable(health)
    return bool(await health() == expected)


async def test_hub_without_broker_starts_and_is_ready(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    assert settings.mqtt.enabled is False
    async with Hub(settings) as hub:
        transport = httpx.ASGITransport(app=hub.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["mqtt"] == {
            "enabled": False,
            "connected": False,
            "state": "disabled",
            "since": None,
            "reason": None,
            "devices": 0,
        }


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_button_silent_across_a_restart_is_still_declared_offline(
    backend: str,
    broker: tuple[str, int],
    client_id: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Heartbeat watching survives a restart: a button heard before the hub went down
    that stays connected but silent (hung firmware: no last will) is declared offline
    by the restarted hub after its missed heartbeats."""
    url = storage_url(backend, request)
    prefix = unique_prefix()
    mqtt = {**mqtt_hub_settings(*broker, prefix, client_id), "heartbeat_missed_intervals": 2}

    button = PanicButtonSim(BUTTON, host=broker[0], port=broker[1], prefix=prefix)
    try:
        async with hub_with_mqtt(tmp_path, url, mqtt) as (hub, _):
            await register_device(hub.store, BUTTON, "alarm_point")
            adapter = hub.mqtt.adapter
            assert adapter is not None and await adapter.wait_connected(5)
            await wait_until(lambda: hub.mqtt.directory.lookup(BUTTON), what="registry")
            button.start()
            button.heartbeat_interval_s = 1.0  # announces 1 s; sent by hand from here on
            button.heartbeat()
            await wait_until(
                lambda: hub.store.count_events(kind="device.heartbeat"), what="heartbeat"
            )
            assert await _device_health(hub, BUTTON) == "online"

        async with hub_with_mqtt(tmp_path, url, mqtt) as (hub, _):

            async def offline() -> bool:
                return await _device_health(hub, BUTTON) == "offline"

            await wait_until(offline, timeout=20, what="silent button → offline")
            events = await hub.store.events(device_id=BUTTON, limit=50)
            reasons = [e.payload.get("reason") for e in events if e.kind == "device.offline"]
            assert reasons == ["heartbeat_missed"]
    finally:
        button.stop()


async def test_missed_heartbeats_make_a_device_offline(
    broker: tuple[str, int], client_id: str, tmp_path: Path
) -> None:
    """A button that hangs while still connected (no last will) is declared offline by
    its missed heartbeats: the stored `device.offline` says why, and its unit status is
    offline."""
    prefix = unique_prefix()
    mqtt = {**mqtt_hub_settings(*broker, prefix, client_id), "heartbeat_missed_intervals": 2}
    async with hub_with_mqtt(tmp_path, None, mqtt) as (hub, _):
        await register_device(hub.store, BUTTON, "alarm_point")
        adapter = hub.mqtt.adapter
        assert adapter is not None and await adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(BUTTON), what="registry")
        button = PanicButtonSim(
            BUTTON, host=broker[0], port=broker[1], prefix=prefix, heartbeat_interval_s=0.5
        )
        with button:
            await wait_until(
                lambda: hub.store.count_events(kind="device.heartbeat"), what="heartbeat"
            )
            button.pause_heartbeats()  # hung, but still connected: no last will
            await wait_until(
                lambda: hub.store.count_events(kind="device.offline"), timeout=10, what="offline"
            )
            offline = (await hub.store.events(kind="device.offline", limit=10))[0]
            assert offline.payload["reason"] == "heartbeat_missed"
            assert hub.mqtt.unit_status(BUTTON) is UnitStatus.OFFLINE
