"""A camera that refuses the stored login, on the real GStreamer RTSP server with Digest auth.

A refused login is a maintenance fault ("credentials rejected", P3), never video loss
or a security alarm; after three refusals the camera's login is `auth_failed` and is
not tried again until the stored login changes (or the hourly retry).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.rtsp import StreamProbe
from camera_registry.models import Credentials
from hub.config import load_settings
from hub.devices import storage as devices_repo
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.health_seed import TOWN_A, seed_camera, seed_tree
from tests.peers.rtsp import RtspPeer, rtsp_peer

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]

LOGIN = ("admin", "s3cret-Pass")
PATROL = {"enabled": False, "frames": 4, "timeout_s": 10, "concurrency": 3}


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspPeer]:
    """The RTSP server demanding Digest authentication on every stream."""
    with rtsp_peer(tmp_path_factory.mktemp("rtsp-auth"), auth=":".join(LOGIN)) as running:
        yield running


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": dsn}, patrol=PATROL)
    async with Hub(settings) as running:
        yield running


async def _rows(hub: Hub, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with hub.store.reading() as tx:
        return [tuple(row) for row in await tx.fetchall(sql, params)]


async def _store_login(hub: Hub, device_id: str, username: str, password: str) -> None:
    blob = hub.registry.cipher.seal(device_id, Credentials(username=username, password=password))
    async with hub.store.transaction() as tx:
        await tx.execute("UPDATE devices SET credentials = %s WHERE id = %s", (blob, device_id))


async def _health_api(hub: Hub, device_id: str) -> dict[str, Any]:
    app = hub.app()
    act_as(app, role="maintenance", scope=(TOWN_A[4],), subject="maintainer")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        response = await client.get(f"/api/devices/{device_id}/health")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _flushed(hub: Hub) -> None:
    await asyncio.wait_for(hub.writer.flush(), 30)


async def test_a_refused_login_is_a_credentials_fault_never_video_loss(
    hub: Hub, peer: RtspPeer
) -> None:
    await seed_tree(hub.store)
    await seed_camera(hub.store, "cam-wrong", urls=[peer.url("ball")])
    await _store_login(hub, "cam-wrong", LOGIN[0], "not-the-password")
    await seed_camera(hub.store, "cam-none", urls=[peer.url("ball")])  # no login stored
    await seed_camera(hub.store, "cam-right", urls=[peer.url("ball")])
    await _store_login(hub, "cam-right", *LOGIN)

    await hub.patrol.run_once()
    await _flushed(hub)

    state = dict(
        (r[0], (r[1], r[2]))
        for r in await _rows(hub, "SELECT device_id, health, health_reason FROM device_state")
    )
    assert state["cam-right"][0] == "online"
    for device_id, why in (
        ("cam-wrong", "the camera refused the stored login"),
        ("cam-none", "the camera demands a login and none is stored"),
    ):
        health, reason = state[device_id]
        assert health == "degraded"
        assert reason == f"credentials rejected: {why}; check the stored login"
        kinds = sorted(e.kind for e in await hub.store.events(device_id=device_id, limit=50))
        assert kinds == ["device.credentials_rejected", "health.degraded"]

    alarms = await _rows(
        hub, "SELECT device_id, type, priority, category FROM alarms ORDER BY device_id"
    )
    assert alarms == [
        ("cam-none", "credentials_rejected", 3, "maintenance"),
        ("cam-wrong", "credentials_rejected", 3, "maintenance"),
    ]
    [sop] = {
        r[0] for r in await _rows(hub, "SELECT sop FROM alarms WHERE type = 'credentials_rejected'")
    }
    assert "Check the stored login" in sop


async def test_three_refusals_stop_the_logins_until_the_stored_login_changes(
    hub: Hub, peer: RtspPeer
) -> None:
    await seed_tree(hub.store)
    await seed_camera(hub.store, "cam-locked", urls=[peer.url("ball")])
    await _store_login(hub, "cam-locked", LOGIN[0], "wrong-1")

    async def probes() -> int:
        rows = await _rows(
            hub, "SELECT COUNT(*) FROM health_samples WHERE device_id = 'cam-locked'"
        )
        return int(rows[0][0])

    for expected in (1, 2, 3):
        await hub.patrol.run_once()
        assert await probes() == expected
    body = await _health_api(hub, "cam-locked")
    assert body["health"] == "degraded"
    assert body["reason_code"] == "auth.credentials_rejected"
    assert body["reason_params"] == {"login_stored": True}
    assert body["transitions"][0]["reason_code"] == "auth.credentials_rejected"
    login = body["login"]
    assert (login["state"], login["refusals"], login["last_source"]) == (
        "auth_failed",
        3,
        "rtsp_probe",
    )
    assert login["retry_at"] is not None

    # Auth_failed: further passes leave the camera alone (no fourth refused login).
    await hub.patrol.run_once()
    await hub.patrol.run_once()
    assert await probes() == 3
    assert hub.patrol.last is not None
    assert any("not tried again" in p[2] for p in hub.patrol.last.problems)

    # A maintainer corrects the stored login: it is tried at once, and it works.
    await _store_login(hub, "cam-locked", *LOGIN)
    await hub.patrol.run_once()
    await _flushed(hub)
    assert await probes() == 4
    body = await _health_api(hub, "cam-locked")
    assert body["health"] == "online"
    assert body["reason_code"] == "picture.ok"
    assert body["login"]["state"] == "ok"
    [(state,)] = await _rows(hub, "SELECT state FROM alarms WHERE device_id = 'cam-locked'")
    assert state == "closed"


async def test_alarm_snapshots_share_the_login_budget(hub: Hub, peer: RtspPeer) -> None:
    """Refused snapshot logins count with the patrol's; a blocked camera is not asked again."""
    await seed_tree(hub.store)
    await seed_camera(hub.store, "cam-snap", urls=[peer.url("ball")])
    await _store_login(hub, "cam-snap", LOGIN[0], "wrong-2")
    linkage = hub.alarms.linkage
    grabs: list[str] = []
    real_grab = linkage.frame_grabber

    async def counting_grab(url: str, timeout_s: float) -> StreamProbe:
        grabs.append(url)
        return await real_grab(url, timeout_s)

    linkage.frame_grabber = counting_grab

    async def snapshot() -> tuple[str, bytes, str] | None:
        async with hub.store.reading() as tx:
            dialect = hub.store.dialect
            present = await devices_repo.device_columns(tx, dialect)
            found = await devices_repo.alarm_devices(tx, dialect, ["cam-snap"], present)
            device = found["cam-snap"]
        return await linkage._snapshot(device)

    await hub.patrol.run_once()
    await hub.patrol.run_once()
    assert await snapshot() is None  # the third refusal, from the RTSP server itself
    assert len(grabs) == 1
    login = (await _health_api(hub, "cam-snap"))["login"]
    assert (login["state"], login["refusals"], login["last_source"]) == (
        "auth_failed",
        3,
        "snapshot",
    )
    # The next alarm's snapshot leaves the camera alone, and so does the patrol.
    assert await snapshot() is None
    assert len(grabs) == 1

    # With the right login stored, the snapshot is taken and the budget is clear.
    await _store_login(hub, "cam-snap", *LOGIN)
    shot = await snapshot()
    assert shot is not None and shot[0] == "image/jpeg" and shot[1][:2] == b"\xff\xd8"
    assert (await _health_api(hub, "cam-snap"))["login"]["state"] == "ok"
