"""Shared pieces of the GB/T 28181 platform tests: a running hub and a simulated device."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from adapters.gb28181.simulator import DeviceSimulator, SimChannel
from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as

PLATFORM = "15020700002000000001"
DOMAIN = "1502070000"
NVR = "15020700001180000001"
TREE = [
    {"code": "150207", "name": "九原区", "level": "district"},
    {"code": "150207001", "name": "沙河镇", "level": "town", "parent_code": "150207"},
]
T = TypeVar("T")


def free_sip_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (a hub restarted on it keeps its address)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for UDP and TCP")


@asynccontextmanager
async def gb_hub(
    data_dir: Path,
    storage_url: str | None,
    *,
    tree: bool = True,
    node_id: str | None = None,
    **gb: Any,
) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    """A hub with GB/T 28181 on, an admin API client, and the two-level tree."""
    settings = load_settings(
        None,
        data_dir=data_dir,
        node_id=node_id,
        storage={"url": storage_url},
        patrol={"enabled": False},
        gb28181={
            "enabled": True,
            "sip_port": 0,
            "platform_id": PLATFORM,
            "domain": DOMAIN,
            "password": "platform-default",
            "auto_register": True,
            **gb,
        },
    )
    async with Hub(settings) as hub:
        app = hub.app()
        act_as(app, role="admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            if tree:
                assert (await client.post("/api/jurisdictions", json=TREE)).status_code == 201
            yield hub, client


def device_at(port: int, device_id: str = NVR, **kwargs: Any) -> DeviceSimulator:
    """A simulated device that talks to the hub at 127.0.0.1:`port`."""
    return DeviceSimulator(
        device_id,
        "platform-default",
        server=("127.0.0.1", port),
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


def channel(n: int, *, status: str = "ON", name: str | None = None) -> SimChannel:
    """Channel `n` of the NVR (even ones in the town, odd ones at district level)."""
    return SimChannel(
        f"1502070000132{n:07d}",
        name or f"沙河镇 通道{n}",
        civil_code="150207001",
        status=status,
        longitude=109.8 + n / 1000,
        latitude=40.6,
    )


async def health_of(client: httpx.AsyncClient, device_id: str) -> str | None:
    """The device's health as the registry API shows it."""
    body = (await client.get(f"/api/devices/{device_id}")).json()
    value = body.get("health")
    return str(value) if value is not None else None


async def health_becomes(client: httpx.AsyncClient, device_id: str, state: str) -> None:
    """Wait until the registry API shows the device in `state`."""

    async def reached() -> bool:
        return await health_of(client, device_id) == state

    await eventually(reached, f"{device_id} {state}")
