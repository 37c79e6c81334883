"""GB/T 28181 channels without RTSP URLs in the alarm snapshot, the patrol and the
pre-alarm buffer: each takes its pictures or packets through the channel's one shared
stream (one INVITE, BYE when the last user is done)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from adapters.gb28181.ps_stream import gst_available, start_gst_stream
from adapters.gb28181.simulator import SimChannel
from hub.config import load_settings
from hub.evidence.storage import ClipRow
from hub.runtime import Hub
from hub.storage import Json
from tests.helpers import act_as, make_event
from tests.integration.alarm_support import add_device
from tests.integration.test_gb28181_hub import (
    DOMAIN,
    NVR,
    PLATFORM,
    eventually,
    running_hub,
    simulator,
)
from tests.peers import peer_missing

CHANNEL = "15020700001320000001"
TOWN = "/150207/150207001/"


@pytest.fixture(autouse=True)
def _gstreamer() -> None:
    if not gst_available():
        peer_missing("gstreamer", "gst-launch-1.0 is not installed")


async def _true(value: bool) -> bool:
    return value


async def test_a_panic_alarm_gets_a_snapshot_of_its_linked_gb28181_channel(
    tmp_path: Path,
) -> None:
    async with (
        running_hub(tmp_path, None, auto_register=True, media_ports=[31400, 31500]) as (
            hub,
            client,
        ),
        simulator(
            hub,
            NVR,
            "platform-default",
            channels=[SimChannel(CHANNEL, "校门口", civil_code="150207001")],
            media=start_gst_stream,
        ) as device,
    ):
        assert await device.register() == 200
        await eventually(lambda: hub.registry.get(CHANNEL, scope=None), "channel registered")
        await add_device(hub.store, "btn-gb", kind="panic", path=TOWN, linked_cameras=[CHANNEL])
        await hub.writer.submit(
            make_event(1, device_id="btn-gb", kind="panic.press", source="mqtt")
        )
        act_as(client._transport.app, role="operator", scope=(TOWN,))  # type: ignore[attr-defined]
        async with asyncio.timeout(10):
            while not (items := (await client.get("/api/alarms")).json()["items"]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await hub.alarms.wait_for_linkage()
        detail = (await client.get(f"/api/alarms/{items[0]['id']}")).json()
        (item,) = detail["media"]
        assert item["device_id"] == CHANNEL and item["source"] == "stream-frame"
        got = await client.get(f"/api/alarms/{detail['alarm']['id']}/media/{item['id']}")
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        picture = cv2.imdecode(np.frombuffer(got.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[:2] == (240, 320)
        # The snapshot was the channel's only user: one INVITE, and BYE once it had its picture.
        assert device.stats.invites == 1
        await eventually(lambda: _true(device.stats.byes == 1), "BYE after the snapshot")
        assert hub.gb28181.media.session(CHANNEL) is None


async def test_the_patrol_diagnoses_a_gb28181_channel_through_its_stream(tmp_path: Path) -> None:
    async with (
        running_hub(tmp_path, None, auto_register=True, media_ports=[31600, 31700]) as (
            hub,
            client,
        ),
        simulator(
            hub,
            NVR,
            "platform-default",
            channels=[SimChannel(CHANNEL, "路口", civil_code="150207001")],
            media=functools.partial(start_gst_stream, pattern="snow"),
        ) as device,
    ):
        assert await device.register() == 200
        await eventually(lambda: hub.registry.get(CHANNEL, scope=None), "channel registered")
        progress = await hub.patrol.run_once()
        assert progress.done == 1 and device.stats.invites == 1
        answer = await client.get(f"/api/devices/{CHANNEL}/health")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        sample = body["last_sample"]
        assert sample["codec"] == "h264" and sample["width"] == 320 and sample["frames"] >= 1
        # A snowy picture is a picture fault, found by the same diagnosis as RTSP cameras.
        assert "snow" in sample["faults"]
        assert body["health"] == "degraded"
        picture = await client.get(sample["evidence_url"])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
        await eventually(lambda: _true(device.stats.byes == 1), "BYE after the probe")

        # A channel whose device is gone is not patrolled (its health comes from SIP).
        await device.register(expires=0)
        assert (await hub.patrol.run_once()).total == 0


async def test_an_evidence_clip_is_cut_from_a_buffered_gb28181_channel(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        data_dir=tmp_path,
        patrol={"enabled": False},
        evidence={"prebuffer_s": 4, "postroll_s": 2, "refresh_s": 1},
        gb28181={
            "enabled": True,
            "sip_port": 0,
            "platform_id": PLATFORM,
            "domain": DOMAIN,
            "password": "platform-default",
            "auto_register": True,
            "media_ports": [31800, 31900],
            "media_transport": "TCP",
        },
    )
    async with (
        Hub(settings) as hub,
        simulator(
            hub,
            NVR,
            "platform-default",
            channels=[SimChannel(CHANNEL, "校门口", civil_code="150207001")],
            media=start_gst_stream,
        ) as device,
    ):
        assert await device.register() == 200
        await eventually(lambda: hub.registry.get(CHANNEL, scope=None), "channel registered")
        await add_device(hub.store, "btn-gb", kind="alarm_point", path=TOWN)
        async with hub.store.transaction() as tx:
            await tx.execute(
                "UPDATE devices SET linked_cameras = %s WHERE id = 'btn-gb'", (Json([CHANNEL]),)
            )
        hub.evidence.request_refresh()
        await eventually(
            lambda: _true(any(b.seconds >= 5 for b in hub.evidence.buffered())), "buffering"
        )
        (state,) = hub.evidence.buffered()
        assert state.camera_id == CHANNEL and state.connected
        press_at = datetime.now(UTC)
        await hub.writer.submit(
            make_event(device_id="btn-gb", kind="panic.press", source="mqtt", at=press_at)
        )
        await eventually(lambda: _alarm_clips(hub), "a clip recorded")
        await hub.evidence.wait_for_clips()
        (clip,) = await _alarm_clips(hub)
        assert clip.state == "complete", clip.reason
        assert clip.camera_id == CHANNEL and clip.seconds_before is not None
        assert clip.seconds_before >= 3.5  # the pre-roll, from the channel's own stream
        path = hub.evidence.path_of(clip)
        assert path is not None and hashlib.sha256(path.read_bytes()).hexdigest() == clip.sha256
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            frames = [f for f in container.decode(stream) if not f.is_corrupt]
        assert (frames[0].width, frames[0].height) == (320, 240)
        assert frames[-1].time - frames[0].time >= clip.seconds_before + 1.5
        # Buffer, snapshot and clip shared the channel's one INVITE.
        assert device.stats.invites == 1


async def _alarm_clips(hub: Hub) -> list[ClipRow]:
    async with hub.store.reading() as tx:
        row = await tx.fetchone("SELECT id FROM alarms WHERE device_id = 'btn-gb'")
    return [] if row is None else await hub.evidence.clips(uuid.UUID(str(row[0])))
