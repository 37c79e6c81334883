"""GB/T 28181 through the hub with the in-repo device simulator over real SIP (UDP and TCP),
on SQLite and PostgreSQL: refusal and acceptance, digest, catalog into the registry, alarms
into the alarm engine, keepalive health, unregistration, and hostile input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from adapters.gb28181.simulator import DeviceSimulator, SimChannel
from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as

PLATFORM = "15020700002000000001"
DOMAIN = "1502070000"
NVR = "15020700001180000001"
CAMERA = "15020700001320000009"
TREE = [
    {"code": "150207", "name": "九原区", "level": "district"},
    {"code": "150207001", "name": "沙河镇", "level": "town", "parent_code": "150207"},
]
T = TypeVar("T")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@asynccontextmanager
async def running_hub(
    tmp_path: Path, storage_url: str | None, *, live_idle_close: float = 5.0, **gb: Any
) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    settings = load_settings(
        None,
        data_dir=tmp_path,
        storage={"url": storage_url},
        patrol={"enabled": False},
        live={"idle_close_seconds": live_idle_close},
        gb28181={
            "enabled": True,
            "sip_port": 0,
            "platform_id": PLATFORM,
            "domain": DOMAIN,
            "password": "platform-default",
            **gb,
        },
    )
    async with Hub(settings) as hub:
        app = hub.app()
        act_as(app, role="admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            assert (await client.post("/api/jurisdictions", json=TREE)).status_code == 201
            yield hub, client


def simulator(hub: Hub, device_id: str, password: str, **kwargs: Any) -> DeviceSimulator:
    return DeviceSimulator(
        device_id,
        password,
        server=("127.0.0.1", hub.gb28181.port),
        server_id=PLATFORM,
        domain=DOMAIN,
        **kwargs,
    )


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll until `probe` gives a value (bounded by the test timeout, not asserted in time)."""
    for _ in range(600):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def channels(count: int) -> list[SimChannel]:
    return [
        SimChannel(
            f"1502070000132{n:07d}",
            f"沙河镇 通道{n}",
            civil_code="150207001" if n % 2 else "150207",
            status="ON" if n != 3 else "OFF",
            longitude=109.8 + n / 1000,
            latitude=40.6,
        )
        for n in range(1, count + 1)
    ]


async def test_unknown_device_is_refused_listed_accepted_and_then_registers(
    tmp_path: Path, storage_url: str | None
) -> None:
    async with (
        running_hub(tmp_path, storage_url) as (hub, client),
        simulator(hub, NVR, "own-secret", channels=channels(45)) as device,
    ):
        assert await device.register() == 403
        pending = (await client.get("/api/gb28181/devices", params={"pending": True})).json()
        assert [d["device_id"] for d in pending] == [NVR]
        assert pending[0]["attempts"] == 1

        accepted = await client.post(
            f"/api/gb28181/devices/{NVR}/accept", json={"password": "own-secret"}
        )
        assert accepted.status_code == 204, accepted.text
        # Its own password now; the platform default no longer opens it.
        assert await device.register(password="platform-default") == 403
        assert await device.register() == 200

        async def armed_with_catalog() -> dict[str, Any] | None:
            body: dict[str, Any] = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
            ready = body["armed"] and body["channel_count"] == 45
            return body if ready else None

        detail = await eventually(armed_with_catalog, "armed and catalog of 45 channels")
        assert detail["registered"] and not detail["pending"]
        assert detail["version"] == "3.0"
        assert device.stats.guard_commands == 1 and device.stats.catalog_queries == 1
        assert detail["info"]["model"] == "SIM-NVR"
        channel = (await client.get("/api/devices/15020700001320000001")).json()
        assert channel["kind"] == "camera"
        assert channel["name"] == "沙河镇 通道1"
        assert channel["jurisdiction"] == "150207001"
        assert f"gbparent:{NVR}" in channel["tags"]
        second = (await client.get("/api/devices/15020700001320000002")).json()
        assert second["jurisdiction"] == "150207"
        for text in (str(detail), accepted.text, str(pending)):
            assert "own-secret" not in text

        async def channel_three_offline() -> bool:
            body = (await client.get("/api/devices/15020700001320000003")).json()
            return bool(body["health"] == "offline")

        await eventually(channel_three_offline, "channel 3 offline from the catalog status")


async def test_alarm_is_stored_then_acknowledged_and_opens_an_alarm_with_its_priority(
    tmp_path: Path, storage_url: str | None
) -> None:
    async with (
        running_hub(tmp_path, storage_url, auto_register=True) as (hub, client),
        simulator(hub, NVR, "platform-default", channels=channels(4)) as device,
    ):
        assert await device.register() == 200
        await eventually(
            lambda: hub.registry.get("15020700001320000002", scope=None),
            "catalog registered",
        )
        status = await device.alarm(
            source_id="15020700001320000002", priority=1, method=5, alarm_type=2
        )
        assert status == 200  # sent only after the event was committed
        stored = await hub.store.events(device_id="15020700001320000002")
        assert [e.kind for e in stored if e.kind.startswith("gb28181.")] == ["gb28181.alarm.motion"]

        async def alarm() -> dict[str, Any] | None:
            page = (await client.get("/api/alarms", params={"type": "device_alarm"})).json()
            return page["items"][0] if page["items"] else None

        opened = await eventually(alarm, "alarm opened")
        assert opened["priority"] == 1
        assert opened["device_id"] == "15020700001320000002"
        assert opened["title"] == "motion detected: 沙河镇 通道2"
        assert opened["title_i18n"]["zh-CN"] == "运动目标检测报警：沙河镇 通道2"

        # A tamper alarm at priority 2 from the NVR itself, GB18030 body.
        assert await device.alarm(priority=2, method=2, alarm_type=2, description="防拆") == 200
        device_row = (await client.get(f"/api/gb28181/devices/{NVR}")).json()
        assert device_row["last_alarm_at"] is not None

        async def answered() -> bool:
            return device.stats.alarm_answers >= 2

        await eventually(answered, "Response/Alarm MESSAGEs to the device")


async def test_silence_takes_the_device_offline_and_expires_zero_unregisters(
    tmp_path: Path, storage_url: str | None
) -> None:
    gb = {"auto_register": True, "keepalive_interval_s": 0.5, "keepalive_missed": 2}
    async with (
        running_hub(tmp_path, storage_url, **gb) as (hub, client),
        simulator(hub, CAMERA, "platform-default", transport="TCP") as device,
    ):
        assert await device.register() == 200
        assert await device.keepalive() == 200

        async def health(state: str) -> bool:
            body = (await client.get(f"/api/devices/{CAMERA}")).json()
            return bool(body.get("health") == state)  # 404 until the registry adds it

        async def online_while_alive() -> bool:
            # Kept alive while polled: at a 0.5 s keepalive interval the device goes
            # offline a second after its last one, sooner than a slow machine's poll.
            assert await device.keepalive() == 200
            return await health("online")

        await eventually(online_while_alive, "online after keepalive")
        await eventually(lambda: health("offline"), "offline after missed keepalives")

        async def offline_alarm() -> list[str] | None:
            page = (await client.get("/api/alarms", params={"type": "device_offline"})).json()
            return [a["device_id"] for a in page["items"]] or None

        assert await eventually(offline_alarm, "device_offline alarm") == [CAMERA]

        assert await device.register() == 200
        await eventually(online_while_alive, "online after re-registration")
        assert await device.register(expires=0) == 200
        await eventually(lambda: health("offline"), "offline after Expires: 0")
        assert CAMERA not in hub.gb28181.sessions
        # Unregistered: its messages are refused until it registers again.
        assert await device.keepalive() == 403


async def test_wrong_password_flood_is_cut_off_per_source_and_hostile_input_is_refused(
    tmp_path: Path,
) -> None:
    async with running_hub(tmp_path, None, auto_register=True, auth_failures_per_minute=5) as (
        hub,
        client,
    ):
        flooder = simulator(hub, CAMERA, "wrong", host="127.0.0.2")
        async with flooder:
            answers = [await flooder.register() for _ in range(7)]
        assert answers[:5] == [403] * 5
        assert answers[5:] == [None, None]  # ignored: no answer at all
        assert hub.gb28181.counters["ignored_over_budget"] >= 2

        async with simulator(hub, NVR, "platform-default") as device:
            device.send_raw(b"INVITE nonsense\r\n\r\n")
            device.send_raw(b"\x00\xff" * 500)
            device.send_raw(b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 99999\r\n\r\n")
            assert await device.register() == 200
            bad = b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY b 'c'>]><Notify>&b;</Notify>"
            assert await device.message(bad) == 400
            assert await device.message(b"<Notify><CmdType>Keepalive</CmdType>") == 400
            await hub.writer.flush()
            rejected = await hub.store.rejected_messages()
            assert len([r for r in rejected if r.source == "gb28181"]) == 2
            assert await device.keepalive() == 200
        assert hub.gb28181.counters["refused_messages"] >= 3
        status = (await client.get("/api/gb28181/status")).json()
        assert status["registered"] == 1 and status["sip_port"] == hub.gb28181.port
