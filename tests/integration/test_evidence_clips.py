"""Evidence clips: a press over MQTT (Mosquitto) cuts an MP4 of every linked camera
from its pre-alarm buffer of the GStreamer RTSP server's stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from adapters.sim import PanicButtonSim
from adapters.sinks.cap import CAP_NS, validate_alert
from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import Json, SqlStore
from tests.helpers import act_as
from tests.integration.alarm_support import SECRET
from tests.integration.hub_mqtt_support import (
    OTHER_TOWN_PATH,
    SCHOOL_PATH,
    mqtt_hub_settings,
    register_device,
    wait_until,
)
from tests.integration.mqtt_support import unique_prefix
from tests.integration.outbox_receiver import KeyedReceiver, serve_receiver
from tests.peers import free_port
from tests.peers.rtsp import RtspPeer, rtsp_peer

pytestmark = pytest.mark.mqtt


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Small pictures: the server's encoders must keep up with real time on a busy machine,
    # or the stream's own timestamps fall behind the clock the clips are cut by.
    with rtsp_peer(tmp_path_factory.mktemp("rtsp"), width=320, height=180) as peer:
        yield peer


async def _school(
    store: SqlStore, peer: RtspPeer, button: str, mqtt_id: str, cameras: dict[str, str]
) -> None:
    """A panic button linked to `cameras` (id -> mount of the RTSP peer)."""
    for camera, mount in cameras.items():
        await register_device(store, camera, "camera")
        async with store.transaction() as tx:
            await tx.execute(
                "UPDATE devices SET rtsp_urls = %s WHERE id = %s",
                (Json([peer.url(mount)]), camera),
            )
    await register_device(store, button, "alarm_point", mqtt_device_id=mqtt_id)
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE devices SET linked_cameras = %s, address = %s, latitude = %s,"
            " longitude = %s WHERE id = %s",
            (Json(list(cameras)), "九原区建华南路1号 第三小学", 40.60, 109.84, button),
        )


@asynccontextmanager
async def _hub(
    tmp_path: Path,
    broker: tuple[str, int],
    client_id: str,
    evidence: dict[str, Any],
    alarms: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Hub, str]]:
    prefix = unique_prefix()
    settings = load_settings(
        None,
        data_dir=tmp_path,
        mqtt=mqtt_hub_settings(*broker, prefix, client_id),
        evidence={"refresh_s": 1.0, "public_url": "https://hub.example.org", **evidence},
        alarms=alarms or {},
    )
    async with Hub(settings) as hub:
        async with hub.store.transaction() as tx:
            for code, name, level, parent, path in _TREE:
                await tx.execute(
                    "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (code, name, level, parent, path),
                )
        yield hub, prefix


_TREE = (
    ("150102", "九原区", "district", None, "/150102/"),
    ("150102001", "沙河街道", "town", "150102", SCHOOL_PATH),
    ("150102009", "哈林格尔镇", "town", "150102", OTHER_TOWN_PATH),
)


def _client(app: Any, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hub", headers=headers
    )


def _buffered(hub: Hub, camera: str, seconds: float) -> bool:
    return any(b.camera_id == camera and b.seconds >= seconds for b in hub.evidence.buffered())


def _decoded(path: Path) -> tuple[int, float, float, list[str]]:
    """(video frames decoded, first and last frame time in s, track kinds).

    The test server drops data for a TCP client that falls behind on a loaded machine,
    so a picture may be damaged (players skip it): at most 2 % of packets may be."""
    times: list[float] = []
    refused = packets = 0
    with av.open(str(path)) as container:
        kinds = [str(s.type) for s in container.streams]
        for packet in container.demux(container.streams.video[0]):
            packets += 1
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                refused += 1
                continue
            times += [float(f.time) for f in frames if f.time is not None]
    assert refused <= 0.02 * packets, f"{refused} of {packets} packets do not decode"
    return len(times), min(times), max(times), kinds


def _audio(path: Path) -> tuple[float, float]:
    """(seconds of sound decoded, its RMS level) of a clip's audio track."""
    samples = 0
    power = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            values = frame.to_ndarray()
            samples += values.shape[-1]
            power += float((values.astype("float64") ** 2).sum()) / values.shape[0]
    return samples / rate, (power / samples) ** 0.5 if samples else 0.0


async def _alarm_of(hub: Hub, button: str) -> uuid.UUID:
    async with hub.store.reading() as tx:
        row = await tx.fetchone("SELECT id FROM alarms WHERE device_id = %s", (button,))
    assert row is not None
    return uuid.UUID(str(row[0]))


async def test_press_cuts_30_s_before_and_the_post_roll_of_each_linked_camera(
    broker: tuple[str, int], client_id: str, tmp_path: Path, rtsp: RtspPeer
) -> None:
    """The real settings: 30 s before the press (DB15/T 3968), 30 s after."""
    cameras = {"cam-gate": "sound", "cam-yard": "ball"}
    port, webhook_port = free_port(), free_port()
    police = KeyedReceiver(delay_s=0.0, signed=False)
    governance = KeyedReceiver(delay_s=0.0, signed=True)
    sinks = {
        "sinks": [
            {"name": "police", "type": "cap", "url": police.url(port), "cap_sender": "gw@150102"},
            {
                "name": "gov",
                "type": "webhook",
                "url": governance.url(webhook_port),
                "secrets": [SECRET],
            },
        ],
        "delivery": {"poll_interval_s": 0.05, "backoff_base_s": 0.05},
    }
    async with (
        serve_receiver(police, port),
        serve_receiver(governance, webhook_port),
        _hub(tmp_path, broker, client_id, {}, sinks) as (hub, prefix),
    ):
        await _school(hub.store, rtsp, "btn-1", "sos-ev1", cameras)
        hub.evidence.request_refresh()
        for camera in cameras:
            await wait_until(
                partial(_buffered, hub, camera, 31.0), timeout=90, what=f"{camera} 31 s deep"
            )
        await wait_until(lambda: hub.mqtt.directory.lookup("sos-ev1"), what="registry")
        with PanicButtonSim("sos-ev1", host=broker[0], port=broker[1], prefix=prefix) as sim:
            sim.press()
            await wait_until(lambda: hub.evidence._clip_tasks, timeout=20, what="recording")
            alarm_id = await _alarm_of(hub, "btn-1")
            await hub.evidence.wait_for_clips()

        clips = await hub.evidence.clips(alarm_id)
        assert {c.camera_id for c in clips} == set(cameras)
        for clip in clips:
            assert clip.state == "complete", clip.reason
            path = hub.evidence.path_of(clip)
            assert path is not None
            frames, first, last, kinds = _decoded(path)
            assert frames > 0 and first < 0.5
            # Read from the decoded pictures' timestamps: the press lies >= 29 s into the
            # clip (seconds_before is where the console starts playing) and the pictures
            # go on for the whole post-roll after it.
            assert clip.seconds_before is not None and clip.seconds_before >= 29.0
            assert last - clip.seconds_before >= 30.0 - 1e-3
            assert clip.start_at is not None and clip.end_at is not None
            assert clip.start_at < clip.press_at < clip.end_at
            assert clip.duration_s is not None and clip.duration_s >= last
            assert clip.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
            assert clip.size == path.stat().st_size
            assert kinds == (["video", "audio"] if clip.camera_id == "cam-gate" else ["video"])

        # A revision announces the clips: the webhook body has address, coordinates and
        # evidence entries; the CAP alert carries them as valid <resource>s.
        await wait_until(lambda: len(governance.answered) >= 2, timeout=20, what="webhook")
        await wait_until(lambda: len(police.answered) >= 2, timeout=20, what="CAP")
        bodies = [json.loads(b) for b in governance.bodies.values()]
        opened = next(b for b in bodies if b["event"] == "alarm.open")
        assert opened["address"]["jurisdiction_names"] == ["九原区", "沙河街道"]
        assert opened["address"]["device_address"] == "九原区建华南路1号 第三小学"
        assert opened["location"]["latitude"] == 40.60
        assert opened["evidence"] == []
        noted = next(b for b in bodies if b["evidence"])
        assert noted["alarm_id"] == str(alarm_id)
        by_camera = {e["camera_id"]: e for e in noted["evidence"]}
        assert set(by_camera) == set(cameras)
        for clip in clips:
            entry = by_camera[clip.camera_id]
            assert entry["url"] == f"https://hub.example.org/api/evidence/clips/{clip.id}"
            assert entry["type"] == "video/mp4"
            assert (entry["size"], entry["sha256"]) == (clip.size, clip.sha256)
        cap_key = f"{alarm_id}:{noted['revision']}:police"
        alert = ET.fromstring(police.bodies[cap_key])  # noqa: S314 - the hub's own output
        assert validate_alert(alert) == []
        infos = alert.findall(f"{{{CAP_NS}}}info")
        assert infos
        # Every language's <info> lists both clips.
        for info in infos:
            assert len(info.findall(f"{{{CAP_NS}}}resource")) == 2
        for resource in alert.findall(f"{{{CAP_NS}}}info/{{{CAP_NS}}}resource"):
            uri = resource.findtext(f"{{{CAP_NS}}}uri")
            clip = next(c for c in clips if uri and uri.endswith(str(c.id)))
            path = hub.evidence.path_of(clip)
            assert path is not None
            assert resource.findtext(f"{{{CAP_NS}}}mimeType") == "video/mp4"
            assert resource.findtext(f"{{{CAP_NS}}}size") == str(clip.size)
            digest = hashlib.sha1(path.read_bytes()).hexdigest()  # noqa: S324 - CAP's digest
            assert resource.findtext(f"{{{CAP_NS}}}digest") == digest


async def test_ten_alarms_at_once_each_get_their_clips_served_in_scope_only(
    broker: tuple[str, int], client_id: str, tmp_path: Path, rtsp: RtspPeer
) -> None:
    """Short pre- and post-roll so ten schools' presses finish quickly."""
    async with _hub(tmp_path, broker, client_id, {"prebuffer_s": 3, "postroll_s": 2}) as (
        hub,
        prefix,
    ):
        schools = range(10)
        for n in schools:
            await _school(
                hub.store,
                rtsp,
                f"btn-{n}",
                f"sos-m{n}",
                # School 0's second camera sends G.711 audio, which MP4 cannot carry portably.
                {f"cam-{n}a": "ball", f"cam-{n}b": "g711" if n == 0 else "sound"},
            )
        hub.evidence.request_refresh()
        for n in schools:
            for suffix in "ab":
                await wait_until(
                    partial(_buffered, hub, f"cam-{n}{suffix}", 3.5), timeout=60, what="buffers"
                )
        for n in schools:
            await wait_until(partial(hub.mqtt.directory.lookup, f"sos-m{n}"), what="registry")
        sims = [
            PanicButtonSim(f"sos-m{n}", host=broker[0], port=broker[1], prefix=prefix)
            for n in schools
        ]
        for sim in sims:
            sim.__enter__()
        try:
            for sim in sims:
                sim.press()

            async def all_opened() -> bool:
                async with hub.store.reading() as tx:
                    row = await tx.fetchone("SELECT COUNT(*) FROM alarms")
                return row is not None and int(row[0]) == 10

            await wait_until(all_opened, timeout=20, what="ten alarms")
            await asyncio.sleep(0.5)
            await hub.evidence.wait_for_clips()
        finally:
            for sim in sims:
                sim.__exit__(None, None, None)

        alarm_ids = [await _alarm_of(hub, f"btn-{n}") for n in schools]
        for alarm_id in alarm_ids:
            clips = await hub.evidence.clips(alarm_id)
            assert len(clips) == 2
            assert all(c.state == "complete" for c in clips), [c.reason for c in clips]

        first = (await hub.evidence.clips(alarm_ids[0]))[0]
        town_a = hub.app()
        act_as(town_a, role="operator", scope=(SCHOOL_PATH,), subject="town-a")
        town_b = hub.app()
        act_as(town_b, role="operator", scope=(OTHER_TOWN_PATH,), subject="town-b")
        async with _client(town_a) as a, _client(town_b) as b:
            listed = (await a.get(f"/api/evidence/alarms/{alarm_ids[0]}/clips")).json()
            assert {c["camera_id"] for c in listed} == {"cam-0a", "cam-0b"}
            # The G.711 camera's clip has its pictures and its sound, transcoded to AAC.
            g711 = next(c for c in listed if c["camera_id"] == "cam-0b")
            assert g711["tracks"] == ["video:h264", "audio:aac"]
            other = (await a.get(f"/api/evidence/alarms/{alarm_ids[1]}/clips")).json()
            assert {c["camera_id"]: c["tracks"] for c in other}["cam-1b"] == [
                "video:h264",
                "audio:aac",
            ]
            played = await a.get(listed[0]["url"])
            assert played.status_code == 200
            assert played.headers["content-type"] == "video/mp4"
            assert hashlib.sha256(played.content).hexdigest() == listed[0]["sha256"]
            part = await a.get(listed[0]["url"], headers={"range": "bytes=100-199"})
            assert part.status_code == 206 and len(part.content) == 100
            assert (await b.get(f"/api/evidence/clips/{first.id}")).status_code == 404
            assert (await b.get(f"/api/evidence/alarms/{alarm_ids[0]}/clips")).status_code == 404
            sound = await a.get(g711["url"])
            assert sound.status_code == 200
        clip_path = tmp_path / "g711.mp4"
        clip_path.write_bytes(sound.content)
        seconds, loudness = _audio(clip_path)
        # The test server's 440 Hz tone at 0.8 of full scale is there for the whole clip.
        assert seconds >= g711["duration_s"] - 1.0 and loudness > 0.3

        # An integration's API key in the school's scope fetches the clip; one outside does not.
        inside = await hub.auth.create_api_key(
            "dispatch-a", "dispatcher", [SCHOOL_PATH], actor="system:test"
        )
        outside = await hub.auth.create_api_key(
            "dispatch-b", "dispatcher", [OTHER_TOWN_PATH], actor="system:test"
        )
        app = hub.app()
        url = f"/api/evidence/clips/{first.id}"
        async with _client(app, authorization=f"Bearer {inside.token}") as key_a:
            assert (await key_a.get(url)).status_code == 200
        async with _client(app, authorization=f"Bearer {outside.token}") as key_b:
            assert (await key_b.get(url)).status_code == 404

        async with hub.store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT actor, action, target FROM audit_log WHERE action LIKE 'evidence.%%'"
            )
        assert ("user:town-a", "evidence.play", str(alarm_ids[0])) in [tuple(r) for r in rows]


async def test_a_buffer_spilled_to_disk_gives_a_whole_clip_and_stays_in_its_bound(
    broker: tuple[str, int], client_id: str, tmp_path: Path, rtsp: RtspPeer
) -> None:
    """`spill_directory`: the closed groups of pictures wait in files, not in memory."""
    evidence = {"prebuffer_s": 3, "postroll_s": 2, "spill_directory": "spill", "spill_max_mib": 4}
    async with _hub(tmp_path, broker, client_id, evidence) as (hub, prefix):
        await _school(hub.store, rtsp, "btn-s", "sos-spill", {"cam-s1": "sound", "cam-s2": "ball"})
        hub.evidence.request_refresh()
        for camera in ("cam-s1", "cam-s2"):
            await wait_until(partial(_buffered, hub, camera, 6.0), timeout=60, what="buffers")
        spill = tmp_path / "spill"
        for state in hub.evidence.buffered():
            # Memory holds the group being received (a second at most); the rest is on disk.
            assert state.spilled_bytes > state.bytes > 0
            files = list((spill / state.camera_id).iterdir())
            assert sum(f.stat().st_size for f in files) == state.spilled_bytes <= 4 << 20
        await wait_until(partial(hub.mqtt.directory.lookup, "sos-spill"), what="registry")
        with PanicButtonSim("sos-spill", host=broker[0], port=broker[1], prefix=prefix) as sim:
            sim.press()
            await wait_until(lambda: hub.evidence._clip_tasks, timeout=20, what="recording")
            await hub.evidence.wait_for_clips()
        clips = await hub.evidence.clips(await _alarm_of(hub, "btn-s"))
        assert {c.camera_id for c in clips} == {"cam-s1", "cam-s2"}
        for clip in clips:
            assert clip.state == "complete", clip.reason
            path = hub.evidence.path_of(clip)
            assert path is not None
            frames, first, last, _ = _decoded(path)
            assert frames > 0 and first < 0.5
            assert clip.seconds_before is not None and clip.seconds_before >= 2.9
            assert last - clip.seconds_before >= 2.0 - 1e-3
    # A stopped hub leaves no spilled pictures behind.
    assert not any(p.is_file() for p in (tmp_path / "spill").rglob("*"))
