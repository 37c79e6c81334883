"""Patrol throughput: RTSP probes per second and CPU per probe, next to the decode limit.

Starts the GStreamer RTSP test server, points N cameras at its mounts (reused),
and measures in one run:

1. a patrol through `ProbePool` (threads, then processes): cameras per second,
   CPU seconds per probe (this process and its workers), open latency;
   and the same cameras through the hub's `PatrolService` (probe, VQD, samples,
   transitions and evidence stored in SQLite, events written);
2. the raw decode rate of the same stream (packets captured once, decoded in a
   tight loop on one core) and the decode-bound patrol limit it implies;
3. the VQD bundle's cost per frame next to the bare OpenCV operations it uses.

Usage: .venv/bin/python -m benchmarks.patrol [--cameras 64] [--workers 16]
Writes benchmarks/results/patrol.json. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import av
import cv2
import numpy as np

from adapters.rtsp import ProbePool, diagnose, probe_stream
from adapters.rtsp.models import BgrFrame
from tests.peers.rtsp import start_rtsp_server

RESULTS = Path(__file__).parent / "results" / "patrol.json"


def _system_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


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
        # Client CPU = the machine's busy time minus the RTSP server's, so that
        # process-pool workers (still alive, not yet reaped) are counted too.
        busy0, server0 = _system_busy_s(), _process_cpu(server_pid)
        wall0 = time.perf_counter()
        probes = await asyncio.gather(*(pool.probe(url) for url in urls))
        wall = time.perf_counter() - wall0
        server = _process_cpu(server_pid) - server0
        cpu = _system_busy_s() - busy0 - server
    finally:
        await pool.aclose()
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
            busy0, server0 = _system_busy_s(), _process_cpu(server_pid)
            wall0 = time.perf_counter()
            progress = await patrol.run_once(trigger="benchmark")
            wall = time.perf_counter() - wall0
            server = _process_cpu(server_pid) - server0
            cpu = _system_busy_s() - busy0 - server
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write benchmarks/results/patrol.json."""
    parser = argparse.ArgumentParser(description="RTSP patrol benchmark")
    parser.add_argument("--cameras", type=int, default=128)
    parser.add_argument("--workers", type=int, default=32, help="the hub's default concurrency")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--mounts", default="ball,frozen,black,grey")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--skip-process-pool", action="store_true")
    parser.add_argument("--skip-scheduler", action="store_true")
    args = parser.parse_args(argv)

    mounts = args.mounts.split(",")
    with (
        tempfile.TemporaryDirectory() as log_dir,
        start_rtsp_server(
            Path(log_dir), width=args.width, height=args.height, fps=args.fps
        ) as peer,
    ):
        urls = [peer.url(mounts[i % len(mounts)]) for i in range(args.cameras)]
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
        frames = list(probe_stream(peer.url("ball"), frames=args.frames).frames)

    cores = os.cpu_count() or 1
    per_probe = decode["decode_fps_one_core"] / args.frames
    limit = {
        "decode_bound_cameras_per_s_all_cores": round(per_probe * cores, 1),
        "note": f"{cores} cores x decode fps / {args.frames} frames per probe",
    }
    best = max(patrols, key=lambda p: p["cameras_per_s"])
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": cores,
            "python": sys.version.split()[0],
            "av": av.__version__,
            "opencv": cv2.__version__,
            "platform": platform.platform(),
        },
        "stream": {
            "width": args.width,
            "height": args.height,
            "fps": args.fps,
            "codec": "h264 baseline (x264 ultrafast)",
            "mounts": mounts,
        },
        "patrol": patrols,
        "decode": decode,
        "decode_limit": limit,
        "patrol_vs_decode_limit": round(
            best["cameras_per_s"] / limit["decode_bound_cameras_per_s_all_cores"], 3
        ),
        "scheduler": scheduler,
        "scheduler_vs_decode_limit": round(
            scheduler["cameras_per_s"] / limit["decode_bound_cameras_per_s_all_cores"], 3
        )
        if scheduler
        else None,
        "scheduler_vs_bare_pool": round(scheduler["cameras_per_s"] / patrols[0]["cameras_per_s"], 3)
        if scheduler
        else None,
        "cameras_per_s_needed_for_10000_in_10_min": round(10_000 / 600, 1),
        **_vqd_costs(frames),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
