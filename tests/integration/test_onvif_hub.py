"""ONVIF through the hub: probe via the API and CLI (ipycam), events and channel health (scripted
PullPoint cameras), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.auth import audit_storage as audit
from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.onvif_fake_camera import fake_camera, vendor_payload
from tests.integration.test_onvif_discovery import Responder
from tests.integration.test_onvif_event_channel import EventCamera, fixture
from tests.peers.onvif import IpycamInfo, ipycam_peer

pytestmark = pytest.mark.onvif

REPO = Path(__file__).resolve().parents[2]
FAST_CHANNELS = {
    "enabled": True,
    "subscription_lifetime_s": 60,
    "renew_before_s": 10,
    "pull_timeout_s": 1,
    "call_timeout_s": 1,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.2,
    "resync_s": 0.5,
}


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpycamInfo]:
    with ipycam_peer(Path(tmp_path_factory.mktemp("ipycam"))) as info:
        yield info


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@asynccontextmanager
async def running_hub(
    tmp_path: Path, storage_url: str | None, **onvif: Any
) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    settings = load_settings(
        None,
        data_dir=tmp_path,
        storage={"url": storage_url},
        onvif=onvif,
        patrol={"enabled": False},
    )
    async with Hub(settings) as hub:
        app = hub.app()
        act_as(app, role="maintenance")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield hub, client


async def register(
    client: httpx.AsyncClient, device_id: str, host: str, port: int, user: str, password: str
) -> None:
    response = await client.post(
        "/api/devices",
        json={
            "id": device_id,
            "name": f"camera {device_id}",
            "kind": "camera",
            "onvif_url": f"http://{host}:{port}/onvif/device_service",
            "credentials": {"username": user, "password": password},
        },
    )
    assert response.status_code == 201, response.text


async def test_probe_through_the_api_stores_model_profiles_and_uris(
    camera: IpycamInfo, storage_url: str | None, tmp_path: Path
) -> None:
    async with running_hub(tmp_path, storage_url) as (hub, client):
        await register(
            client, "cam-ipy", camera.host, camera.onvif_port, camera.username, camera.password
        )
        response = await client.post("/api/devices/cam-ipy/probe")
        assert response.status_code == 200, response.text
        probe = response.json()
        assert probe["device"]["model"] == "VirtualCam-1"
        assert [p["token"] for p in probe["profiles"]] == ["Profile_Main", "Profile_Sub"]
        main_stream = f"rtsp://127.0.0.1:{camera.rtsp_port}/video_main"
        assert probe["stream_uris"][0] == main_stream
        assert probe["snapshot_uri"].startswith(f"http://127.0.0.1:{camera.onvif_port}/")
        assert abs(probe["clock_offset_s"]) < 5
        assert {"model", "rtsp_urls", "snapshot_url", "vendor"} <= set(probe["changed"])

        device = (await client.get("/api/devices/cam-ipy")).json()
        assert (device["vendor"], device["model"]) == ("PythonCam", "VirtualCam-1")
        assert device["rtsp_urls"][0] == main_stream
        stored = await hub.registry.get("cam-ipy", scope=None)
        assert stored is not None and stored.snapshot_url == probe["snapshot_uri"]
        for text in (response.text, str(device)):
            assert camera.password not in text and "@127.0.0.1" not in text

        onvif = (await client.get("/api/devices/cam-ipy/onvif")).json()
        assert onvif["last_probe"]["ok"] is True and onvif["event_channel"] is None
        actions = [e.action for e in await audit.query(hub.store, target="cam-ipy")]
        assert "device.probe" in actions and actions.count("device.update") >= 1

        # A probe of the unchanged camera changes nothing (and audits no device change).
        again = (await client.post("/api/devices/cam-ipy/probe")).json()
        assert again["changed"] == []


async def test_wrong_password_is_an_auth_problem_not_a_500(
    camera: IpycamInfo, storage_url: str | None, tmp_path: Path
) -> None:
    async with running_hub(tmp_path, storage_url) as (hub, client):
        await register(
            client, "cam-bad", camera.host, camera.onvif_port, camera.username, "wrong-pw-123"
        )
        response = await client.post("/api/devices/cam-bad/probe")
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["failure"] == "auth" and "login" in problem["title"]
        assert "wrong-pw-123" not in response.text
        onvif = (await client.get("/api/devices/cam-bad/onvif")).json()
        assert onvif["last_probe"]["ok"] is False and onvif["last_probe"]["failure"] == "auth"
        assert b'gridwatch_onvif_probes_total{outcome="auth"} 1.0' in hub.metrics.render()


async def test_out_of_scope_and_unprobeable_devices(tmp_path: Path) -> None:
    async with running_hub(tmp_path, None) as (_, client):
        await client.post("/api/devices", json={"id": "cam-x", "name": "x", "kind": "camera"})
        assert (await client.post("/api/devices/cam-x/probe")).status_code == 409
        act_as(hub_app(client), role="maintenance", scope=("/150102/150102001/",))
        assert (await client.post("/api/devices/cam-x/probe")).status_code == 404
        assert (await client.get("/api/devices/cam-x/onvif")).status_code == 404
        act_as(hub_app(client), role="operator")
        assert (await client.post("/api/devices/cam-x/probe")).status_code == 403


def hub_app(client: httpx.AsyncClient) -> Any:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


def test_cli_probe_prints_the_same_and_fails_with_the_class(
    camera: IpycamInfo, tmp_path: Path
) -> None:
    async def setup() -> None:
        async with running_hub(tmp_path, None) as (_, client):
            await register(
                client, "cam-cli", camera.host, camera.onvif_port, camera.username, camera.password
            )
            await register(
                client, "cam-nope", camera.host, camera.onvif_port, camera.username, "nope-nope"
            )

    asyncio.run(setup())
    env = {"GRIDWATCH_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "hub.cli", "devices", "probe"]
    ok = subprocess.run(
        [*command, "cam-cli"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert "VirtualCam-1" in ok.stdout and "Profile_Main" in ok.stdout
    assert f"rtsp://127.0.0.1:{camera.rtsp_port}/video_main" in ok.stdout
    assert "clock" in ok.stdout and camera.password not in ok.stdout
    bad = subprocess.run(
        [*command, "cam-nope"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 10
    assert "auth" in bad.stderr and "nope-nope" not in bad.stderr


async def wait_until(condition: Any, within: float) -> float:
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > within:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_events_reach_the_store_and_health_is_visible(
    storage_url: str | None, tmp_path: Path
) -> None:
    healthy, stalled = EventCamera(lifetime=timedelta(seconds=60)), EventCamera()
    stalled.script = ["hang"] * 50
    async with (
        fake_camera(healthy) as good_server,
        fake_camera(stalled) as bad_server,
        running_hub(tmp_path, storage_url, **FAST_CHANNELS) as (hub, client),
    ):
        await register(
            client, "cam-stall", bad_server.host, bad_server.port, "operator", "s3cret-pw"
        )
        await register(
            client, "cam-good", good_server.host, good_server.port, "operator", "s3cret-pw"
        )

        async def subscribed() -> bool:
            health = hub.onvif.channel_health("cam-good")
            return health is not None and health.pulls > 0

        await wait_until(subscribed, within=5)
        healthy.script = [fixture("motion_on.xml"), fixture("tamper.xml")]

        async def stored() -> bool:
            kinds = {e.kind for e in await hub.store.events(device_id="cam-good")}
            return {"onvif.motion", "onvif.tamper"} <= kinds

        # The camera answers its next pull (idle pulls return every 50 ms) with both; the
        # hub stores them while the stalled camera keeps its calls hanging (no wall-clock
        # bound here: a loaded machine is slow; test_onvif_event_channel shows a stalled
        # camera does not hold up the others on the shared pool).
        await wait_until(stored, within=5)
        assert not stalled.script or hub.onvif.channel_health("cam-stall") is not None

        body = (await client.get("/api/devices/cam-good/onvif")).json()
        channel = body["event_channel"]
        assert body["events_running"] is True
        assert channel["state"] == "subscribed" and channel["pulls"] > 0
        assert channel["seconds_since_last_pull"] < 5
        assert channel["messages_per_topic"]["RuleEngine/CellMotionDetector/Motion"] >= 1
        stall = (await client.get("/api/devices/cam-stall/onvif")).json()["event_channel"]
        assert stall["pulls"] == 0

        metrics = hub.metrics.render().decode()
        assert 'gridwatch_onvif_channels{state="subscribed"}' in metrics
        assert "gridwatch_onvif_pulls_total" in metrics
        assert 'gridwatch_onvif_messages_total{topic="ruleengine/cellmotiondetector/motion"}' in (
            metrics
        )
        assert "cam-good" not in metrics  # no per-camera series

        # Removing the camera from the registry stops its channel.
        assert (await client.delete("/api/devices/cam-good")).status_code == 204

        async def gone() -> bool:
            return hub.onvif.channel_health("cam-good") is None

        await wait_until(gone, within=3)


async def test_discovery_lists_unregistered_cameras_and_onboarding_registers_one(
    camera: IpycamInfo, storage_url: str | None, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Responder, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        async with running_hub(
            tmp_path, storage_url, discovery_target=f"127.0.0.1:{port}", discovery_timeout_s=0.5
        ) as (_, client):
            found = (await client.get("/api/onvif/discovery?interface=127.0.0.1")).json()
            (candidate,) = found["candidates"]
            assert candidate["name"] == "IPC-East-Gate" and candidate["device_id"] is None
            bad = await client.get("/api/onvif/discovery?interface=not-an-ip")
            assert bad.status_code == 422

            # Onboarding = probe with the given login, then register.
            xaddr = f"http://{camera.host}:{camera.onvif_port}/onvif/device_service"
            body = {
                "device_id": "cam-new",
                "name": "East gate",
                "xaddr": xaddr,
                "username": camera.username,
                "password": camera.password,
                "endpoint": candidate["endpoint"],
            }
            wrong = await client.post(
                "/api/onvif/discovery/onboard", json={**body, "password": "wrong-one"}
            )
            assert wrong.status_code == 502 and wrong.json()["failure"] == "auth"
            assert (await client.get("/api/devices/cam-new")).status_code == 404
            created = await client.post("/api/onvif/discovery/onboard", json=body)
            assert created.status_code == 201, created.text
            device = (await client.get("/api/devices/cam-new")).json()
            assert device["model"] == "VirtualCam-1" and device["has_credentials"] is True
            assert device["onvif_url"] == xaddr and camera.password not in str(device)
            again = (await client.get("/api/onvif/discovery?interface=127.0.0.1")).json()
            assert again["candidates"] == []
            assert again["registered"][0]["device_id"] == "cam-new"
    finally:
        transport.close()


async def test_vendor_topics_and_a_site_mapping_open_the_right_alarms(
    storage_url: str | None, tmp_path: Path
) -> None:
    camera = EventCamera(lifetime=timedelta(seconds=60))
    fence = {
        "name": "acme_fence",
        "topic": "RuleEngine/Fence/*",
        "data_item": ["Triggered"],
        "true_values": ["yes"],
        "false_values": ["no"],
        "kind": "onvif.intrusion",
    }
    async with (
        fake_camera(camera) as server,
        running_hub(tmp_path, storage_url, **FAST_CHANNELS, topic_mappings=[fence]) as (
            hub,
            client,
        ),
    ):
        await register(client, "cam-hik", server.host, server.port, "operator", "s3cret-pw")

        async def subscribed() -> bool:
            health = hub.onvif.channel_health("cam-hik")
            return health is not None and health.pulls > 0

        await wait_until(subscribed, within=5)
        now = datetime.now(UTC)
        camera.script = [
            vendor_payload("hikvision_alarm_in", now),
            vendor_payload("acme_fence", now),
            vendor_payload("reolink_people", now),
        ]

        # Security alarms are for operators: read them as one.
        operator_app = hub.app()
        act_as(operator_app, role="operator")
        operator = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=operator_app), base_url="http://hub"
        )

        async def alarm_types() -> set[str]:
            page = (await operator.get("/api/alarms", params={"device_id": "cam-hik"})).json()
            return {item["type"] for item in page["items"]}

        async def opened() -> bool:
            return {"alarm_input", "intrusion"} <= await alarm_types()

        await wait_until(opened, within=10)
        page = (await operator.get("/api/alarms", params={"device_id": "cam-hik"})).json()
        by_type = {item["type"]: item for item in page["items"]}
        assert by_type["alarm_input"]["priority"] == 2
        assert by_type["alarm_input"]["category"] == "security"

        async def person_stored() -> bool:
            kinds = {e.kind for e in await hub.store.events(device_id="cam-hik")}
            return "onvif.person" in kinds

        await wait_until(person_stored, within=5)
        assert await alarm_types() == {"alarm_input", "intrusion"}  # a person alone: no alarm
        health = hub.onvif.channel_health("cam-hik")
        assert health is not None and health.unknown_topics == {}
        await operator.aclose()


async def test_refused_onvif_logins_stop_after_three_until_the_login_is_changed(
    camera: IpycamInfo, storage_url: str | None, tmp_path: Path
) -> None:
    """One login budget per camera: the fourth probe with a refused login does not reach
    the camera (many lock the client out after 5-7), the device's health says why, and a
    corrected stored login is tried at once."""
    async with running_hub(tmp_path, storage_url) as (hub, client):
        await register(
            client, "cam-lock", camera.host, camera.onvif_port, camera.username, "wrong-pw-456"
        )
        for _ in range(3):
            response = await client.post("/api/devices/cam-lock/probe")
            assert response.status_code == 502 and response.json()["failure"] == "auth"
        blocked = await client.post("/api/devices/cam-lock/probe")
        assert blocked.status_code == 409
        assert "refused its stored login 3 times" in blocked.json()["detail"]
        assert b'gridwatch_onvif_probes_total{outcome="auth"} 3.0' in hub.metrics.render()
        login = (await client.get("/api/devices/cam-lock/health")).json()["login"]
        assert (login["state"], login["refusals"], login["last_source"]) == (
            "auth_failed",
            3,
            "onvif",
        )

        device = (await client.get("/api/devices/cam-lock")).json()
        fields = {k: device[k] for k in ("id", "name", "kind", "onvif_url")}
        fixed = await client.put(
            "/api/devices/cam-lock",
            json={
                **fields,
                "credentials": {"username": camera.username, "password": camera.password},
            },
        )
        assert fixed.status_code == 200, fixed.text
        response = await client.post("/api/devices/cam-lock/probe")
        assert response.status_code == 200, response.text
        login = (await client.get("/api/devices/cam-lock/health")).json()["login"]
        assert login["state"] == "ok"
