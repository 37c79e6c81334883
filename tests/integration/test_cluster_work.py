"""ONVIF event channels split over two hub nodes on one PostgreSQL, real scripted cameras.

Every camera counts its subscriptions and unsubscriptions; a sampler watches that no
camera ever has two live subscriptions from the hub while a node joins or leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.onvif_fake_camera import FakeCamera, fake_camera
from tests.integration.test_onvif_event_channel import EventCamera
from tests.integration.test_onvif_hub import FAST_CHANNELS, register

pytestmark = pytest.mark.onvif

CLUSTER = {"heartbeat_s": 0.5, "node_timeout_s": 3.0, "handover_s": 1.5}
# With the node names hub-a and hub-b, rendezvous hashing splits these six cameras 3/3.
CAMERAS = 6


def hub_settings(tmp_path: Path, name: str, dsn: str, key: Path) -> Any:
    return load_settings(
        None,
        data_dir=tmp_path / name,
        node_id=name,
        storage={"url": dsn},
        onvif=FAST_CHANNELS,
        patrol={"enabled": False},
        cluster=CLUSTER,
        # Every node opens the same stored camera logins: one credential key.
        security={"credentials_key_file": key},
    )


async def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} not within {within} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def split(hubs: list[Hub], devices: set[str]) -> bool:
    """Every camera subscribed by exactly one hub, each hub subscribing some."""
    shares = [set(hub.onvif.channels()) for hub in hubs]

    return (
        all(shares)
        and sum(len(share) for share in shares) == len(devices)
        and set().union(*shares) == devices
    )


async def sample(cameras: list[EventCamera], peak: list[int]) -> None:
    """Record the most live subscriptions any one camera had (every 20 ms)."""
    while True:
        for camera in cameras:
            peak[0] = max(peak[0], camera.subscriptions - camera.unsubscribes)
        await asyncio.sleep(0.02)


async def test_event_channels_split_over_two_nodes_and_return_when_one_leaves(
    pg_dsn: str, tmp_path: Path
) -> None:
    key = tmp_path / "credentials.key"
    cameras = [EventCamera() for _ in range(CAMERAS)]
    devices = {f"cam-{n}" for n in range(CAMERAS)}
    peak = [0]
    async with AsyncExitStack() as stack:
        servers: list[FakeCamera] = [
            await stack.enter_async_context(fake_camera(camera)) for camera in cameras
        ]
        hub_a = await stack.enter_async_context(Hub(hub_settings(tmp_path, "hub-a", pg_dsn, key)))
        app = hub_a.app()
        act_as(app, role="maintenance")
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub")
        )
        for n, server in enumerate(servers):
            await register(client, f"cam-{n}", server.host, server.port, "operator", "s3cret-pw")
        await wait_for(lambda: split([hub_a], devices), 15, "node a subscribing every camera")
        sampler = asyncio.create_task(sample(cameras, peak))
        stack.callback(sampler.cancel)

        # Node b joins: a lets go of b's share, b subscribes after the handover.
        hub_b = Hub(hub_settings(tmp_path, "hub-b", pg_dsn, key))
        await hub_b.start()
        try:
            await wait_for(lambda: split([hub_a, hub_b], devices), 20, "the split over a and b")
            await wait_for(
                lambda: all(camera.subscriptions - camera.unsubscribes == 1 for camera in cameras),
                10,
                "one live subscription per camera",
            )
        finally:
            await hub_b.stop()
        # b left cleanly (unsubscribed, marked stopped): a takes its share back.
        took = await wait_for(lambda: split([hub_a], devices), 15, "node a taking b's share")
        assert took < 3 * CLUSTER["heartbeat_s"] + 5.0, took
        await wait_for(
            lambda: all(camera.subscriptions - camera.unsubscribes == 1 for camera in cameras),
            10,
            "one live subscription per camera after b left",
        )
    assert peak[0] == 1, f"a camera had {peak[0]} live subscriptions from the hub at once"
