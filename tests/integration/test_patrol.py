"""A patrol over cameras on the real GStreamer RTSP server, through a whole hub.

Cameras: /ball (healthy), /black (signal loss), /snow (noise), /frozen (static
picture) and a port with nothing listening (offline only after three failures).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.health_seed import TOWN_A, TOWN_B, seed_camera, seed_tree, set_urls
from tests.peers import free_port
from tests.peers.rtsp import RtspPeer, rtsp_peer

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]

PATROL = {
    "enabled": False,
    "frames": 6,
    "timeout_s": 10,  # a healthy stream that is slow to open on a loaded machine is not a fault
    "concurrency": 4,
    "policy": {"failures_to_offline": 3},
}


WATCHED = ("ball", "black", "snow", "frozen")


def _watch(url: str, stop: threading.Event, ready: threading.Event) -> None:
    """Stay connected to a shared mount, like a recorder would (demux only, no decode)."""
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=5) as container:
        for count, _ in enumerate(container.demux(container.streams.video[0])):
            if count == 30:
                ready.set()
            if stop.is_set():
                return


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspPeer]:
    """The RTSP server with its shared mounts kept running, as real cameras are.

    A shared GStreamer mount starts its pipeline for the first client (the first
    pictures of a fresh compositor are partly drawn); a camera in the field has
    been running for a long time when the patrol arrives.
    """
    with rtsp_peer(tmp_path_factory.mktemp("rtsp")) as running:
        stop = threading.Event()
        watchers = []
        for mount in WATCHED:
            ready = threading.Event()
            thread = threading.Thread(
                target=_watch, args=(running.url(mount), stop, ready), daemon=True
            )
            thread.start()
            watchers.append((thread, ready))
        for _, ready in watchers:
            assert ready.wait(15), "a mount did not start streaming"
        try:
            yield running
        finally:
            stop.set()
            for thread, _ in watchers:
                thread.join(10)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": dsn}, patrol=PATROL)
    async with Hub(settings) as running:
        yield running


async def _rows(hub: Hub, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with hub.store.reading() as tx:
        return await tx.fetchall(sql, params)


async def _state(hub: Hub, device_id: str) -> tuple[str, str | None]:
    rows = await _rows(
        hub, "SELECT health, health_reason FROM device_state WHERE device_id = %s", (device_id,)
    )
    return rows[0][0], rows[0][1]


async def _kinds(hub: Hub, device_id: str) -> list[str]:
    # What the patrol handed the writer is committed, not just taken off its queue.
    await asyncio.wait_for(hub.writer.flush(), 30)
    events = await hub.store.events(device_id=device_id, limit=100)
    return sorted(e.kind for e in events)


async def test_patrol_judges_real_streams_and_raises_the_right_events(
    hub: Hub, peer: RtspPeer
) -> None:
    dead = f"rtsp://127.0.0.1:{free_port()}/live"
    await seed_tree(hub.store)
    # A main stream and a sub-stream: the patrol must pick the sub-stream.
    await seed_camera(
        hub.store, "cam-ball", urls=[peer.url("missing-main"), peer.url("ball?sub=1")]
    )
    await seed_camera(hub.store, "cam-black", urls=[peer.url("black")])
    await seed_camera(hub.store, "cam-snow", urls=[peer.url("snow")], jurisdiction=TOWN_B)
    await seed_camera(hub.store, "cam-frozen", urls=[peer.url("frozen")])
    await seed_camera(hub.store, "cam-dead", urls=[dead])
    await seed_camera(hub.store, "cam-off", urls=[peer.url("ball")], enabled=False)
    await seed_camera(hub.store, "panic-1", kind="panic")

    first = await hub.patrol.run_once()
    assert (first.total, first.done, first.failed, first.degraded) == (5, 5, 1, 3)

    assert (await _state(hub, "cam-ball"))[0] == "online"
    health, reason = await _state(hub, "cam-black")
    assert health == "degraded" and reason is not None and "signal loss" in reason
    health, reason = await _state(hub, "cam-snow")
    assert health == "degraded" and "snow" in (reason or "").lower()
    health, reason = await _state(hub, "cam-frozen")
    assert health == "degraded" and "frozen" in (reason or "").lower()
    # One failed probe is not enough to call a camera offline (no flapping).
    assert (await _state(hub, "cam-dead"))[0] == "unknown"
    assert await _kinds(hub, "cam-dead") == []

    await hub.patrol.run_once()
    await hub.patrol.run_once()
    health, reason = await _state(hub, "cam-dead")
    assert health == "offline"
    assert reason is not None and reason.startswith("3 consecutive failures, last: unreachable")

    samples = await _rows(hub, "SELECT device_id, COUNT(*) FROM health_samples GROUP BY device_id")
    assert dict(samples) == {
        "cam-ball": 3,
        "cam-black": 3,
        "cam-snow": 3,
        "cam-frozen": 3,
        "cam-dead": 3,
    }
    history = await _rows(
        hub,
        "SELECT device_id, from_state, to_state FROM device_health_history ORDER BY id",
    )
    assert ("cam-dead", "unknown", "offline") in history
    assert ("cam-ball", "unknown", "online") in history
    # One transition per camera, none repeated. (The frozen camera is left out: a
    # probe that joins its stream between two differently coded pictures can see a
    # change, and one clean probe brings a camera back online.)
    assert len([h for h in history if h[0] != "cam-frozen"]) == 4

    # Events: each fault once (not once per pass), each transition once.
    assert await _kinds(hub, "cam-ball") == ["health.online"]
    assert await _kinds(hub, "cam-dead") == ["health.offline"]
    black = await _kinds(hub, "cam-black")
    assert black.count("vqd.signal_loss") == 1 and "health.degraded" in black
    assert "vqd.snow" in await _kinds(hub, "cam-snow")
    assert "vqd.frozen" in await _kinds(hub, "cam-frozen")
    [snow_event] = await hub.store.events(device_id="cam-snow", kind="vqd.snow")
    payload = dict(snow_event.payload)
    assert payload["score"] > payload["threshold"]
    assert "snow" in payload["explanation"].lower()
    assert payload["evidence_id"]

    # The alarm engine opened maintenance alarms from those events.
    alarms = await _rows(
        hub, "SELECT device_id, type, priority, state FROM alarms ORDER BY device_id"
    )
    by_device = {(row[0], row[1]): (row[2], row[3]) for row in alarms}
    assert by_device[("cam-dead", "device_offline")] == (3, "new")
    assert by_device[("cam-snow", "quality_fault")] == (4, "new")
    assert by_device[("cam-black", "video_loss")][0] == 2

    # The snowy camera is fixed: its picture recovers, the quality alarm closes itself.
    await set_urls(hub.store, "cam-snow", [peer.url("ball")])
    # A healthy camera loses one probe: it must stay online.
    await set_urls(hub.store, "cam-ball", [dead])
    await hub.patrol.run_once()
    assert (await _state(hub, "cam-snow"))[0] == "online"
    assert (await _state(hub, "cam-ball"))[0] == "online"
    snow_kinds = await _kinds(hub, "cam-snow")
    assert "vqd.ok" in snow_kinds and "health.online" in snow_kinds
    states = await _rows(
        hub, "SELECT state FROM alarms WHERE device_id = 'cam-snow' AND type = 'quality_fault'"
    )
    assert states and all(state not in ("new", "acknowledged", "dispatched") for (state,) in states)


async def test_health_api_explains_and_serves_evidence_in_scope(hub: Hub, peer: RtspPeer) -> None:
    await seed_tree(hub.store)
    await seed_camera(hub.store, "cam-snow", urls=[peer.url("snow")])
    await seed_camera(hub.store, "cam-ball", urls=[peer.url("ball")], jurisdiction=TOWN_B)
    await hub.patrol.run_once()
    app = hub.app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        act_as(app, role="maintenance", scope=(TOWN_A[4],))
        answer = await client.get("/api/devices/cam-snow/health")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["health"] == "degraded" and body["since"] and "snow" in body["reason"].lower()
        sample = body["last_sample"]
        assert sample["codec"] == "h264" and sample["width"] == 640 and sample["frames"] == 6
        assert "snow" in sample["faults"]
        snow = next(v for v in sample["verdicts"] if v["check"] == "snow")
        assert snow["ok"] is False and snow["score"] > snow["threshold"]
        assert body["transitions"][0]["to_state"] == "degraded"

        picture = await client.get(sample["evidence_url"])
        assert picture.status_code == 200
        assert picture.headers["content-type"] == "image/jpeg"
        decoded = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.shape == (360, 640, 3)

        summary = await client.get("/api/health/summary")
        assert summary.json()["by_state"]["degraded"] == 1 and summary.json()["total"] == 1

        # Another town's camera and its snapshot do not exist for this caller.
        assert (await client.get("/api/devices/cam-ball/health")).status_code == 404
        act_as(app, role="operator", scope=(TOWN_B[4],))
        assert (await client.get(sample["evidence_url"])).status_code == 404
        assert (await client.get("/api/devices/cam-snow/health")).status_code == 404
        other = await client.get("/api/health/summary", params={"jurisdiction": TOWN_A[0]})
        assert other.status_code == 404

        # Patrol progress and a manual run: maintenance may, operators may not.
        assert (await client.post("/api/patrol/run")).status_code == 403
        act_as(app, role="maintenance", scope=("/",))
        started = await client.post("/api/patrol/run")
        assert started.status_code == 202
        # Whoever started it sees it running at once, before its cameras are listed.
        assert started.json()["current"]["running"] is True
        assert started.json()["current"]["trigger"].startswith("api:")
        # A pass takes a few probe timeouts at worst; a loaded CI machine is slow.
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            status = (await client.get("/api/patrol")).json()
            if status["current"] is None and status["recent"][0]["trigger"].startswith("api:"):
                break
            assert asyncio.get_running_loop().time() < deadline, status
            await asyncio.sleep(0.05)
        latest = status["recent"][0]
        assert latest["done"] == latest["total"] == 2 and latest["finished_at"]
        act_as(app, role="dispatcher", scope=("/",))
        assert (await client.get("/api/patrol")).status_code == 403


async def _seed_for_cli(data_dir: Path, peer: RtspPeer, dead: str) -> None:
    settings = load_settings(None, data_dir=data_dir, patrol={"enabled": False})
    async with Hub(settings) as running:
        await seed_tree(running.store)
        await seed_camera(running.store, "cam-ball", urls=[peer.url("ball")])
        await seed_camera(running.store, "cam-black", urls=[peer.url("black")])
        await seed_camera(running.store, "cam-dead", urls=[dead])


@pytest.mark.usefixtures("peer")
def test_patrol_once_command_shows_progress_and_a_summary(peer: RtspPeer, tmp_path: Path) -> None:
    asyncio.run(_seed_for_cli(tmp_path, peer, f"rtsp://127.0.0.1:{free_port()}/x"))
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "patrol", "--once"],
        capture_output=True,
        text=True,
        env={
            "GRIDWATCH_DATA_DIR": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "GRIDWATCH_PATROL__TIMEOUT_S": "4",
        },
        check=True,
        timeout=120,
    )
    assert "3/3" in result.stderr  # the progress bar reached the end
    assert "3 of 3 cameras probed" in result.stdout
    assert "1 picture ok, 1 picture fault or no picture, 1 unreachable" in result.stdout
    assert "cam-black  degraded: signal loss" in result.stdout
    assert "cam-dead  offline: unreachable" in result.stdout
