"""Patrol throughput: RTSP probes per second and CPU per probe, beside a bare PyAV probe.

For each resolution (`--resolutions`, default 640x360, 1280x720 and 1920x1080) it
starts the GStreamer RTSP test server, points N cameras at its mounts (reused),
and measures in one run:

1. a bare PyAV probe of the same shape: open the RTSP stream with the same
   options, decode the same number of frames, scale each to the analysis width,
   close — as many at a time as the patrol's workers;
2. a patrol through `ProbePool` (threads, then processes) and the same cameras
   through the hub's `PatrolService` (probe, VQD, samples, transitions and
   evidence stored in SQLite, events written): cameras per second, CPU seconds
   per probe, open latency. CPU is this process's own (and its reaped workers'),
   from getrusage: the RTSP server and the rest of the machine are not charged;
3. the raw decode rate of the same stream (packets captured once, decoded in a
   tight loop on one core);
4. the VQD bundle's cost per frame next to the bare OpenCV operations it uses.

From the hub's CPU per probe it says how many cores, and nodes of 2 cores at
70 %, a patrol of 6,314 and of 10,000 cameras every 10 minutes needs at each
resolution (a camera with a sub-stream is patrolled on it: `choose_stream_url`).

Usage: .venv/bin/python -m benchmarks.patrol [--cameras 64] [--workers 16]
Writes benchmarks/results/patrol.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

from adapters.rtsp import ProbePool, diagnose, probe_stream
from adapters.rtsp.models import BgrFrame
from benchmarks.common import machine_load
from tests.peers.rtsp import start_rtsp_server

RESULTS = Path(__file__).parent / "results" / "patrol.json"


def _system_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process (all its threads) and of its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _process_cpu(pid: int) -> float:
    """CPU seconds a process (the RTSP server) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _patrol(
    urls: list[str],
    workers: int,
    frames: int,
    executor: Literal["thread", "process"],
    server_pid: int,
) -> dict[str, Any]:
    pool = ProbePool(max_workers=workers, executor=executor, frames=frames, timeout_s=5)
    try:
        # Warm the workers (process start-up, imports) outside the measurement.
        await asyncio.gather(*(pool.probe(urls[0], frames=1) for _ in range(workers)))
        cpu0, server0 = _own_cpu_s(), _process_cpu(server_pid)
        wall0 = time.perf_counter()
        probes = await asyncio.gather(*(pool.probe(url) for url in urls))
        wall = time.perf_counter() - wall0
        server = _process_cpu(server_pid) - server0
    finally:
        await pool.aclose()
    # After aclose: process-pool workers are reaped, so their CPU is counted too.
    cpu = _own_cpu_s() - cpu0
    ok = [p for p in probes if p.ok and p.frames_decoded == frames]
    latencies = sorted(p.open_latency_s for p in probes if p.open_latency_s is not None)
    return {
        "executor": executor,
        "cameras": len(urls),
        "workers": workers,
        "frames_per_probe": frames,
        "complete_probes": len(ok),
        "wall_s": round(wall, 3),
        "cameras_per_s": round(len(urls) / wall, 2),
        "cpu_s_per_probe": round(cpu / len(urls), 4),
        "cpu_cores_busy": round(cpu / wall, 2),
        "rtsp_server_cores_busy": round(server / wall, 2),
        "open_latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
        "open_latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3)
        if latencies
        else None,
        "probe_total_median_s": round(statistics.median(p.total_time_s for p in probes), 3),
    }


async def _scheduler(
    urls: list[str], workers: int, frames: int, server_pid: int, data_dir: Path
) -> dict[str, Any]:
    """A pass through the hub's patrol scheduler: probe, diagnose, store, emit events."""
    from hub.devices.patrol import PatrolService
    from hub.devices.patrol_config import PatrolSettings
    from hub.storage import SQLiteStore
    from hub.writer import EventWriter
    from tests.integration.health_seed import seed_camera, seed_tree

    store = SQLiteStore(data_dir / "bench.sqlite3")
    async with store, EventWriter(store) as writer:
        await seed_tree(store)
        for index, url in enumerate(urls):
            await seed_camera(store, f"cam-{index:05d}", urls=[url])
        settings = PatrolSettings(enabled=False, concurrency=workers, frames=frames, timeout_s=5)
        patrol = PatrolService(settings, store=store, writer=writer)
        await patrol.start()
        try:
            cpu0, server0 = _own_cpu_s(), _process_cpu(server_pid)
            wall0 = time.perf_counter()
            progress = await patrol.run_once(trigger="benchmark")
            wall = time.perf_counter() - wall0
            server = _process_cpu(server_pid) - server0
            cpu = _own_cpu_s() - cpu0
        finally:
            await patrol.stop()
    return {
        "path": "hub PatrolService (probe + VQD + samples/transitions/evidence in SQLite + events)",
        "cameras": len(urls),
        "workers": workers,
        "frames_per_probe": frames,
        "done": progress.done,
        "degraded": progress.degraded,
        "failed": progress.failed,
        "transitions": progress.transitions,
        "events": progress.events,
        "wall_s": round(wall, 3),
        "cameras_per_s": round(progress.done / wall, 2),
        "cpu_s_per_probe": round(cpu / max(1, progress.done), 4),
        "cpu_cores_busy": round(cpu / wall, 2),
        "rtsp_server_cores_busy": round(server / wall, 2),
    }


def _bare_probe(url: str, frames: int, analysis_width: int) -> int:
    """Open, decode `frames` frames scaled to the analysis width, close; frames decoded."""
    container = av.open(
        url,
        options={"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32"},
        timeout=(5, 5),
    )
    decoded = 0
    try:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            height = round(frame.height * analysis_width / frame.width / 2) * 2
            frame.to_ndarray(width=analysis_width, height=height, format="bgr24")
            decoded += 1
            if decoded >= frames:
                break
    finally:
        container.close()
    return decoded


async def _bare_probes(
    urls: list[str], workers: int, frames: int, analysis_width: int, server_pid: int
) -> dict[str, Any]:
    """The bare PyAV probe of every camera, `workers` at a time on threads."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bare-probe") as threads:
        cpu0, server0 = _own_cpu_s(), _process_cpu(server_pid)
        wall0 = time.perf_counter()
        decoded = await asyncio.gather(
            *(
                loop.run_in_executor(threads, _bare_probe, url, frames, analysis_width)
                for url in urls
            ),
            return_exceptions=True,
        )
        wall = time.perf_counter() - wall0
        cpu = _own_cpu_s() - cpu0
    complete = sum(1 for d in decoded if d == frames)
    return {
        "path": "bare PyAV: open, decode and scale the same frames, close (threads)",
        "cameras": len(urls),
        "workers": workers,
        "at_a_time": workers,
        "complete_probes": complete,
        "wall_s": round(wall, 3),
        "cameras_per_s": round(len(urls) / wall, 2),
        "cpu_s_per_probe": round(cpu / len(urls), 4),
        "cpu_cores_busy": round(cpu / wall, 2),
        "rtsp_server_cores_busy": round((_process_cpu(server_pid) - server0) / wall, 2),
    }


def _capture_packets(url: str, count: int) -> tuple[list[Any], Any]:
    container = av.open(
        url,
        options={"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "32"},
        timeout=(5, 5),
    )
    stream = container.streams.video[0]
    packets: list[Any] = []
    for packet in container.demux(stream):
        if packet.size:
            packets.append(packet)
        if len(packets) >= count:
            break
    parameters = stream.codec_context
    container.close()
    return packets, parameters


def _decode_rate(url: str, count: int, analysis_width: int) -> dict[str, Any]:
    """Frames per second one core decodes from this stream (and with BGR scaling)."""
    packets, parameters = _capture_packets(url, count)

    def run(convert: bool) -> float:
        codec = av.CodecContext.create(parameters.name, "r")
        codec.extradata = parameters.extradata
        codec.thread_count = 1
        decoded = 0
        start = time.process_time()
        for packet in packets:
            for frame in codec.decode(packet):
                decoded += 1
                if convert:
                    height = round(frame.height * analysis_width / frame.width / 2) * 2
                    frame.reformat(width=analysis_width, height=height, format="bgr24")
        return decoded / (time.process_time() - start)

    run(False)  # warm-up
    return {
        "packets": len(packets),
        "width": parameters.width,
        "height": parameters.height,
        "decode_fps_one_core": round(run(False), 1),
        "decode_and_scale_fps_one_core": round(run(True), 1),
    }


def _time_ms(operation: Callable[[], object], repeat: int = 200) -> float:
    operation()
    start = time.perf_counter()
    for _ in range(repeat):
        operation()
    return round((time.perf_counter() - start) / repeat * 1000, 4)


def _vqd_costs(frames: list[BgrFrame]) -> dict[str, Any]:
    """The VQD bundle per frame at analysis size and from 1080p, beside bare OpenCV ops."""
    small = frames[-1]
    full_hd: BgrFrame = np.asarray(
        cv2.resize(small, (1920, 1080), interpolation=cv2.INTER_CUBIC), dtype=np.uint8
    )
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    grey_hd = cv2.cvtColor(full_hd, cv2.COLOR_BGR2GRAY)
    per_frame = {
        f"diagnose_{len(frames)}_frames_at_{small.shape[1]}px_per_frame": round(
            _time_ms(lambda: diagnose(frames)) / len(frames), 4
        ),
        "diagnose_1_frame_at_analysis_size": _time_ms(lambda: diagnose([small])),
        "diagnose_1_frame_from_1080p": _time_ms(lambda: diagnose([full_hd]), 50),
    }
    bare = {
        "resize_1080p_to_320_inter_area": _time_ms(
            lambda: cv2.resize(full_hd, (320, 180), interpolation=cv2.INTER_AREA), 50
        ),
        "cvtColor_grey": _time_ms(lambda: cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)),
        "laplacian_16s_meanStdDev": _time_ms(
            lambda: cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S, ksize=3))
        ),
        "laplacian_64f_var": _time_ms(lambda: cv2.Laplacian(grey, cv2.CV_64F).var()),
        "laplacian_16s_meanStdDev_1080p": _time_ms(
            lambda: cv2.meanStdDev(cv2.Laplacian(grey_hd, cv2.CV_16S, ksize=3)), 50
        ),
        "laplacian_64f_var_1080p": _time_ms(lambda: cv2.Laplacian(grey_hd, cv2.CV_64F).var(), 50),
        "cvtColor_lab_meanStdDev": _time_ms(
            lambda: cv2.meanStdDev(cv2.cvtColor(small, cv2.COLOR_BGR2Lab))
        ),
        "calcHist_256": _time_ms(lambda: cv2.calcHist([grey], [0], None, [256], [0, 256])),
        "blur3x3_subtract_meanStdDev": _time_ms(
            lambda: cv2.meanStdDev(cv2.subtract(grey, cv2.blur(grey, (3, 3)), dtype=cv2.CV_16S))
        ),
        "absdiff_count": _time_ms(lambda: np.count_nonzero(cv2.absdiff(grey, grey) > 6)),
    }
    return {"vqd_ms_per_frame": per_frame, "bare_opencv_ms": bare}


def _compare(hub: dict[str, Any], bare: dict[str, Any], cameras: int, cores: int) -> dict[str, Any]:
    """The hub's CPU per probe beside the bare probe's, and the district's needs.

    A probe that timed out stopped decoding early and cost less than a complete
    one: when the hub's probes did not all complete, its CPU per probe is no
    measurement of a probe, and the district figures use the bare probe's cost,
    the least a complete probe costs, as a lower bound.
    """
    complete = hub.get("done", hub.get("complete_probes", 0)) - hub.get("failed", 0)
    if complete >= cameras:
        return {
            "hub_over_bare_cpu_per_probe": round(
                hub["cpu_s_per_probe"] / max(bare["cpu_s_per_probe"], 1e-9), 2
            ),
            "district": _district(hub["cpu_s_per_probe"], cores),
        }
    return {
        "hub_over_bare_cpu_per_probe": None,
        "incomplete": (
            f"{cameras - complete} of {cameras} hub probes did not complete (5 s timeout: "
            "the RTSP test server, encoding this resolution on the same loaded cores, "
            "fell behind); their CPU is not a probe's cost"
        ),
        "district": _district(bare["cpu_s_per_probe"], cores)
        | {"lower_bound": "from the bare PyAV probe's CPU, the least a complete probe costs"},
    }


def _district(cpu_s_per_probe: float, cores: int) -> dict[str, Any]:
    """Cores and 2-core nodes (70 % usable) a 10-minute patrol cycle needs at this cost."""
    out: dict[str, Any] = {}
    for cameras in (6_314, 10_000):
        needed = cameras / 600 * cpu_s_per_probe
        out[f"{cameras}_cameras"] = {
            "probes_per_s": round(cameras / 600, 2),
            "cores": round(needed, 2),
            "nodes_of_2_cores_at_70_percent": max(1, math.ceil(needed / (2 * 0.7))),
        }
    out["note"] = f"CPU per probe measured on this {cores}-core machine, patrol process only"
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write benchmarks/results/patrol.json."""
    parser = argparse.ArgumentParser(description="RTSP patrol benchmark")
    parser.add_argument("--cameras", type=int, default=128)
    parser.add_argument("--workers", type=int, default=32, help="the hub's default concurrency")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--mounts", default="ball,frozen,black,grey")
    parser.add_argument("--resolutions", default="640x360,1280x720,1920x1080")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--skip-process-pool", action="store_true")
    parser.add_argument("--skip-scheduler", action="store_true")
    args = parser.parse_args(argv)

    mounts = args.mounts.split(",")
    cores = os.cpu_count() or 1
    load = machine_load()
    by_resolution: dict[str, Any] = {}
    frames: list[BgrFrame] = []
    for resolution in args.resolutions.split(","):
        width, height = (int(v) for v in resolution.split("x"))
        with (
            tempfile.TemporaryDirectory() as log_dir,
            start_rtsp_server(Path(log_dir), width=width, height=height, fps=args.fps) as peer,
        ):
            urls = [peer.url(mounts[i % len(mounts)]) for i in range(args.cameras)]
            bare = asyncio.run(_bare_probes(urls, args.workers, args.frames, 320, peer.pid))
            patrols = [asyncio.run(_patrol(urls, args.workers, args.frames, "thread", peer.pid))]
            if not args.skip_process_pool:
                patrols.append(
                    asyncio.run(_patrol(urls, args.workers, args.frames, "process", peer.pid))
                )
            scheduler = None
            if not args.skip_scheduler:
                scheduler = asyncio.run(
                    _scheduler(urls, args.workers, args.frames, peer.pid, Path(log_dir))
                )
            decode = _decode_rate(peer.url("ball"), 150, 320)
            if not frames:
                frames = list(probe_stream(peer.url("ball"), frames=args.frames).frames)
        by_resolution[resolution] = {
            "bare_pyav_probe": bare,
            "patrol": patrols,
            "scheduler": scheduler,
            "decode": decode,
            **_compare(scheduler or patrols[0], bare, args.cameras, cores),
        }
        print(f"{resolution}: {json.dumps(by_resolution[resolution])}", flush=True)

    first = by_resolution[next(iter(by_resolution))]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": cores,
            "python": sys.version.split()[0],
            "av": av.__version__,
            "opencv": cv2.__version__,
            "platform": platform.platform(),
            "load_at_start": load,
            "load_at_end": machine_load(),
        },
        "stream": {
            "resolutions": list(by_resolution),
            "fps": args.fps,
            "codec": "h264 baseline (x264 ultrafast)",
            "mounts": mounts,
        },
        "resolutions": by_resolution,
        # The first resolution's figures, where the summary and scaling read them.
        "scheduler": first["scheduler"],
        "bare_pyav_probe": first["bare_pyav_probe"],
        "cameras_per_s_needed_for_10000_in_10_min": round(10_000 / 600, 1),
        **_vqd_costs(frames),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
