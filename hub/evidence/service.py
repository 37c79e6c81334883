"""Evidence service: pre-alarm buffers of linked cameras, a clip per camera on alarm.

* **Buffers.** Every enabled camera that an alarm point links (and every camera
  tagged `prebuffer`) is pulled once (`adapters.media.PacketPull`) into a
  `PacketRing` at least `prebuffer_s` deep: packets as received, no decoding.
  The set is re-read when the registry changes and every `refresh_s`. A camera
  without an RTSP URL is buffered when a resolver (`add_stream_urls`) gives it a
  source URL, e.g. `gb28181://<channel>` for a GB/T 28181 channel.
* **Clips.** The service follows the bus of committed alarm changes. When an
  alarm opens with linked cameras (the linkage its rule planned), each camera
  gets a clip row at once (`recording`); the packets from `prebuffer_s` before
  the press are taken from the ring right away, those up to `postroll_s` after
  it as they arrive; the clip is then remuxed to MP4 (no re-encoding) in a
  worker thread, digested (SHA-256, plus SHA-1 for CAP) and marked `complete`.
  A camera without a buffer gets a `failed` row saying so.
* **Retention.** Clips expire `retention_days` after they were cut, whatever
  the event retention is; the hourly sweep removes row and file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from adapters.media import MediaPacket, PacketRing, PacketSource, StreamHeader, key_picture
from adapters.media.spill import SpillRing
from adapters.rtsp import jpeg_of
from adapters.webrtc import SharedPlayer, SharedVideoTrack
from camera_registry.models import Credentials
from camera_registry.urls import with_credentials
from hub.alarms.storage import AlarmChange, get_alarm
from hub.auth import audit_storage as audit_log
from hub.auth.principal import Principal
from hub.bus import EventBus, SubscriptionOverflow
from hub.devices.storage import camera_source
from hub.evidence import storage
from hub.evidence.buffers import CameraBuffer, RingHolds, SourceOpener, open_pull
from hub.evidence.config import EvidenceSettings
from hub.evidence.recording import record_clip
from hub.evidence.storage import ClipRow
from hub.storage import SqlStore

__all__ = ["ClipListener", "EvidenceService", "PrebufferState", "Shortfall"]

log = logging.getLogger(__name__)

#: Told, per alarm, about the evidence entries of its clips once they are complete
#: (the hub adds them to the alarm as a revision, so every sink delivers them).
ClipListener = Callable[[uuid.UUID, list[dict[str, object]]], Awaitable[object]]
CredentialOpener = Callable[[str, bytes], Credentials]
#: Source URLs of cameras without an RTSP URL (those it serves among the ids given).
StreamUrls = Callable[[Sequence[str]], Awaitable[dict[str, str]]]

# The ring holds this many seconds of pictures more than the pre-roll: the press is
# placed by arrival, and the key frame before the pre-roll may be a GOP further back.
_SLACK_S = 5.0
_LATE_S = 10.0
_START_SPACING_S = 0.05
# DB15/T 3968: at least two external cameras linked to each one-touch alarm.
_MIN_CAMERAS = 2
_RETENTION_EVERY_S = 3600.0
# Clips are written while they record (a few milliseconds a second each), and finished
# (index, digests) off the event loop. A storm films 70 cameras at once on a node whose
# pull threads hold the interpreter lock between packets: each clip's small jobs spend
# most of their time waiting for it, so more threads than cores keep them moving.
_WRITER_THREADS = 16


@dataclass(frozen=True, slots=True)
class PrebufferState:
    """One camera's buffer as the maintenance view shows it."""

    camera_id: str
    connected: bool
    seconds: float
    bytes: int
    packets: int
    overflow_drops: int
    last_error: str | None
    spilled_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A school panic button that falls short of the regional rule, and why."""

    device_id: str
    name: str
    jurisdiction_path: str | None
    problems: tuple[str, ...]  # no_address, no_coordinates, too_few_cameras
    usable_cameras: int
    missing_cameras: tuple[str, ...]
    cameras_without_stream: tuple[str, ...]


def _unreachable(url: str) -> bool:
    """A host under `.invalid` never resolves (RFC 2606; simulated cameras use it)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "invalid" or host.endswith(".invalid")


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class EvidenceService:
    """Keeps the pre-alarm buffers and cuts the evidence clips."""

    def __init__(
        self,
        store: SqlStore,
        settings: EvidenceSettings,
        data_dir: Path,
        *,
        alarm_changes: EventBus[AlarmChange] | None = None,
        open_credentials: CredentialOpener | None = None,
        base_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.data_dir = data_dir
        self.directory = data_dir / settings.directory
        self._changes = alarm_changes
        self._open_credentials = open_credentials
        self._clock = clock
        self.base_url = base_url.rstrip("/")
        self._buffers: dict[str, CameraBuffer] = {}
        # URL scheme -> how a camera's source opens; PyAV's pull for the rest.
        self._openers: dict[str, SourceOpener] = {}
        self._stream_urls: list[StreamUrls] = []
        self._listeners: list[ClipListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._clip_tasks: set[asyncio.Task[None]] = set()
        self._refresh_now = asyncio.Event()
        self._completions = storage.Completions(store)
        # Clip reading and writing: threads of its own (see hub/evidence/recording.py).
        self._writers = ThreadPoolExecutor(_WRITER_THREADS, thread_name_prefix="evidence-clip")
        self._writers.shutdown(wait=False)
        self._started = False
        self._stopping = False
        #: Which cameras this node buffers and films (all, until a cluster says otherwise).
        self._is_mine: Callable[[str], bool] = lambda _: True

    # -- wiring -------------------------------------------------------------

    def use_assignment(self, is_mine: Callable[[str], bool]) -> None:
        """Buffer, and cut clips of, only the cameras `is_mine` names (this node's share)."""
        self._is_mine = is_mine

    def on_clips(self, listener: ClipListener) -> None:
        """Call `listener` with an alarm's evidence entries when its clips are complete."""
        self._listeners.append(listener)

    def open_sources(self, scheme: str, opener: SourceOpener) -> None:
        """Buffer cameras whose stream URL has `scheme` through `opener` (a source other
        than a PyAV pull, e.g. a GB/T 28181 channel); call before `start`."""
        self._openers[scheme.lower()] = opener

    def _source(self, camera_id: str, url: str) -> PacketSource:
        scheme = url.partition(":")[0].lower()
        opener = self._openers.get(scheme, open_pull)
        return opener(camera_id, url, f"camera {camera_id}")

    def request_refresh(self, *_: object) -> None:
        """Re-read which cameras to buffer soon (the registry changed)."""
        self._refresh_now.set()

    def buffered(self) -> list[PrebufferState]:
        """Every buffer's depth now."""
        out = []
        for camera_id, buffer in sorted(self._buffers.items()):
            stats = buffer.ring.stats()
            out.append(
                PrebufferState(
                    camera_id=camera_id,
                    connected=buffer.source.connected,
                    seconds=stats.span_s,
                    bytes=stats.bytes,
                    packets=stats.packets,
                    overflow_drops=stats.overflow_drops,
                    spilled_bytes=stats.spilled_bytes,
                    last_error=buffer.source.last_error,
                )
            )
        return out

    def ring(self, camera_id: str) -> PacketRing | None:
        """The buffer of one camera, if it is buffered."""
        buffer = self._buffers.get(camera_id)
        return buffer.ring if buffer else None

    def shared_player(self, camera_id: str) -> SharedPlayer | None:
        """A live-view player fed by this camera's buffer pull (H.264 passthrough), so
        watching a buffered camera opens no second connection; None when not buffered."""
        buffer = self._buffers.get(camera_id)
        header = buffer.ring.header if buffer else None
        if buffer is None or header is None or "h264" not in header.codecs:
            return None
        pull = buffer.source

        def tap(packet: MediaPacket | None, _: StreamHeader | None) -> None:
            if packet is not None and packet.video:
                track.feed(packet.data, packet.pts, packet.time_base, packet.keyframe)

        track = SharedVideoTrack(on_stop=lambda: pull.remove_tap(tap))
        pull.add_tap(tap)
        return SharedPlayer(track)

    def pull(self, camera_id: str) -> PacketSource | None:
        """The running source of one camera, if it is buffered (for other taps)."""
        buffer = self._buffers.get(camera_id)
        return buffer.source if buffer else None

    async def snapshot(self, camera_id: str, timeout_s: float) -> bytes | None:
        """A buffered camera's newest key frame as JPEG, decoded from its ring: a snapshot
        that opens no second session to the camera; None when it is not buffered here or
        its ring holds no picture yet."""
        buffer = self._buffers.get(camera_id)
        if buffer is None:
            return None
        ring = buffer.ring

        def take() -> bytes | None:
            header, newest = ring.header, ring.newest_received
            if header is None or newest is None:
                return None
            packets, _ = ring.window(newest)  # from the newest key frame on
            picture = key_picture(header, packets)
            return None if picture is None else jpeg_of(picture)

        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.to_thread(take)
        except TimeoutError:
            return None

    async def start(self) -> None:
        """Start buffering and following alarm openings."""
        if not self.settings.enabled or self._started:
            return
        self._started = True
        self._writers = ThreadPoolExecutor(_WRITER_THREADS, thread_name_prefix="evidence-clip")
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        # The first read of the buffered cameras runs in the refresh loop at once, so a
        # hub with thousands of them is not held up starting their pulls.
        self._refresh_now.set()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="evidence-refresh"))
        self._tasks.append(asyncio.create_task(self._retention_loop(), name="evidence-retention"))
        if self._changes is not None:
            self._tasks.append(asyncio.create_task(self._follow(self._changes), name="evidence"))

    async def stop(self) -> None:
        """Stop following alarms, let running clips finish, stop every pull."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        # Clips being recorded end now with what they have (a shorter post-roll).
        self._stopping = True
        if self._clip_tasks:
            await asyncio.gather(*list(self._clip_tasks), return_exceptions=True)
        buffers, self._buffers = list(self._buffers.values()), {}
        await asyncio.gather(*(asyncio.to_thread(b.close) for b in buffers), return_exceptions=True)
        self._writers.shutdown(wait=False)
        self._started = False
        self._stopping = False

    async def wait_for_clips(self) -> None:
        """Wait for the clips being recorded now (tests, shutdown)."""
        while self._clip_tasks:
            await asyncio.gather(*list(self._clip_tasks), return_exceptions=True)

    # -- buffers ------------------------------------------------------------

    def add_stream_urls(self, resolver: StreamUrls) -> None:
        """Buffer cameras without an RTSP URL that `resolver` gives a source URL (e.g.
        `gb28181://<channel>`, opened by the source registered for its scheme)."""
        self._stream_urls.append(resolver)

    def _url(self, camera: storage.BufferedCamera) -> str | None:
        if camera.rtsp_url is None:
            return None
        if camera.sealed_credentials is None or self._open_credentials is None:
            return camera.rtsp_url
        try:
            creds = self._open_credentials(camera.device_id, camera.sealed_credentials)
        except Exception:
            log.warning("evidence: credentials of %s do not decrypt", camera.device_id)
            return None
        return with_credentials(camera.rtsp_url, creds.username, creds.password.get_secret_value())

    async def refresh(self) -> None:
        """Start buffers for newly linked cameras, stop those no longer wanted."""
        async with self.store.reading() as tx:
            cameras = await storage.buffered_cameras(tx, self.settings.prebuffer_tag)
        wanted: dict[str, str] = {}
        for camera in cameras:
            if camera.rtsp_url is None or _unreachable(camera.rtsp_url):
                continue
            if not self._is_mine(camera.device_id):
                continue
            url = self._url(camera)
            if url is not None:
                wanted[camera.device_id] = url
        bare = [c.device_id for c in cameras if c.rtsp_url is None and self._is_mine(c.device_id)]
        for resolver in self._stream_urls if bare else []:
            for camera_id, url in (await resolver(bare)).items():
                wanted.setdefault(camera_id, url)
        gone = [b for cid, b in self._buffers.items() if cid not in wanted or wanted[cid] != b.url]
        for buffer in gone:
            del self._buffers[buffer.camera_id]
            await asyncio.to_thread(buffer.close)
        for camera_id, url in wanted.items():
            if camera_id not in self._buffers:
                ring = await asyncio.to_thread(self._ring, camera_id)
                buffer = CameraBuffer(camera_id, url, ring, self._source(camera_id, url))
                self._buffers[camera_id] = buffer
                buffer.source.start()
                # Opened at a bounded rate: a burst of simultaneous sessions is refused by
                # some servers (and NVRs serving many channels).
                await asyncio.sleep(_START_SPACING_S)
        if gone or len(self._buffers) != len(wanted):
            log.info("evidence: buffering %d cameras", len(self._buffers))

    def _ring(self, camera_id: str) -> PacketRing:
        """A camera's ring: the pre-roll plus slack (it starts at a key frame), in memory
        or spilled to disk (`spill_directory`)."""
        keep_s = self.settings.prebuffer_s + _SLACK_S
        max_bytes = self.settings.max_buffer_mib << 20
        if self.settings.spill_directory is None:
            return PacketRing(keep_s, max_bytes)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in camera_id)
        directory = self.data_dir / self.settings.spill_directory / name.lstrip(".")
        return SpillRing(keep_s, max_bytes, directory, self.settings.spill_max_mib << 20)

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), self.settings.refresh_s)
            self._refresh_now.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("evidence: refreshing the buffered cameras failed; will retry")

    # -- clips --------------------------------------------------------------

    async def _follow(self, changes: EventBus[AlarmChange]) -> None:
        while True:
            subscription = changes.subscribe(maxsize=10000, name="evidence")
            try:
                async for change in subscription:
                    # A device fault (maintenance) is not an incident to film.
                    if change.action == "open" and change.category != "maintenance":
                        self._spawn(self.record(change))
            except SubscriptionOverflow:
                log.error("evidence: fell behind the alarm changes; following again")
            finally:
                subscription.close()

    def _spawn(self, work: Awaitable[object]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("evidence: recording clips failed")

        task = asyncio.create_task(run(), name="evidence-clip")
        self._clip_tasks.add(task)
        task.add_done_callback(self._clip_tasks.discard)

    async def record(self, change: AlarmChange) -> list[ClipRow]:
        """Cut a clip of each camera the opened alarm links; the clips as they ended."""
        now = self._clock()
        opened = change.at.timestamp()
        # The press as this hub saw it: the alarm's change time, unless a wrong device
        # clock put it in the future or further back than the buffer reaches.
        press = opened if now - self.settings.prebuffer_s <= opened <= now else now
        holds = RingHolds(self._buffers.values())  # until each clip has its pre-roll
        try:
            async with self.store.reading() as tx:
                stored = await get_alarm(tx, self.store.dialect, change.alarm_id)
            linkage = (stored.details.get("linkage") if stored else None) or {}
            # Another node's cameras are filmed by that node, from its own buffer.
            linked = [str(c) for c in linkage.get("snapshot_cameras") or []]
            cameras = [c for c in linked if self._is_mine(c)]
            holds.keep_only(cameras)
            results = await asyncio.gather(
                *(self._record_camera(change, camera, press, holds) for camera in cameras)
            )
        finally:
            holds.release_all()
        rows = [row for row in results if row is not None]
        entries = clip_entries(rows, self.base_url)
        if entries:
            for listener in self._listeners:
                try:
                    await listener(change.alarm_id, entries)
                except Exception:
                    log.exception("evidence: announcing the clips of %s failed", change.alarm_id)
        return rows

    async def _record_camera(
        self, change: AlarmChange, camera: str, press: float, holds: RingHolds
    ) -> ClipRow | None:
        clip_id = uuid.uuid4()
        created = _utc(self._clock())
        expires = created + timedelta(days=self.settings.retention_days)
        async with self.store.transaction() as tx:
            fresh = await storage.insert_clip(
                tx,
                clip_id,
                change.alarm_id,
                camera,
                change.jurisdiction_path,
                _utc(press),
                created,
                expires,
            )
        if not fresh:
            holds.release(camera)
            return None
        try:
            reason = await self._capture(clip_id, change.alarm_id, camera, press, holds)
        except Exception as exc:
            log.exception("evidence: clip of %s for alarm %s failed", camera, change.alarm_id)
            reason = f"recording failed: {type(exc).__name__}"
        if reason is not None:
            log.warning("evidence: no clip of %s for alarm %s: %s", camera, change.alarm_id, reason)
            async with self.store.transaction() as tx:
                await storage.fail_clip(tx, clip_id, reason, _utc(self._clock()))
        async with self.store.reading() as tx:
            return await storage.clip(tx, clip_id)

    async def _capture(
        self, clip_id: uuid.UUID, alarm_id: uuid.UUID, camera: str, press: float, holds: RingHolds
    ) -> str | None:
        """Record, write and store one clip; the reason when there is none."""
        buffer = self._buffers.get(camera)
        if buffer is None:
            return "the camera has no pre-alarm buffer (no stream, or not linked yet)"
        path = self.directory / f"{clip_id}.mp4"
        recorded = await record_clip(
            buffer,
            path,
            press=press,
            pre_s=self.settings.prebuffer_s,
            post_s=self.settings.postroll_s,
            max_bytes=self.settings.max_clip_mib << 20,
            late_s=_LATE_S,
            title=f"alarm {alarm_id} camera {camera}",
            clock=self._clock,
            stopping=lambda: self._stopping,
            executor=self._writers,
            pre_roll_read=lambda: holds.release(camera),
        )
        if isinstance(recorded, str):
            return recorded
        written = recorded.file
        if written.skipped_tracks:
            log.warning(
                "evidence: clip of %s leaves out %s (MP4 cannot carry it)",
                camera,
                ", ".join(written.skipped_tracks),
            )
        header = buffer.ring.header
        kinds = zip(header.kinds, header.codecs, strict=False) if header else iter(())
        tracks = []
        for kind, codec in kinds:
            label = f"{kind}:{codec}"
            if label in written.skipped_tracks:
                continue
            # A transcoded track is named by what the clip holds (G.711 becomes AAC).
            transcoded = f"{label}->aac" in written.transcoded_tracks
            tracks.append(f"{kind}:aac" if transcoded else label)
        await self._completions.complete(
            storage.Completed(
                clip_id,
                start_at=_utc(recorded.start_received),
                end_at=_utc(recorded.end_received),
                seconds_before=recorded.press_offset_s,
                duration_s=written.duration_s,
                size=written.size,
                sha256=written.sha256,
                sha1=written.sha1,
                file_name=path.name,
                tracks=json.dumps(tracks),
                reason=recorded.shortfall(self.settings.postroll_s),
                now=_utc(self._clock()),
            )
        )
        return None

    # -- reading ------------------------------------------------------------

    async def clips(self, alarm_id: uuid.UUID) -> list[ClipRow]:
        """An alarm's clips (any state)."""
        async with self.store.reading() as tx:
            return await storage.clips_of(tx, alarm_id)

    async def clip(self, clip_id: uuid.UUID) -> ClipRow | None:
        """One clip."""
        async with self.store.reading() as tx:
            return await storage.clip(tx, clip_id)

    async def record_viewing(self, principal: Principal, row: ClipRow, *, download: bool) -> None:
        """Put one playing or download of a clip into the audit log."""
        async with self.store.transaction() as tx:
            await audit_log.record(
                tx,
                principal.actor,
                "evidence.download" if download else "evidence.play",
                str(row.alarm_id),
                principal.remote_addr,
                {"clip": str(row.id), "camera": row.camera_id},
            )

    async def alarm_path(self, alarm_id: uuid.UUID) -> tuple[str | None] | None:
        """(jurisdiction path,) of an alarm, None when there is no such alarm."""
        async with self.store.reading() as tx:
            stored = await get_alarm(tx, self.store.dialect, alarm_id)
        return None if stored is None else (stored.jurisdiction_path,)

    async def visible_cameras(self, principal: Principal) -> set[str]:
        """The buffered cameras `principal` may see."""
        async with self.store.reading() as tx:
            sources = [await camera_source(tx, cid) for cid in list(self._buffers)]
        return {s.device_id for s in sources if s and principal.can_see(s.jurisdiction_path)}

    async def shortfalls(self, principal: Principal) -> list[Shortfall]:
        """School panic buttons in `principal`'s scope that fall short of DB15/T 3968:
        no address, no coordinates, fewer than two linked cameras with a stream."""
        async with self.store.reading() as tx:
            buttons, cameras = await storage.school_buttons(tx)
        out = []
        for button in sorted(buttons, key=lambda b: (b.jurisdiction_path or "", b.device_id)):
            if not principal.can_see(button.jurisdiction_path):
                continue
            problems = []
            if not button.address:
                problems.append("no_address")
            if not button.has_coordinates:
                problems.append("no_coordinates")
            missing = [c for c in button.linked_cameras if c not in cameras]
            streamless = [c for c in button.linked_cameras if cameras.get(c) is False]
            usable = len(button.linked_cameras) - len(missing) - len(streamless)
            if usable < _MIN_CAMERAS:
                problems.append("too_few_cameras")
            if problems:
                out.append(
                    Shortfall(
                        device_id=button.device_id,
                        name=button.name,
                        jurisdiction_path=button.jurisdiction_path,
                        problems=tuple(problems),
                        usable_cameras=usable,
                        missing_cameras=tuple(missing),
                        cameras_without_stream=tuple(streamless),
                    )
                )
        return out

    def path_of(self, row: ClipRow) -> Path | None:
        """The file of a complete clip, if it is still on disk."""
        if row.state != "complete" or not row.file_name:
            return None
        path = self.directory / Path(row.file_name).name
        return path if path.is_file() else None

    # -- retention ----------------------------------------------------------

    async def apply_retention(self, now: datetime | None = None) -> int:
        """Remove clips past their retention (rows and files); how many went."""
        at = now or _utc(self._clock())
        removed = 0
        while True:
            async with self.store.reading() as tx:
                expired = await storage.expired_clips(tx, at)
            if not expired:
                return removed
            for _, file_name in expired:
                if file_name:
                    path = self.directory / Path(file_name).name
                    await asyncio.to_thread(path.unlink, missing_ok=True)
            async with self.store.transaction() as tx:
                await storage.delete_clips(tx, [clip_id for clip_id, _ in expired])
            removed += len(expired)

    async def _retention_loop(self) -> None:
        while True:
            try:
                removed = await self.apply_retention()
                if removed:
                    log.info("evidence: retention removed %d clips", removed)
            except Exception:
                log.exception("evidence: retention run failed; will retry")
            await asyncio.sleep(_RETENTION_EVERY_S)


def clip_entries(rows: Sequence[ClipRow], base_url: str) -> list[dict[str, object]]:
    """Evidence entries (URL, type, size, digests) of the complete clips among `rows`.

    `sha256` is the hub's digest of the file; `sha1` (hex) is the one CAP 1.2's
    `<digest>` defines.
    """
    return [
        {
            "kind": "video_clip",
            "camera_id": row.camera_id,
            "description": f"video of camera {row.camera_id}, "
            f"{round(row.seconds_before or 0)} s before the alarm to "
            f"{round((row.duration_s or 0) - (row.seconds_before or 0))} s after"
            + (f"; {row.reason}" if row.reason else ""),
            "url": f"{base_url}/api/evidence/clips/{row.id}",
            "type": row.content_type,
            "size": row.size,
            "sha256": row.sha256,
            "sha1": row.sha1,
            "start_at": row.start_at.isoformat() if row.start_at else None,
            "press_at": row.press_at.isoformat(),
            "seconds_before": row.seconds_before,
            "duration_s": row.duration_s,
        }
        for row in rows
        if row.state == "complete"
    ]
