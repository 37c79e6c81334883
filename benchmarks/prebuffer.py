"""Pre-alarm buffering and evidence clips: CPU and memory per camera, press → clip complete.

Starts the GStreamer RTSP test server with one shared 1280x720 25 fps H.264 mount
at about 2 Mbit/s (television snow, so the encoder spends its whole bitrate) and
points N cameras (70 by default: 35 schools × 2) at it. In one run:

1. **buffering CPU, paired**: a started hub (SQLite, the machine's Mosquitto) with
   the schools in its registry buffers every linked camera (`EvidenceService`: a
   PyAV demux per camera plus a copy into the packet ring). Once every buffer is
   full, N bare PyAV demux threads of the same stream (av.open + demux, packets
   dropped — the floor any pull costs) run in the same process at the same time,
   and each window reads the CPU clocks of the hub's pull threads and of the bare
   threads: both sets see the same load, the same server and the same packets, so
   their difference is what buffering costs (the copy, the timeline, the ring and
   its trimming). The hub's other threads are reported beside it, and a window of
   the hub alone gives the whole process's CPU;
2. **memory**: ring bytes and RSS growth per camera at the stream's bitrate;
3. **alarms**: one round of `--alarms` (10) buttons pressed at once over MQTT,
   every clip decoded; then `--rounds` rounds pressing every school's button at
   once (35 alarms, 70 clips each), the alarms closed as false alarms between
   rounds so the next press opens new ones. Press → clip complete for each clip
   (completed_at of the clip row minus the wall time the press was published),
   with the real 30 s pre-roll and post-roll: p50 / p99 / max with n.

The alarms (3) run before the paired CPU windows (1): the windows double the
sessions on the test server, whose one shared mount on 2 cores can stall for a while
after them. The RTSP server's own CPU and the machine's load (at start, per round,
at the end) are recorded. All cameras pull the same shared mount: on 2 cores the server
cannot encode 70 different 720p streams, and the hub's work per camera (demux,
copy, ring) does not depend on the pictures being different.

Usage: .venv/bin/python -m benchmarks.prebuffer [--cameras 70] [--alarms 10]
       [--rounds 8] [--window 20] [--windows 3]
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
from hub.evidence.storage import ClipRow
from hub.runtime import Hub
from hub.storage import Json
from tests.integration.hub_mqtt_support import register_device
from tests.peers.rtsp import start_rtsp_server

_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1000000"}
_FPS = 25


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _threads_cpu(threads: list[threading.Thread]) -> float:
    """CPU seconds the live `threads` have used so far (their own clocks)."""
    total = 0.0
    for thread in threads:
        if thread.is_alive() and thread.ident is not None:
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def _pull_threads() -> list[threading.Thread]:
    """The hub's camera pull threads (PacketPull names them pull-<camera>)."""
    return [t for t in threading.enumerate() if t.name.startswith("pull-")]


class _BarePulls:
    """N threads demuxing `url` with PyAV, dropping every packet."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self.packets = 0
        self.bytes = 0
        self.failures = 0
        self._stop = threading.Event()
        self.threads: list[threading.Thread] = []
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
            self.threads.append(thread)
            time.sleep(0.05)  # the test server refuses a burst of 70 simultaneous sessions
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(15)


def _window(
    seconds: float, server_pid: int, groups: dict[str, list[threading.Thread]]
) -> dict[str, float]:
    """CPU over `seconds`: this process, each thread group (own clocks), the RTSP server
    and the whole machine, in cores."""
    cpu0, server0, busy0 = time.process_time(), _process_cpu(server_pid), _system_busy_s()
    threads0 = {name: _threads_cpu(threads) for name, threads in groups.items()}
    wall0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - wall0
    figures = {
        "seconds": round(wall, 1),
        "process_cores": round((time.process_time() - cpu0) / wall, 3),
        "rtsp_server_cores": round((_process_cpu(server_pid) - server0) / wall, 3),
        "machine_busy_cores": round((_system_busy_s() - busy0) / wall, 3),
    }
    for name, threads in groups.items():
        figures[f"{name}_cores"] = round((_threads_cpu(threads) - threads0[name]) / wall, 3)
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


def _stream_seconds(hub: Hub, camera_id: str) -> float:
    """Seconds of pictures (by their timestamps) a camera's buffer holds."""
    ring = hub.evidence.ring(camera_id)
    packets = ring.window(float("-inf"))[0] if ring else []
    video = [p for p in packets if p.video]
    return float((video[-1].pts - video[0].pts) * video[0].time_base) if len(video) > 1 else 0.0


def _buffering_verdict(over: float, buffering: dict[str, Any], cameras: int) -> str:
    """ "met" / "missed by" for the CPU over bare, or why the windows measured nothing:
    a window in which the test server sent less than half of real time compares idle
    threads, and its difference is no figure (it would flatter the hub)."""
    fractions = [w["hub_packets_per_s"] / (cameras * _FPS) for w in buffering["paired_windows"]]
    if not fractions or min(fractions) < 0.5:
        shown = ", ".join(f"{x:.2f}" for x in fractions)
        return f"not measured: the test server sent {shown} of real time in the windows"
    return "met" if over <= 0.2 else f"missed by {over - 0.2:.3f} cores"


def _against(figures: dict[str, Any], key: str, goal_s: float) -> str:
    """ "met", "missed by N s", or why there is no figure (no clip completed)."""
    if key not in figures:
        return "missed: no clip completed"
    value = float(figures[key])
    return "met" if value <= goal_s else f"missed by {value - goal_s:.2f} s"


def _percentiles(values: list[float]) -> dict[str, Any]:
    """n, min, p50, p99, max of `values` (p99 by the nearest-rank rule)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    rank = max(int(len(ordered) * 0.99 + 0.999999) - 1, 0)
    return {
        "n": len(ordered),
        "min": round(ordered[0], 2),
        "p50": round(statistics.median(ordered), 2),
        "p99": round(ordered[rank], 2),
        "max": round(ordered[-1], 2),
    }


async def _buffering(
    hub: Hub, url: str, cameras: int, window_s: float, windows: int, server_pid: int
) -> dict[str, Any]:
    """The hub alone, then paired windows beside N bare demux threads."""
    pulls = _pull_threads()
    alone = await asyncio.to_thread(_window, window_s, server_pid, {"hub_pulls": pulls})
    paired = []

    def hub_packets() -> int:
        total = 0
        for state in hub.evidence.buffered():
            source = hub.evidence.pull(state.camera_id)
            total += int(getattr(source, "packets", 0))
        return total

    with _BarePulls(url, cameras) as bare:
        await asyncio.sleep(5)  # every bare pull open and streaming
        for _ in range(windows):
            hub0, bare0 = hub_packets(), bare.packets
            figures = await asyncio.to_thread(
                _window, window_s, server_pid, {"hub_pulls": pulls, "bare_pulls": bare.threads}
            )
            seconds = figures["seconds"]
            figures["hub_packets_per_s"] = round((hub_packets() - hub0) / seconds, 1)
            figures["bare_packets_per_s"] = round((bare.packets - bare0) / seconds, 1)
            figures["rest_of_process_cores"] = round(
                figures["process_cores"] - figures["hub_pulls_cores"] - figures["bare_pulls_cores"],
                3,
            )
            figures["buffering_over_bare_cores"] = round(
                figures["hub_pulls_cores"] - figures["bare_pulls_cores"], 3
            )
            paired.append(figures)
        refused = bare.failures
    over = [w["buffering_over_bare_cores"] for w in paired]
    per_packet = [
        (
            w["hub_pulls_cores"] / w["hub_packets_per_s"]
            - w["bare_pulls_cores"] / w["bare_packets_per_s"]
        )
        * 1e6
        for w in paired
        if w["hub_packets_per_s"] and w["bare_packets_per_s"]
    ]
    return {
        "hub_alone": alone,
        "paired_windows": paired,
        "bare_sessions_refused": refused,
        "buffering_over_bare_cores_mean": round(statistics.mean(over), 3),
        "buffering_over_bare_cores_max": round(max(over), 3),
        "buffering_over_bare_us_per_packet_mean": round(statistics.mean(per_packet), 1)
        if per_packet
        else None,
        "rest_of_hub_process_cores_alone": round(
            alone["process_cores"] - alone["hub_pulls_cores"], 3
        ),
    }


async def _press_round(
    hub: Hub, sims: list[tuple[str, PanicButtonSim]], *, decode: bool
) -> dict[str, Any]:
    """Press every button of `sims` at once; wait for the clips; close the alarms."""
    load = os.getloadavg()
    pressed = time.time()
    for _, sim in sims:
        sim.press()
    ids = [button for button, _ in sims]
    marks = ", ".join(["%s"] * len(ids))
    deadline = time.monotonic() + 20
    rows: list[Any] = []
    while time.monotonic() < deadline:
        async with hub.store.reading() as tx:
            rows = await tx.fetchall(
                f"SELECT id FROM alarms WHERE device_id IN ({marks}) AND type = 'panic'"
                " AND state = 'new'",
                ids,
            )
        if len(rows) == len(sims):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    await hub.evidence.wait_for_clips()
    clips: list[ClipRow] = []
    for (alarm_id,) in rows:
        clips += await hub.evidence.clips(uuid.UUID(str(alarm_id)))
    complete = [c for c in clips if c.state == "complete"]
    latency = [c.completed_at.timestamp() - pressed for c in complete if c.completed_at]
    # After the post-roll's last packet arrived: the index, the digests, the row update.
    finishing = [
        (c.completed_at - c.end_at).total_seconds() for c in complete if c.completed_at and c.end_at
    ]
    # From the press to the post-roll's last packet: the stream's seconds, as they arrive.
    waiting = [(c.end_at - c.press_at).total_seconds() for c in complete if c.end_at]
    # Ended by the stall guard (the post-roll had not arrived 10 s after it was due).
    cut_short = [c for c in complete if (c.duration_s or 0) - (c.seconds_before or 0) < 29.9]
    # The post-roll is counted in the stream's seconds: how fast did they arrive?
    arrival = [
        ((c.end_at - c.press_at).total_seconds(), (c.duration_s or 0) - (c.seconds_before or 0))
        for c in complete
        if c.end_at
    ]
    spans = []
    for clip in complete:
        path = hub.evidence.path_of(clip)
        if path is None:
            continue
        if decode:
            spans.append(await asyncio.to_thread(_decoded_span, path))
        else:
            await asyncio.to_thread(path.unlink)  # 15 MiB each: 70 a round fill a disk
    for (alarm_id,) in rows:
        await hub.alarms.act(
            uuid.UUID(str(alarm_id)),
            "false_alarm",
            "system:benchmark",
            visible=lambda _: True,
            note="benchmark round",
        )
    return {
        "alarms_pressed": len(sims),
        "alarms_opened": len(rows),
        "clips": len(clips),
        "clips_complete": len(complete),
        "clips_failed": [c.reason for c in clips if c.state != "complete"],
        "load_avg_at_press": [round(x, 2) for x in load],
        "latency": latency,
        "finishing": finishing,
        "press_to_last_packet_s": _percentiles(waiting),
        "last_packet_to_complete_s": _percentiles(finishing),
        "clips_ended_by_stall_guard": len(cut_short),
        "post_roll_wall_s_per_stream_s": round(
            statistics.mean(wall / stream for wall, stream in arrival if stream > 0), 3
        )
        if arrival
        else None,
        "seconds_before_min": round(min(c.seconds_before or 0 for c in complete), 2)
        if complete
        else None,
        "after_press_s_min": round(
            min((c.duration_s or 0) - (c.seconds_before or 0) for c in complete), 2
        )
        if complete
        else None,
        "clip_mib_mean": round(statistics.mean((c.size or 0) for c in complete) / 2**20, 2)
        if complete
        else None,
        "decoded": {
            "clips": len(spans),
            "frames_min": min(s[0] for s in spans),
            "span_s_min": round(min(s[1] for s in spans), 2),
            "undecodable_packets_total": sum(s[2] for s in spans),
        }
        if spans
        else None,
    }


async def _buffers_full(hub: Hub, cameras: int, pre: float) -> float:
    """Wait until every buffer holds `pre` seconds of pictures; the monotonic time then."""
    deadline = time.monotonic() + 3 * pre + 60
    while True:
        states = hub.evidence.buffered()
        # Full means `pre` seconds of pictures (a server behind real time takes longer).
        full = [s for s in states if s.connected and _stream_seconds(hub, s.camera_id) >= pre]
        if len(states) == cameras and len(full) == cameras:
            return time.monotonic()
        if time.monotonic() > deadline:
            seconds = sorted(round(_stream_seconds(hub, s.camera_id), 1) for s in states)
            raise RuntimeError(
                f"only {len(full)} of {cameras} buffers reached {pre} s: "
                f"{sum(s.connected for s in states)} connected, seconds held {seconds}, "
                f"errors {sorted({s.last_error for s in states if s.last_error})}"
            )
        await asyncio.sleep(1)


async def _hub_run(
    url: str,
    cameras: int,
    alarms: int,
    rounds: int,
    window_s: float,
    windows: int,
    server_pid: int,
    data: Path,
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
        await _buffers_full(hub, cameras, pre)
        states = hub.evidence.buffered()
        ring = [s.bytes for s in states]
        # The ring is bounded in the stream's own seconds: bytes per second of pictures,
        # not of arrival (a test server that falls behind stretches the arrival).
        stream_spans = []
        for state in states:
            held = hub.evidence.ring(state.camera_id)
            packets = held.window(float("-inf"))[0] if held else []
            video = [p for p in packets if p.video]
            if len(video) > 1:
                span = float((video[-1].pts - video[0].pts) * video[0].time_base)
                stream_spans.append((span, sum(len(p.data) for p in packets)))
        figures["memory"] = {
            "ring_mib_per_camera_mean": round(statistics.mean(ring) / 2**20, 2),
            "ring_mib_per_camera_max": round(max(ring) / 2**20, 2),
            "ring_seconds_mean": round(statistics.mean(s.seconds for s in states), 1),
            "rss_growth_mib_per_camera": round((_rss_mib() - rss_before) / cameras, 2),
            "overflow_drops": sum(s.overflow_drops for s in states),
            "bitrate_mbit_per_s_mean": round(
                statistics.mean(s.bytes * 8 / 1e6 / s.seconds for s in states if s.seconds), 2
            ),
            "ring_stream_seconds_mean": round(statistics.mean(x for x, _ in stream_spans), 1),
            "bitrate_mbit_per_stream_s_mean": round(
                statistics.mean(b * 8 / 1e6 / x for x, b in stream_spans if x), 2
            ),
        }
        for _, mqtt_id in buttons:
            while not hub.mqtt.directory.lookup(mqtt_id):  # noqa: ASYNC110 - polled state
                await asyncio.sleep(0.1)
        sims = [(b, PanicButtonSim(m, prefix=prefix)) for b, m in buttons]
        for _, sim in sims:
            sim.__enter__()
        results = []
        try:
            await asyncio.sleep(1.0)
            # Ten at once (every clip decoded), then every school at once, round after round.
            results.append(await _press_round(hub, sims[:alarms], decode=True))
            for _ in range(rounds):
                results.append(await _press_round(hub, sims, decode=False))
                shown = {k: v for k, v in results[-1].items() if k not in ("latency", "finishing")}
                print("round:", shown, flush=True)
        finally:
            for _, sim in sims:
                sim.__exit__(None, None, None)
        every = [x for r in results for x in r["latency"]]
        many = [x for r in results[1:] for x in r["latency"]]
        figures["alarms"] = {
            "postroll_s": settings.evidence.postroll_s,
            "press_to_complete_s": _percentiles(every),
            "press_to_complete_s_ten_at_once": _percentiles(results[0]["latency"]),
            "press_to_complete_s_all_schools_at_once": _percentiles(many),
            "last_packet_to_complete_s": _percentiles([x for r in results for x in r["finishing"]]),
            "clips_complete": sum(r["clips_complete"] for r in results),
            "clips": sum(r["clips"] for r in results),
            "rounds": [
                {k: v for k, v in r.items() if k not in ("latency", "finishing")}
                | {"press_to_complete_s": _percentiles(r["latency"])}
                for r in results
            ],
        }
        # The paired CPU windows come after the alarms: they double the sessions on the
        # test server, which on 2 cores can stall its shared mount for a while.
        figures["buffering"] = await _buffering(hub, url, cameras, window_s, windows, server_pid)
        print("buffering:", figures["buffering"], flush=True)
    return figures


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cameras", type=int, default=70)
    parser.add_argument("--alarms", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=8, help="rounds pressing every button")
    parser.add_argument("--window", type=float, default=20.0, help="CPU window, seconds")
    parser.add_argument("--windows", type=int, default=3, help="paired CPU windows")
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_rtsp_server(Path(tmp), width=1280, height=720, fps=_FPS, kbps=2000) as server,
    ):
        url = server.url("snow")
        hub = asyncio.run(
            _hub_run(
                url,
                args.cameras,
                args.alarms,
                args.rounds,
                args.window,
                args.windows,
                server.pid,
                Path(tmp) / "hub",
            )
        )
    over = hub["buffering"]["buffering_over_bare_cores_mean"]
    latency = hub["alarms"]["press_to_complete_s"]
    goal_s = hub["alarms"]["postroll_s"] + 3
    ten = hub["alarms"]["press_to_complete_s_ten_at_once"]
    figures = {
        "cameras": args.cameras,
        "stream": "1280x720 25 fps H.264 (x264 ultrafast, 2000 kbit/s, snow), one shared mount",
        "started": started,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "hub": hub,
        "buffering_cores_over_bare": over,
        "targets": {
            "buffering_cores_over_bare_max": 0.2,
            "ring_mib_per_camera_max": 12,
            "press_to_complete_max_s": goal_s,
            "simultaneous_alarms_complete": args.alarms,
        },
        "verdict": {
            "buffering_cpu": _buffering_verdict(over, hub["buffering"], args.cameras),
            "memory": "met" if hub["memory"]["ring_mib_per_camera_max"] <= 12 else "missed",
            "press_to_complete_p99": _against(latency, "p99", goal_s),
            "press_to_complete_max": _against(latency, "max", goal_s),
            "ten_at_once_complete": hub["alarms"]["rounds"][0]["clips_complete"] == 2 * args.alarms,
            "press_to_complete_ten_at_once_max": _against(ten, "max", goal_s),
        },
        # Figures of a round whose source stopped (its clips end before the press) or ran
        # far behind real time measure the test server, not the hub: said here.
        "source_health": {
            "paired_windows_real_time_fraction": [
                round(w["hub_packets_per_s"] / (args.cameras * _FPS), 2)
                for w in hub["buffering"]["paired_windows"]
            ],
            "rounds_where_the_source_stopped": sum(
                1
                for r in hub["alarms"]["rounds"]
                if (r["press_to_last_packet_s"].get("p50") or 0) < 0
            ),
            "rounds_behind_real_time_by_more_than_10_percent": sum(
                1
                for r in hub["alarms"]["rounds"]
                if abs(r["post_roll_wall_s_per_stream_s"] or 0) > 1.1
            ),
        },
        # Why a latency goal is missed: how late the stream's post-roll arrived (wall
        # seconds per stream second, 1.0 for a camera in real time), how many clips the
        # stall guard ended, and the hub's own share (last packet -> clip complete).
        "latency_breakdown": [
            {
                "alarms": r["alarms_pressed"],
                "wall_s_per_stream_s": r["post_roll_wall_s_per_stream_s"],
                "press_to_last_packet_s": r["press_to_last_packet_s"],
                "last_packet_to_complete_s": r["last_packet_to_complete_s"],
                "clips_ended_by_stall_guard": r["clips_ended_by_stall_guard"],
                "load_avg_at_press": r["load_avg_at_press"],
            }
            for r in hub["alarms"]["rounds"]
        ],
    }
    path = write_result("prebuffer", figures)
    print(f"buffering over bare: {over:.3f} cores; press -> complete {latency}; wrote {path}")


if __name__ == "__main__":
    main()
