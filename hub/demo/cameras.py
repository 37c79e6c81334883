"""The demo's simulated cameras inside the hub's own video paths.

The patrol's probes, the live view and alarm snapshots of a simulated camera are
served from its synthetic pictures; everything downstream (diagnosis, health,
evidence, alarm media, WebRTC) is the product's code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np

from adapters.rtsp import ProbeFailure, StreamProbe
from adapters.rtsp.models import redact_url
from adapters.sim import SimCameraFleet, sim_device_of
from adapters.sim.video import SimPlayer
from hub.runtime import Hub

__all__ = ["SimProbePool", "attach_sim_cameras"]

_FPS = 12.5


class SimProbePool:
    """The patrol's probe pool for a fleet of simulated cameras; other URLs go to `fallback`.

    A simulated stream is "decoded" by rendering its pictures, in worker threads,
    and reported as the RTSP probe reports a real camera, so the diagnosis, health
    tracking, evidence and events downstream are the product's own.
    """

    def __init__(
        self,
        fleet: SimCameraFleet,
        fallback: Any,
        *,
        frames: int = 8,
        analysis_width: int = 320,
        max_workers: int = 2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.fleet = fleet
        self.fallback = fallback
        self.frames = frames
        self.analysis_width = analysis_width
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="sim-probe")

    def owns(self, url: str) -> bool:
        """True when `url` is one of the fleet's simulated streams."""
        device_id = sim_device_of(url)
        return device_id is not None and device_id in self.fleet

    async def probe(
        self, url: str, *, frames: int | None = None, timeout_s: float | None = None
    ) -> StreamProbe:
        """Probe a simulated stream here, anything else with the real pool."""
        device_id = sim_device_of(url)
        if device_id is None or device_id not in self.fleet:
            result: StreamProbe = await self.fallback.probe(url, frames=frames, timeout_s=timeout_s)
            return result
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._probe_sim, url, device_id, frames or self.frames
        )

    def _probe_sim(self, url: str, device_id: str, count: int) -> StreamProbe:
        started = time.perf_counter()
        pictures = self.fleet.burst(device_id, self._clock(), count, fps=_FPS)
        safe_url = redact_url(url)
        if not pictures:
            return StreamProbe(
                url=safe_url,
                ok=False,
                failure=ProbeFailure.UNREACHABLE,
                error="connection refused (simulated camera offline)",
                frames_requested=count,
                total_time_s=time.perf_counter() - started,
            )
        height, width = pictures[0].shape[:2]
        scaled_height = max(2, round(height * self.analysis_width / width / 2) * 2)
        analysed = tuple(
            np.asarray(
                cv2.resize(p, (self.analysis_width, scaled_height), interpolation=cv2.INTER_AREA),
                dtype=np.uint8,
            )
            for p in pictures
        )
        encoded, jpeg = cv2.imencode(".jpg", pictures[-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
        decoded_s = time.perf_counter() - started
        return StreamProbe(
            url=safe_url,
            ok=True,
            open_latency_s=0.0,
            codec="h264",
            width=width,
            height=height,
            fps=_FPS,
            frames_requested=count,
            frames_decoded=len(analysed),
            decode_time_s=decoded_s,
            total_time_s=decoded_s,
            frames=analysed,
            snapshot_jpeg=bytes(jpeg.tobytes()) if encoded else None,
        )

    async def aclose(self) -> None:
        """Release the workers and the fallback pool."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        await self.fallback.aclose()


def attach_sim_cameras(hub: Hub, fleet: SimCameraFleet) -> None:
    """Let the hub's live view, patrol and alarm snapshots serve the fleet's streams.

    Alarm snapshots take the product's path (linked cameras, one RTSP frame, size
    check, stored as alarm media); only the frame itself comes from the simulation.
    """

    def open_player(url: str, passthrough: bool) -> SimPlayer | None:
        # Simulated pictures are encoded for every viewer: nothing to pass through.
        device_id = sim_device_of(url)
        return SimPlayer(fleet, device_id) if device_id is not None and device_id in fleet else None

    hub.live.relay.add_source(open_player)
    patrol = hub.patrol
    current: Any = patrol._pool
    if current is None:
        return  # the patrol is off: nothing probes, so nothing to serve
    sim_pool = (
        current
        if isinstance(current, SimProbePool)
        else SimProbePool(
            fleet,
            current,
            frames=patrol.settings.frames,
            analysis_width=patrol.settings.thresholds.analysis_width,
        )
    )
    patrol._pool = sim_pool  # type: ignore[assignment]  # same probe() as ProbePool
    real_grab = hub.alarms.frame_grabber

    async def grab(url: str, timeout_s: float) -> StreamProbe:
        if sim_pool.owns(url):
            return await sim_pool.probe(url, frames=1, timeout_s=timeout_s)
        return await real_grab(url, timeout_s)

    hub.alarms.use_frame_grabber(grab)
