"""Linkage when an alarm opens: snapshots of the linked cameras, stored as alarm media.

The camera's snapshot URL is fetched through the hardened camera HTTP client
(only to the URL's own host and port, answering a Basic or Digest challenge
with the stored login); without one, or when it fails, one decoded frame of
its RTSP stream. A camera the hub already pulls into a pre-alarm buffer gives its
picture from there (`buffered_snapshots`) before an RTSP session of its own is
opened: an alarm storm at a school must not open dozens of sessions to cameras
that allow a few. A camera with neither URL (a GB/T 28181 channel) is asked of
the buffers and the `stream_snapshots` sources, which take a frame from a stream
the hub receives.
Runs after the opening committed, in tasks of its own; a failure is logged and
never touches the alarm. (A broadcast is queued as an
outbox row for the `broadcast` sink by the batch itself.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from adapters.onvif.http import CameraHttp, CameraRequestError, ResponseTooLarge
from adapters.onvif.security import ForeignHostRefused
from adapters.rtsp import ProbeFailure, StreamProbe, probe_stream
from camera_registry.logins import LoginBudget, login_version
from camera_registry.urls import redact_url, with_credentials
from hub.alarms.config import LinkageSettings
from hub.alarms.media_storage import add_media
from hub.alarms.storage import AlarmDevice
from hub.clock import Clock, utcnow
from hub.devices import storage as devices_repo
from hub.storage.base import SqlStore

__all__ = [
    "CredentialResolver",
    "FrameGrabber",
    "SnapshotFetcher",
    "SnapshotLinkage",
    "StreamSnapshot",
    "grab_frame",
]

log = logging.getLogger(__name__)

#: How long a stopping hub waits for snapshot work already started.
_STOP_GRACE_S = 5.0

#: (device) -> (content type, bytes) or None; replaces the built-in HTTP/RTSP fetch.
SnapshotFetcher = Callable[[AlarmDevice], Awaitable[tuple[str, bytes] | None]]
#: (device id, sealed credentials) -> (username, password); the registry's cipher opens them.
CredentialResolver = Callable[[str, bytes], tuple[str, str] | None]
#: Decodes one frame of an RTSP URL within a timeout (the snapshot's probe).
FrameGrabber = Callable[[str, float], Awaitable[StreamProbe]]
#: (device id, timeout s) -> a JPEG of a device that has no URL of its own, taken from a
#: stream the hub receives (a GB/T 28181 channel), or None when it does not serve it.
StreamSnapshot = Callable[[str, float], Awaitable[bytes | None]]
#: RTSP frame grabs at once per engine (each decodes in a worker thread).
_RTSP_GRABS = 2
#: Snapshots from received streams at once (each may start a stream: a GB/T 28181 INVITE).
_STREAM_GRABS = 4


def _origin(url: str) -> tuple[str, int]:
    """The host and port a snapshot URL names: the request may go there and nowhere else."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def grab_frame(url: str, timeout_s: float) -> StreamProbe:
    """One decoded frame of `url`, in a worker thread (the default `FrameGrabber`)."""
    return await asyncio.to_thread(probe_stream, url, frames=1, timeout_s=timeout_s)


class SnapshotLinkage:
    """Takes and stores snapshots of an opened alarm's linked cameras."""

    def __init__(
        self,
        store: SqlStore,
        settings: LinkageSettings,
        *,
        clock: Clock = utcnow,
        snapshot_fetcher: SnapshotFetcher | None = None,
        credentials: CredentialResolver | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._custom_snapshot = snapshot_fetcher
        self.credentials = credentials
        self.frame_grabber: FrameGrabber = grab_frame
        self.http: CameraHttp | None = None
        #: The per-camera login budget shared with the patrol and ONVIF probes.
        self.logins: LoginBudget | None = None
        #: Snapshots of devices without URLs, from streams the hub receives.
        self.stream_snapshots: list[StreamSnapshot] = []
        #: Pictures of cameras the hub already pulls (pre-alarm buffers): asked before
        #: opening an RTSP session of the snapshot's own.
        self.buffered_snapshots: list[StreamSnapshot] = []
        self._rtsp_slots = asyncio.Semaphore(_RTSP_GRABS)
        self._stream_slots = asyncio.Semaphore(_STREAM_GRABS)
        self._linkage_tasks: set[asyncio.Task[None]] = set()

    def snapshots(self, alarm_id: uuid.UUID, cameras: Sequence[str]) -> None:
        """Start taking snapshots of `cameras` for the alarm (after its opening committed)."""
        if cameras and self._settings.snapshots:
            self._spawn(self._take_snapshots(alarm_id, cameras))

    async def stop(self, *, grace_s: float = _STOP_GRACE_S) -> None:
        """Give snapshot work `grace_s` to finish, cancel what is left (queued behind
        unreachable cameras, say), then close the camera HTTP client.

        A snapshot is an attachment: the alarm is committed without it, and a stop
        must not wait for hundreds of grabs queued after an alarm storm."""
        if self._linkage_tasks:
            _, pending = await asyncio.wait(set(self._linkage_tasks), timeout=grace_s)
            if pending:
                log.warning(
                    "stopping: snapshot work of %d alarm(s) cancelled (cameras still being "
                    "asked); those alarms are stored without the missing snapshots",
                    len(pending),
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self.http is not None:
            client, self.http = self.http, None
            await client.aclose()

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run(), name="alarm-linkage")
        self._linkage_tasks.add(task)
        task.add_done_callback(self._linkage_tasks.discard)

    async def _take_snapshots(self, alarm_id: uuid.UUID, cameras: Sequence[str]) -> None:
        try:
            async with self._store.reading() as tx:
                dialect = self._store.dialect
                present = await devices_repo.device_columns(tx, dialect)
                linked = await devices_repo.alarm_devices(tx, dialect, cameras, present)
        except Exception:
            log.exception("cannot read linked cameras of alarm %s", alarm_id)
            return
        for camera in cameras:
            device = linked.get(camera)
            if device is None:
                log.info("linked camera %s of alarm %s is not registered", camera, alarm_id)
                continue
            try:
                shot = await self._snapshot(device)
                if shot is None:
                    log.warning("no snapshot of %s for alarm %s", camera, alarm_id)
                    continue
                content_type, data, source = shot
                await add_media(
                    self._store, alarm_id, camera, content_type, data, self._clock(), source
                )
            except Exception:
                log.exception("snapshot of %s for alarm %s failed", camera, alarm_id)

    async def _snapshot(self, device: AlarmDevice) -> tuple[str, bytes, str] | None:
        """(content type, bytes, source): the snapshot URL first, else one RTSP frame."""
        if self._custom_snapshot is not None:
            shot = await self._custom_snapshot(device)
            return None if shot is None else (*shot, "snapshot")
        if not device.snapshot_url and not device.rtsp_urls:
            return await self._received_frame(
                device, [*self.buffered_snapshots, *self.stream_snapshots]
            )
        may_log_in = self._may_log_in(device)
        if device.snapshot_url and may_log_in:
            fetched = await self._http_snapshot(device)
            if fetched is not None:
                return (*fetched, "snapshot")
        # A camera the hub already pulls: its picture, without a second RTSP session.
        buffered = await self._received_frame(device, self.buffered_snapshots)
        if buffered is not None:
            return buffered
        if not may_log_in:
            # Cameras lock out an address after a few refused logins: a camera whose
            # login ran out of its budget is not asked again for a snapshot.
            log.warning(
                "no snapshot of %s: %s",
                device.device_id,
                self.logins.blocked_reason(device.device_id) if self.logins else "",
            )
            return None
        if device.rtsp_urls:
            frame = await self._rtsp_snapshot(device)
            if frame is not None:
                return "image/jpeg", frame, "rtsp-frame"
        return None

    async def _received_frame(
        self, device: AlarmDevice, sources: Sequence[StreamSnapshot]
    ) -> tuple[str, bytes, str] | None:
        """A picture from a stream the hub receives (its buffer's pull, a GB/T 28181
        channel's session); None when no source serves the device."""
        for source in sources:
            async with self._stream_slots:
                jpeg = await source(device.device_id, self._settings.snapshot_timeout_s)
            if jpeg is not None and len(jpeg) <= self._settings.snapshot_max_bytes:
                return "image/jpeg", jpeg, "stream-frame"
        return None

    def _may_log_in(self, device: AlarmDevice) -> bool:
        if self.logins is None or device.credentials is None:
            return True
        version = login_version(device.credentials)
        return self.logins.may_try(device.device_id, version, self._clock())

    def _login_refused(self, device: AlarmDevice) -> None:
        if self.logins is not None and device.credentials is not None:
            version = login_version(device.credentials)
            self.logins.refused(device.device_id, version, self._clock(), "snapshot")

    def _login_accepted(self, device: AlarmDevice) -> None:
        if self.logins is not None and device.credentials is not None:
            self.logins.accepted(device.device_id)

    def _login(self, device: AlarmDevice) -> tuple[str, str] | None:
        if device.credentials is None or self.credentials is None:
            return None
        return self.credentials(device.device_id, device.credentials)

    async def _rtsp_snapshot(self, device: AlarmDevice) -> bytes | None:
        """One decoded frame of the camera's main stream as JPEG (in a worker thread)."""
        url = device.rtsp_urls[0]
        login = self._login(device)
        if login is not None:
            url = with_credentials(url, *login)
        linkage = self._settings
        async with self._rtsp_slots:
            probe = await self.frame_grabber(url, linkage.snapshot_timeout_s)
        if probe.failure is ProbeFailure.AUTH_FAILED:
            self._login_refused(device)
        elif probe.ok:
            self._login_accepted(device)
        if not probe.ok or probe.snapshot_jpeg is None:
            log.warning(
                "RTSP frame of %s (%s) failed: %s",
                device.device_id,
                redact_url(url),
                probe.failure,
            )
            return None
        if len(probe.snapshot_jpeg) > linkage.snapshot_max_bytes:
            log.warning("RTSP frame of %s is too large", device.device_id)
            return None
        return probe.snapshot_jpeg

    async def _http_snapshot(self, device: AlarmDevice) -> tuple[str, bytes] | None:
        """GET the device's snapshot URL (size-capped, time-bounded)."""
        if not device.snapshot_url:
            return None
        linkage = self._settings
        if self.http is None:
            self.http = CameraHttp(max_connections=64)
        url = device.snapshot_url
        try:
            answer = await self.http.get(
                url,
                pinned=_origin(url),
                deadline=linkage.snapshot_timeout_s,
                login=self._login(device),
                max_bytes=linkage.snapshot_max_bytes,
            )
        except ResponseTooLarge:
            log.warning("snapshot of %s is too large", device.device_id)
            return None
        except (CameraRequestError, ForeignHostRefused) as exc:
            log.warning("snapshot of %s failed: %s", device.device_id, exc)
            return None
        if answer.status == 401:
            self._login_refused(device)
        if answer.status != 200:
            log.warning("snapshot of %s: HTTP %d", device.device_id, answer.status)
            return None
        self._login_accepted(device)
        content_type = (answer.content_type or "image/jpeg").split(";")[0].strip()
        if not content_type.startswith("image/"):
            log.warning("snapshot of %s is not an image", device.device_id)
            return None
        return content_type, answer.body

    async def wait_for_linkage(self) -> None:
        """Wait for snapshot work started so far (tests, shutdown)."""
        while self._linkage_tasks:
            await asyncio.gather(*list(self._linkage_tasks), return_exceptions=True)
