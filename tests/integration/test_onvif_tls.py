"""ONVIF cameras at https:// addresses: probe, event channel and snapshots over TLS.

The scripted camera serves only TLS, with a certificate from a CA made by the
test; the hub must verify it by default, trust the site's CA bundle when given
one, refuse a certificate nobody vouches for, and never fall back to plain HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from adapters.onvif.client import (
    CameraHttp,
    EventSubscription,
    ProbeError,
    probe,
    tls_context,
)
from adapters.onvif.models import ProbeFailure
from tests.helpers import act_as
from tests.integration.onvif_fake_camera import (
    Handler,
    device_answers,
    fake_camera,
    honest_camera_handler,
    operation,
    respond,
    server_tls,
)
from tests.integration.test_onvif_event_channel import (
    FAST,
    Collector,
    EventCamera,
    fixture,
    wait_for,
)
from tests.integration.test_onvif_hub import FAST_CHANNELS, running_hub, wait_until
from tests.tls_support import ServerFiles, server_files

pytestmark = pytest.mark.onvif

MEDIA = "http://www.onvif.org/ver10/media/wsdl"
JPEG = b"\xff\xd8\xff\xe0" + b"tls-snapshot" * 20 + b"\xff\xd9"


@pytest.fixture
def certificates(tmp_path: Path) -> ServerFiles:
    return server_files(tmp_path / "tls")


@pytest.fixture
def rogue(tmp_path: Path) -> Iterator[ServerFiles]:
    yield server_files(tmp_path / "rogue", ca_name="Someone else's CA")


def honest() -> Handler:
    # The camera advertises plain-HTTP LAN addresses, as cameras do behind TLS too.
    return honest_camera_handler(
        "http://192.168.1.64/onvif/Media",
        "rtsp://192.168.1.64:554/Streaming/Channels/101",
        "https://192.168.1.64/onvif-http/snapshot",
    )


async def test_a_probe_speaks_tls_and_keeps_the_camera_on_https(
    certificates: ServerFiles,
) -> None:
    async with (
        fake_camera(honest(), tls=server_tls(certificates.cert_file, certificates.key_file)) as cam,
        CameraHttp(tls=tls_context(ca_file=str(certificates.ca_file))) as http,
    ):
        result = await probe(cam.host, cam.port, "admin", "pw", http=http, scheme="https")
    assert result.device.model == "Gate-1"
    # The advertised http:// service address is pinned to the camera, over https.
    assert result.services[MEDIA] == f"https://127.0.0.1:{cam.port}/onvif/Media"
    assert result.profiles[0].snapshot_uri == "https://127.0.0.1/onvif-http/snapshot"
    assert len(cam.requests) >= 5  # every call went through the TLS listener


async def test_a_certificate_nobody_vouches_for_is_refused(
    certificates: ServerFiles, rogue: ServerFiles
) -> None:
    tls = server_tls(rogue.cert_file, rogue.key_file)
    async with fake_camera(honest(), tls=tls) as cam:
        async with CameraHttp(tls=tls_context(ca_file=str(certificates.ca_file))) as http:
            with pytest.raises(ProbeError) as refused:
                await probe(cam.host, cam.port, "admin", "pw", http=http, scheme="https")
        assert refused.value.failure is ProbeFailure.REFUSED
        assert "not trusted" in str(refused.value)
        assert cam.requests == []  # nothing was sent, the login least of all
        # A site that turned verification off (self-signed cameras) gets through.
        async with CameraHttp(tls=tls_context(verify=False)) as http:
            result = await probe(cam.host, cam.port, "admin", "pw", http=http, scheme="https")
        assert result.device.model == "Gate-1"


async def test_an_https_camera_is_never_spoken_to_in_clear(certificates: ServerFiles) -> None:
    async with CameraHttp() as http:
        with pytest.raises(Exception, match="refusing to send"):
            await http.post(
                "http://127.0.0.1:8443/onvif/device_service",
                b"<x/>",
                {},
                pinned=("127.0.0.1", 8443),
                scheme="https",
            )


async def test_the_event_channel_runs_over_tls(certificates: ServerFiles) -> None:
    camera, collector = EventCamera(), Collector()
    camera.script = [fixture("motion_on.xml")]
    tls = server_tls(certificates.cert_file, certificates.key_file)
    async with (
        fake_camera(camera, tls=tls) as server,
        CameraHttp(tls=tls_context(ca_file=str(certificates.ca_file))) as http,
    ):
        channel = EventSubscription(
            "cam-tls",
            server.host,
            server.port,
            camera.username,
            camera.password,
            collector,
            settings=FAST,
            http=http,
            scheme="https",
        )
        async with channel:
            await wait_for(lambda: "onvif.motion" in collector.kinds())
            health = channel.health()
    assert health.state == "subscribed" and health.pulls >= 1
    assert camera.rejected_signatures == 0
    # The camera advertised http://192.168.1.64/...: pinned to it over TLS.
    assert any(path == "/onvif/sub/1" for path, _ in server.requests)


def tls_camera(camera: EventCamera, port: list[int]) -> Handler:
    """One https camera: probe answers, an event service, and a snapshot URL on its own
    port (known once it listens: `port[0]`)."""
    probe_calls = {"GetDeviceInformation", "GetServices", "GetProfiles", "GetStreamUri"}
    probe_calls.add("GetSnapshotUri")

    async def handle(path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        name = operation(body)
        if path == "/onvif-http/snapshot":
            await respond(writer, JPEG, content_type="image/jpeg")
        elif name in probe_calls:
            answers = device_answers(
                "http://192.168.1.64/onvif/Media",
                "rtsp://192.168.1.64/live",
                f"https://192.168.1.64:{port[0]}/onvif-http/snapshot",
            )
            await respond(writer, answers[name])
        else:
            await camera(path, body, writer)

    return handle


async def test_an_https_camera_through_the_hub_probe_events_and_snapshot(
    certificates: ServerFiles, tmp_path: Path
) -> None:
    camera = EventCamera(lifetime=timedelta(seconds=60))
    port: list[int] = []
    async with (
        fake_camera(
            tls_camera(camera, port), tls=server_tls(certificates.cert_file, certificates.key_file)
        ) as cam,
        running_hub(tmp_path, None, **FAST_CHANNELS, tls_ca_file=str(certificates.ca_file)) as (
            hub,
            client,
        ),
    ):
        port.append(cam.port)
        response = await client.post(
            "/api/devices",
            json={
                "id": "cam-tls",
                "name": "gate camera over TLS",
                "kind": "camera",
                "onvif_url": f"https://127.0.0.1:{cam.port}/onvif/device_service",
                "credentials": {"username": camera.username, "password": camera.password},
            },
        )
        assert response.status_code == 201, response.text
        probed = await client.post("/api/devices/cam-tls/probe")
        assert probed.status_code == 200, probed.text
        snapshot = f"https://127.0.0.1:{cam.port}/onvif-http/snapshot"
        assert probed.json()["snapshot_uri"] == snapshot

        async def subscribed() -> bool:
            health = hub.onvif.channel_health("cam-tls")
            return health is not None and health.pulls > 0

        await wait_until(subscribed, within=10)
        camera.script = [fixture("digital_input.xml")]

        operator_app = hub.app()
        act_as(operator_app, role="operator")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=operator_app), base_url="http://hub"
        ) as operator:

            async def alarm_with_snapshot() -> bool:
                page = await operator.get("/api/alarms", params={"device_id": "cam-tls"})
                items = page.json()["items"]
                if not items:
                    return False
                detail = await operator.get(f"/api/alarms/{items[0]['id']}")
                return bool(detail.json()["media"])

            await wait_until(alarm_with_snapshot, within=15)
            page = await operator.get("/api/alarms", params={"device_id": "cam-tls"})
            (alarm,) = page.json()["items"]
            assert alarm["type"] == "alarm_input"
            detail = (await operator.get(f"/api/alarms/{alarm['id']}")).json()
            (media,) = detail["media"]
            picture = await operator.get(f"/api/alarms/{alarm['id']}/media/{media['id']}")
            assert picture.content == JPEG
        # Every request of the probe, the channel and the snapshot reached the TLS listener.
        paths = {path for path, _ in cam.requests}
        assert {"/onvif/device_service", "/onvif/Media", "/onvif-http/snapshot"} <= paths
