"""Pre-alarm buffering and evidence clips: CPU and memory per camera, press → clip complete.

Starts the GStreamer RTSP test server with one shared 1280x720 25 fps H.264 mount
at about 2 Mbit/s (television snow, so the encoder spends its whole bitrate) and
points N cameras (70 by default: 35 schools × 2) at it. In one run:

1. **bare**: N threads each demuxing the stream with PyAV (av.open + demux, the
   packets dropped) — the floor any pull costs; measured before and after the hub;
2. **hub**: a started hub (SQLite, the machine's Mosquitto) with the schools in
   its registry buffers every linked camera (`EvidenceService`: the same PyAV
   demux plus a copy into the packet ring); CPU of the whole hub process over a
   window once every buffer is full, ring bytes and RSS growth per camera;
3. **alarms**: `--alarms` buttons (10 by default) pressed at once over MQTT;
   press → clip complete for each linked camera (completed_at of the clip row
   minus the wall time the press was published), with the real 30 s pre-roll and
   post-roll; every clip checked for a decodable MP4 starting >= 29 s before the press.

The RTSP server's own CPU and the machine's load are recorded. All cameras pull
the same shared mount: on 2 cores the server cannot encode 70 different 720p
streams, and the hub's work per camera (demux, copy, ring) does not depend on the
pictures being different.

Usage: .venv/bin/python -m benchmarks.prebuffer [--cameras 70] [--alarms 10] [--window 30]
Writes benchmarks/results/prebuffer.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import av

from adapters.sim import PanicButtonSim
from benchmarks.common import write_result
from benchmarks.patrol import _process_cpu, _system_busy_s
from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import Json
from tests.integration.hub_mqtt_support import register_device
from tests.peers.rtsp import start_rtsp_server

_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1000000"}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _BarePulls:
    """N threads demuxing `url` with PyAV, dropping every packet."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self.packets = 0
        self.bytes = 0
        self.failures = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _run(self) -> None:
        # Like the hub's pulls, a refused or dropped session is opened again.
        while not self._stop.is_set():
            try:
                self._pull()
            except av.FFmpegError:
                self.failures += 1
                self._stop.wait(1.0)

    def _pull(self) -> None:
        container = av.open(self.url, options=dict(_OPTIONS), timeout=10)
        try:
            streams = [s for s in container.streams if s.type in ("video", "audio")]
            for packet in container.demux(*streams):
                if self._stop.is_set():
                    return
                with self._lock:
                    self.packets += 1
                    self.bytes += packet.size
        finally:
            container.close()

    def __enter__(self) -> _BarePulls:
        for n in range(self.count):
            thread = threading.Thread(target=self._run, name=f"bare-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
            time.sleep(0.05)  # the test server refuses a burst of 70 simultaneous sessions
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def _window(seconds: float, server_pid: int) -> dict[str, float]:
    """CPU of this process, of the RTSP server and of the machine over `seconds`."""
    cpu0, server0, busy0, wall0 = (
        time.process_time(),
        _process_cpu(server_pid),
        _system_busy_s(),
        time.monotonic(),
    )
    time.sleep(seconds)
    wall = time.monotonic() - wall0
    return {
        "seconds": round(wall, 1),
        "process_cores": round((time.process_time() - cpu0) / wall, 3),
        "rtsp_server_cores": round((_process_cpu(server_pid) - server0) / wall, 3),
        "machine_busy_cores": round((_system_busy_s() - busy0) / wall, 3),
    }


def _bare(url: str, cameras: int, window_s: float, server_pid: int) -> dict[str, Any]:
    with _BarePulls(url, cameras) as pulls:
        time.sleep(5)  # every pull open and streaming
        packets, size = pulls.packets, pulls.bytes
        figures = _window(window_s, server_pid)
        seconds = figures["seconds"]
        figures["packets_per_s"] = round((pulls.packets - packets) / seconds, 1)
        figures["mbit_per_s_per_camera"] = round(
            (pulls.bytes - size) * 8 / 1e6 / seconds / cameras, 3
        )
        figures["sessions_refused"] = pulls.failures
    return figures


async def _seed(hub: Hub, url: str, schools: int) -> list[tuple[str, str]]:
    """`schools` schools, each a button linked to two cameras; returns (button, mqtt id)."""
    buttons = []
    for n in range(schools):
        cameras = [f"cam-{n:02d}-gate", f"cam-{n:02d}-yard"]
        for camera in cameras:
            await register_device(hub.store, camera, "camera")
        button, mqtt_id = f"btn-{n:02d}", f"sos-bench-{n:02d}"
        await register_device(hub.store, button, "alarm_point", mqtt_device_id=mqtt_id)
        async with hub.store.transaction() as tx:
            await tx.executemany(
                "UPDATE devices SET rtsp_urls = %s WHERE id = %s",
                [(Json([url]), camera) for camera in cameras],
            )
            await tx.execute(
                "UPDATE devices SET linked_cameras = %s WHERE id = %s", (Json(cameras), button)
            )
        buttons.append((button, mqtt_id))
    return buttons


def _decoded_span(path: Path) -> tuple[int, float, int]:
    """(pictures decoded, their span in s, packets the decoder refused): a stream the
    test server thinned out under load may hold damaged pictures, which players skip."""
    times: list[float] = []
    refused = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                refused += 1
                continue
            times += [float(f.time) for f in frames if f.time is not None]
    return len(times), (max(times) - min(times)) if times else 0.0, refused


async def _hub_run(
    url: str, cameras: int, alarms: int, window_s: float, server_pid: int, data: Path
) -> dict[str, Any]:
    prefix = f"gw-bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        None,
        data_dir=data,
        mqtt={
            "enabled": True,
            "host": "127.0.0.1",
            "port": 1883,
            "topic_prefix": prefix,
            "client_id": f"gw-bench-{uuid.uuid4().hex[:8]}",
            "device_refresh_s": 0.2,
            # The silent buttons must not go offline (and open alarms) mid-run.
            "heartbeat_missed_intervals": 100,
        },
        evidence={"refresh_s": 2.0},
    )
    figures: dict[str, Any] = {}
    async with Hub(settings) as hub:
        rss_before = _rss_mib()
        buttons = await _seed(hub, url, cameras // 2)
        hub.evidence.request_refresh()
        pre = settings.evidence.prebuffer_s
        deadline = time.monotonic() + pre + 60
        while True:
            states = hub.evidence.buffered()
            full = [s for s in states if s.seconds >= pre]
            if len(states) == cameras and len(full) == cameras:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(full)} of {cameras} buffers reached {pre} s")
            await asyncio.sleep(1)
        figures["buffering"] = await asyncio.to_thread(_window, window_s, server_pid)
        states = hub.evidence.buffered()
        ring = [s.bytes for s in states]
        figures["memory"] = {
            "ring_mib_per_camera_mean": round(statistics.mean(ring) / 2**20, 2),
            "ring_mib_per_camera_max": round(max(ring) / 2**20, 2),
            "ring_seconds_mean": round(statistics.mean(s.seconds for s in states), 1),
            "rss_growth_mib_per_camera": round((_rss_mib() - rss_before) / cameras, 2),
            "overflow_drops": sum(s.overflow_drops for s in states),
            "bitrate_mbit_per_s_mean": round(
                statistics.mean(s.bytes * 8 / 1e6 / s.seconds for s in states if s.seconds), 2
            ),
        }

        # Simultaneous alarms: every press published at once, each linked camera's clip.
        for _, mqtt_id in buttons[:alarms]:
            while not hub.mqtt.directory.lookup(mqtt_id):  # noqa: ASYNC110 - polled state
                await asyncio.sleep(0.1)
        sims = [PanicButtonSim(mqtt_id, prefix=prefix) for _, mqtt_id in buttons[:alarms]]
        for sim in sims:
            sim.__enter__()
        try:
            await asyncio.sleep(1.0)
            pressed = time.time()
            for sim in sims:
                sim.press()
            await asyncio.sleep(2.0)
            await hub.evidence.wait_for_clips()
        finally:
            for sim in sims:
                sim.__exit__(None, None, None)
        pressed_ids = [button for button, _ in buttons[:alarms]]
        marks = ", ".join(["%s"] * len(pressed_ids))
        async with hub.store.reading() as tx:
            # The presses' alarms (a button's offline/online alarms are not part of this).
            rows = await tx.fetchall(
                f"SELECT id FROM alarms WHERE device_id IN ({marks}) AND type = 'panic'",
                pressed_ids,
            )
        clips = []
        for (alarm_id,) in rows:
            clips += await hub.evidence.clips(uuid.UUID(str(alarm_id)))
        complete = [c for c in clips if c.state == "complete"]
        latency = sorted((c.completed_at.timestamp() - pressed) for c in complete if c.completed_at)
        # After the post-roll's last packet arrived: the remux, digests and the row update.
        finishing = sorted(
            (c.completed_at - c.end_at).total_seconds()
            for c in complete
            if c.completed_at and c.end_at
        )
        # The post-roll is counted in the stream's seconds: how fast did they arrive?
        arrival = [
            ((c.end_at - c.press_at).total_seconds(), (c.duration_s or 0) - (c.seconds_before or 0))
            for c in complete
            if c.end_at
        ]
        spans = []
        for clip in complete:
            path = hub.evidence.path_of(clip)
            if path is not None:
                spans.append((clip, *_decoded_span(path)))
        figures["alarms"] = {
            "alarms_pressed": alarms,
            "alarms_opened": len(rows),
            "clips": len(clips),
            "clips_complete": len(complete),
            "clips_failed": [c.reason for c in clips if c.state != "complete"],
            "postroll_s": settings.evidence.postroll_s,
            "press_to_complete_s": {
                "samples": len(latency),
                "min": round(latency[0], 2) if latency else None,
                "median": round(statistics.median(latency), 2) if latency else None,
                "max": round(latency[-1], 2) if latency else None,
            },
            "last_packet_to_complete_s": {
                "median": round(statistics.median(finishing), 2) if finishing else None,
                "max": round(finishing[-1], 2) if finishing else None,
            },
            "post_roll_wall_s_per_stream_s": round(
                statistics.mean(wall / stream for wall, stream in arrival if stream > 0), 2
            )
            if arrival
            else None,
            "seconds_before_min": round(min(c.seconds_before or 0 for c in complete), 2)
            if complete
            else None,
            "decoded_frames_min": min(s[1] for s in spans) if spans else None,
            "undecodable_packets_total": sum(s[3] for s in spans),
            "decoded_span_s_min": round(min(s[2] for s in spans), 2) if spans else None,
            "clip_mib_mean": round(statistics.mean((c.size or 0) for c in complete) / 2**20, 2)
            if complete
            else None,
        }
    return figures


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cameras", type=int, default=70)
    parser.add_argument("--alarms", type=int, default=10)
    parser.add_argument("--window", type=float, default=30.0, help="CPU window, seconds")
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_rtsp_server(Path(tmp), width=1280, height=720, fps=25, kbps=2000) as server,
    ):
        url = server.url("snow")
        bare_before = _bare(url, args.cameras, args.window, server.pid)
        print("bare demux:", bare_before, flush=True)
        hub = asyncio.run(
            _hub_run(url, args.cameras, args.alarms, args.window, server.pid, Path(tmp) / "hub")
        )
        print("hub:", hub, flush=True)
        bare_after = _bare(url, args.cameras, args.window, server.pid)
        print("bare demux again:", bare_after, flush=True)
    # A second bare round that got no packets (the test server gave up) is no baseline.
    rounds = [b for b in (bare_before, bare_after) if b["packets_per_s"] > 0]
    bare_cores = statistics.mean(b["process_cores"] for b in rounds)
    buffering = hub["buffering"]["process_cores"]
    figures = {
        "cameras": args.cameras,
        "stream": "1280x720 25 fps H.264 (x264 ultrafast, 2000 kbit/s, snow), one shared mount",
        "started": started,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "bare_demux": {"before": bare_before, "after": bare_after},
        "hub": hub,
        "bare_rounds_used": len(rounds),
        "buffering_cores_over_bare": round(buffering - bare_cores, 3),
        "targets": {
            "buffering_cores_over_bare_max": 0.2,
            "ring_mib_per_camera_max": 12,
            "press_to_complete_max_s": 30 + 3,
            "simultaneous_alarms_complete": args.alarms,
        },
    }
    path = write_result("prebuffer", figures)
    print(f"buffering: {buffering:.3f} cores (bare demux {bare_cores:.3f}); wrote {path}")


if __name__ == "__main__":
    main()
