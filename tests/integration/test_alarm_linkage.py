"""Linkage: a panic alarm fetches snapshots from its linked cameras (HTTP snapshot URL, open,
Basic or Digest with the stored login; one RTSP frame when there is no snapshot URL), keeps
them as alarm media served only in scope; alarm and outbox metrics at /metrics."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from aiohttp import web
from pydantic import SecretStr

from camera_registry.models import Credentials
from hub.config import load_settings
from hub.runtime import Hub
from hub.storage.base import Json
from tests.helpers import act_as, make_event
from tests.integration.alarm_support import OTHER_TOWN, TOWN, add_device
from tests.peers import free_port
from tests.peers.rtsp import rtsp_peer

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
USER, PASSWORD = "admin", "Cam-Pass-42"
REALM = "IP Camera"


def jpeg(seed: int) -> bytes:
    """A small real JPEG, different per seed."""
    picture = np.full((48, 64, 3), seed * 40 % 256, dtype=np.uint8)
    ok, buffer = cv2.imencode(".jpg", picture)
    assert ok
    return bytes(buffer.tobytes())


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 2617 Digest is MD5


class Camera:
    """Snapshot endpoints the way IP cameras serve them: open, Basic and Digest."""

    def __init__(self) -> None:
        self.pictures = {"open": jpeg(1), "basic": jpeg(2), "digest": jpeg(3)}
        self.nonce = secrets.token_hex(8)
        self.requests: list[tuple[str, str | None]] = []

    def _basic_ok(self, header: str) -> bool:
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return header == f"Basic {expected}"

    def _digest_ok(self, header: str, method: str) -> bool:
        # Verified from RFC 2617 here, independently of httpx's client side.
        if not header.startswith("Digest "):
            return False
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header[len("Digest ") :]))
        if fields.get("username") != USER or fields.get("nonce") != self.nonce:
            return False
        ha1 = _md5(f"{USER}:{REALM}:{PASSWORD}")
        ha2 = _md5(f"{method}:{fields.get('uri', '')}")
        expected = _md5(
            f"{ha1}:{self.nonce}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:"
            f"{fields.get('qop', '')}:{ha2}"
        )
        return fields.get("response") == expected

    async def handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        header = request.headers.get("Authorization")
        self.requests.append((kind, header.split(" ")[0] if header else None))
        if kind == "basic" and not self._basic_ok(header or ""):
            return web.Response(status=401, headers={"WWW-Authenticate": f'Basic realm="{REALM}"'})
        if kind == "digest" and not self._digest_ok(header or "", request.method):
            challenge = f'Digest realm="{REALM}", qop="auth", nonce="{self.nonce}", algorithm=MD5'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return web.Response(body=self.pictures[kind], content_type="image/jpeg")


@asynccontextmanager
async def serving(camera: Camera) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/snap/{kind}.jpg", camera.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.fixture(params=BACKENDS)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url})
    async with Hub(settings) as running:
        yield running


async def camera(
    hub: Hub,
    device_id: str,
    *,
    snapshot_url: str | None = None,
    rtsp_urls: list[str] | None = None,
    login: bool = False,
) -> None:
    """Register a camera, its login sealed by the registry's cipher as the registry stores it."""
    await add_device(hub.store, device_id, snapshot_url=snapshot_url)
    blob = None
    if login:
        credentials = Credentials(username=USER, password=SecretStr(PASSWORD))
        blob = hub.registry.cipher.seal(device_id, credentials)
    async with hub.store.transaction() as tx:
        await tx.execute(
            "UPDATE devices SET credentials = %s, rtsp_urls = %s WHERE id = %s",
            (blob, Json(rtsp_urls or []), device_id),
        )


async def panic_alarm(hub: Hub, client: httpx.AsyncClient, cameras: list[str]) -> dict[str, Any]:
    await add_device(hub.store, "btn-001", kind="panic", linked_cameras=cameras, name="School")
    await hub.writer.submit(make_event(1, device_id="btn-001", kind="panic.press", source="mqtt"))
    async with asyncio.timeout(10):
        while not (items := (await client.get("/api/alarms")).json()["items"]):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await hub.alarms.wait_for_linkage()
    detail = await client.get(f"/api/alarms/{items[0]['id']}")
    assert detail.status_code == 200
    return dict(detail.json())


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        yield c


async def test_snapshots_of_linked_cameras_become_media_only_visible_in_scope(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    cam = Camera()
    async with serving(cam) as port:
        base = f"http://127.0.0.1:{port}/snap"
        await camera(hub, "cam-open", snapshot_url=f"{base}/open.jpg")
        await camera(hub, "cam-basic", snapshot_url=f"{base}/basic.jpg", login=True)
        await camera(hub, "cam-digest", snapshot_url=f"{base}/digest.jpg", login=True)
        app = client._transport.app  # type: ignore[attr-defined]
        act_as(app, role="operator", scope=(TOWN,), subject="user:op1")
        detail = await panic_alarm(hub, client, ["cam-open", "cam-basic", "cam-digest"])

    media = {m["device_id"]: m for m in detail["media"]}
    assert set(media) == {"cam-open", "cam-basic", "cam-digest"}
    alarm_id = detail["alarm"]["id"]
    for device, kind in (("cam-open", "open"), ("cam-basic", "basic"), ("cam-digest", "digest")):
        item = media[device]
        assert item["content_type"] == "image/jpeg" and item["size"] == len(cam.pictures[kind])
        got = await client.get(f"/api/alarms/{alarm_id}/media/{item['id']}")
        assert got.status_code == 200 and got.content == cam.pictures[kind]
        assert got.headers["cache-control"] == "private, no-store"
    # Credentials went only where the camera asked for them, in the scheme it asked for.
    assert ("open", None) in cam.requests and ("open", "Basic") not in cam.requests
    assert ("basic", "Basic") in cam.requests and ("digest", "Digest") in cam.requests
    assert ("digest", "Basic") not in cam.requests

    # Another town's operator cannot see the alarm nor fetch its snapshot by id.
    act_as(app, role="operator", scope=(OTHER_TOWN,), subject="user:op2")
    some = media["cam-basic"]["id"]
    assert (await client.get(f"/api/alarms/{alarm_id}")).status_code == 404
    refused = await client.get(f"/api/alarms/{alarm_id}/media/{some}")
    assert refused.status_code == 404 and refused.content != cam.pictures["basic"]

    # Metrics: the P1 opening is counted.
    act_as(app, role="admin", subject="user:admin")
    metrics = (await client.get("/metrics")).text
    assert 'gridwatch_alarms_opened_total{drill="false",priority="1"} 1.0' in metrics


@pytest.mark.rtsp
async def test_a_camera_without_snapshot_url_gives_one_rtsp_frame(
    hub: Hub, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    with rtsp_peer(tmp_path) as peer:
        await camera(hub, "cam-rtsp", rtsp_urls=[peer.url("ball")])
        await camera(hub, "cam-dead", rtsp_urls=[f"rtsp://127.0.0.1:{free_port()}/none"])
        act_as(client._transport.app, role="operator", scope=(TOWN,))  # type: ignore[attr-defined]
        detail = await panic_alarm(hub, client, ["cam-rtsp", "cam-dead"])
    (item,) = detail["media"]  # the unreachable camera yields none, and no error
    assert item["device_id"] == "cam-rtsp" and item["source"] == "rtsp-frame"
    got = await client.get(f"/api/alarms/{detail['alarm']['id']}/media/{item['id']}")
    assert got.headers["content-type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape[:2] == (360, 640)


async def test_a_stopping_hub_does_not_wait_for_snapshots_of_cameras_that_never_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cameras that take connections and never answer (60 s snapshot timeout): the alarm
    is stored, and stopping the hub cancels the hanging grabs instead of waiting them out."""
    held: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing, keep the connection open

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = load_settings(
        None, data_dir=tmp_path, alarms={"linkage": {"snapshot_timeout_s": 60}}
    )
    try:
        hub = Hub(settings)
        await hub.start()
        stopped = False
        try:
            cameras = [f"cam-hang-{n}" for n in range(4)]
            for name in cameras:
                await camera(hub, name, snapshot_url=f"http://127.0.0.1:{port}/snap.jpg")
            app = hub.app()
            act_as(app, role="operator", scope=(TOWN,))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                await add_device(
                    hub.store, "btn-001", kind="panic", linked_cameras=cameras, name="School"
                )
                await hub.writer.submit(
                    make_event(1, device_id="btn-001", kind="panic.press", source="mqtt")
                )
                async with asyncio.timeout(10):
                    while not (await client.get("/api/alarms")).json()["items"]:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
            async with asyncio.timeout(10):
                while not held:  # noqa: ASYNC110 - a grab is hanging on the camera
                    await asyncio.sleep(0.02)
            loop = asyncio.get_running_loop()
            began = loop.time()
            await hub.stop()
            stopped = True
            took = loop.time() - began
        finally:
            if not stopped:
                await hub.stop()
        # Stopping gave the grabs their grace (5 s), not the 60 s a camera may take, and
        # the alarm engine stopped by itself rather than being abandoned by the hub.
        assert took < 12, f"stopping waited {took:.1f} s for hanging snapshots"
        assert "did not stop" not in caplog.text
        assert "snapshot work of 1 alarm(s) cancelled" in caplog.text
        again = Hub(settings)
        await again.start()
        try:
            app = again.app()
            act_as(app, role="operator", scope=(TOWN,))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                (alarm,) = (await client.get("/api/alarms")).json()["items"]
                detail = (await client.get(f"/api/alarms/{alarm['id']}")).json()
            assert detail["alarm"]["device_id"] == "btn-001" and detail["media"] == []
        finally:
            await again.stop()
    finally:
        for writer in held:
            writer.close()
        server.close()
