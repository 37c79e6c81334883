"""Pictures and packets of GB/T 28181 channels for snapshots, the patrol and evidence.

A channel without an RTSP URL is seen through its one shared `MediaSession`: a
snapshot or a patrol probe joins the stream (INVITEs it when nobody watches, or
takes the pictures the running one already brings), decodes what it needs and
leaves (BYE after the last user). The patrol's burst becomes the same
`StreamProbe` an RTSP probe gives, so the video-quality diagnosis and the health
judgement are the ones every camera gets. The pre-alarm buffer stays a user of
the stream for as long as the channel is buffered (`open_source`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adapters.rtsp import ProbeFailure, StreamProbe, jpeg_of, probe_of_pictures
from camera_registry.gb28181 import is_gb_id
from hub.devices.registry import Registry
from hub.gb28181 import storage as repo
from hub.gb28181.media import GB_URL_PREFIX, MediaError
from hub.gb28181.stream_pull import ChannelPull
from hub.storage import SqlStore

if TYPE_CHECKING:
    from hub.gb28181.service import Gb28181Service

__all__ = ["ChannelPictures"]

log = logging.getLogger(__name__)


class ChannelPictures:
    """Snapshots, patrol probes and buffer pulls of GB/T 28181 channels through their
    shared stream."""

    def __init__(self, service: Gb28181Service, store: SqlStore, registry: Registry) -> None:
        self._service = service
        self._store = store
        self._registry = registry

    async def served(self, device_ids: Sequence[str]) -> set[str]:
        """Those of `device_ids` this hub can play now: cameras (a channel, or a camera
        registered as its own device) of a GB/T 28181 device registered here."""
        service = self._service
        if not service.enabled:
            return set()
        ids = [d for d in device_ids if is_gb_id(d) and self._is_camera(d)]
        found = {d for d in ids if d in service.sessions}
        rest = [d for d in ids if d not in found]
        if not rest:
            return found  # no query: this runs for every linked camera of every alarm
        owners = await repo.channel_owners(self._store, rest)
        return found | {channel for channel, owner in owners.items() if owner in service.sessions}

    def _is_camera(self, device_id: str) -> bool:
        cached = self._registry.lookup_cached(device_id)
        return cached is not None and cached.kind == "camera"

    async def stream_urls(self, device_ids: Sequence[str]) -> dict[str, str]:
        """The `gb28181://` source URL of each of `device_ids` this hub can play now."""
        return {
            device_id: f"{GB_URL_PREFIX}{device_id}" for device_id in await self.served(device_ids)
        }

    def open_source(self, camera_id: str, url: str, label: str) -> ChannelPull:
        """A `gb28181://` URL as a long-lived packet source (the pre-alarm buffer's)."""
        return ChannelPull(self._service.media, url.removeprefix(GB_URL_PREFIX) or camera_id)

    async def snapshot(self, device_id: str, timeout_s: float) -> bytes | None:
        """One picture of the channel as JPEG; None when it is not a playable channel
        or sends no picture within `timeout_s`."""
        if not await self.served([device_id]):
            return None
        try:
            picture = await self._service.media.picture(device_id, timeout_s)
        except MediaError as exc:
            log.warning("GB/T 28181: no snapshot of %s: %s", device_id, exc)
            return None
        return await asyncio.to_thread(jpeg_of, picture)

    async def probe(
        self, device_id: str, *, frames: int, timeout_s: float, analysis_width: int
    ) -> StreamProbe:
        """A burst of `frames` pictures of the channel, judged like an RTSP probe."""
        url = f"{GB_URL_PREFIX}{device_id}"
        media = self._service.media
        started = time.perf_counter()
        pictures: list[Any] = []
        failure: ProbeFailure | None = None
        error: str | None = None
        opened: float | None = None
        codec: str | None = None
        try:
            session = await media.acquire(device_id)
        except MediaError as exc:
            failure, error = ProbeFailure.UNREACHABLE, str(exc)[:200]
        else:
            opened = time.perf_counter() - started
            queue = session.subscribe()
            try:
                async with asyncio.timeout(timeout_s):
                    while len(pictures) < frames:
                        picture = await queue.get()
                        if picture is None:
                            failure, error = ProbeFailure.STALLED, "the stream ended"
                            break
                        pictures.append(picture)
            except TimeoutError:
                failure = ProbeFailure.STALLED if pictures else ProbeFailure.NO_FRAMES
                error = f"{len(pictures)} of {frames} pictures within {timeout_s:g} s"
            finally:
                codec = session.codec
                session.unsubscribe(queue)
                await media.release(session)
        return await asyncio.to_thread(
            probe_of_pictures,
            url,
            pictures,
            frames_requested=frames,
            codec=codec,
            open_latency_s=opened,
            total_time_s=time.perf_counter() - started,
            failure=failure,
            error=error,
            analysis_width=analysis_width,
        )
