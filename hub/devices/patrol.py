"""The camera patrol: probe every enabled camera once per interval and judge its health.

Each pass takes the enabled cameras with an RTSP URL, the longest unprobed
first, and probes them with bounded concurrency (`ProbePool` threads; decode
and diagnosis never run on the event loop). Each probe becomes:

- a health sample (what the probe and the video-quality diagnosis found);
- evidence for the camera's `HealthTracker` (online / degraded / offline,
  offline only after `policy.failures_to_offline` failures in a row);
- on a transition, a history row with its reason and a `health.<state>` event;
- on a newly confirmed picture fault, a `vqd.<check>` event with the score, the
  threshold, the explanation and an evidence snapshot id; `vqd.ok` when the
  picture is fault-free again.

A camera that refuses the stored login (RTSP 401/403), or demands one where none
is stored, is reachable but unseen: it is `degraded` with the reason code
`auth.credentials_rejected` and a `device.credentials_rejected` event (a
maintenance fault: check the stored login), never a picture fault or video loss;
`device.credentials_accepted` follows once the login opens again. Each refusal
counts in the camera's login budget (`camera_registry.logins`), shared with the
other protocols: a camera whose login is `auth_failed` is not probed with it
again before the budget allows (hourly, or at once when the stored login changes).

What one probe means (judging, learning the baseline, events) is
`hub.devices.patrol_assess`; this module schedules, probes and stores.

Samples, transitions, evidence and baselines commit in one transaction; the
events then go through the hub's writer (so the alarm engine sees them).
After a restart every camera is `unknown` until new evidence arrives: the
hub's own down time is neither online nor offline time in the KPIs.

A camera without an RTSP URL is probed through a `StreamSource` that serves it
(a GB/T 28181 channel through its shared stream), judged the same way; one that no
source serves is left out of the pass.

Which stream is probed: the camera's sub-stream where it has one (decode is
the bottleneck, and a sub-stream decodes 5-10x faster). The rule, in order:
the first URL whose path or query names a sub-stream (`sub`, `102`,
`stream2`, `subtype=1`, but not `subtype=0`); else the second URL
(registries list the main stream first); else the only URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

from adapters.rtsp import (
    ProbeFailure,
    ProbePool,
    SceneReference,
    StreamProbe,
    VqdBaseline,
)
from camera_registry.health import HealthTracker
from camera_registry.logins import LoginBudget, login_version
from camera_registry.models import HealthState
from camera_registry.urls import with_credentials
from hub.clock import utcnow
from hub.crypto import CredentialCipher
from hub.devices.health_storage import (
    HealthRepository,
    TransitionRow,
)
from hub.devices.patrol_assess import (
    CREDENTIALS_ACCEPTED_KIND,
    CREDENTIALS_FAULT,
    CREDENTIALS_REJECTED_KIND,
    Assessment,
    CameraMemory,
    ProbeAssessor,
    evidence_json,
    judge,
)
from hub.devices.patrol_config import PatrolSettings
from hub.devices.patrol_progress import PatrolProgress
from hub.devices.storage import PatrolTarget
from hub.metrics import Metrics
from hub.storage import SqlStore
from hub.writer import EventWriter

__all__ = [
    "CREDENTIALS_ACCEPTED_KIND",
    "CREDENTIALS_FAULT",
    "CREDENTIALS_REJECTED_KIND",
    "CredentialDecryptor",
    "PatrolProgress",
    "PatrolService",
    "StreamSource",
    "camera_login",
    "choose_stream_url",
    "judge",
]

log = logging.getLogger(__name__)

#: Turns a device's stored (encrypted) credentials into (username, password):
#: called with the device id (the ciphertext's associated data) and the blob.
CredentialDecryptor = Callable[[str, bytes], tuple[str, str] | None]
Clock = Callable[[], datetime]

# "subtype=0" (Dahua main stream) names the main stream, not a sub-stream.
_SUB_STREAM = re.compile(r"sub(?!type=0)|(?<!\d)102(?!\d)|stream2", re.IGNORECASE)
_RESTART_REASON = "hub started: no evidence yet since start-up"
_PROGRESS_EVERY_S = 2.0


class StreamSource(Protocol):
    """Pictures of cameras without RTSP URLs from a stream the hub receives itself."""

    async def served(self, device_ids: Sequence[str]) -> set[str]:
        """Those of `device_ids` this source can probe now."""
        ...

    async def probe(
        self, device_id: str, *, frames: int, timeout_s: float, analysis_width: int
    ) -> StreamProbe:
        """A burst of pictures of one camera, as an RTSP probe reports it."""
        ...


def camera_login(cipher: CredentialCipher) -> CredentialDecryptor:
    """A decryptor of stored camera credentials through the registry's cipher."""

    def login(device_id: str, blob: bytes) -> tuple[str, str]:
        credentials = cipher.open(device_id, blob)
        return credentials.username, credentials.password.get_secret_value()

    return login


def choose_stream_url(urls: Sequence[str]) -> str:
    """The URL to patrol: a named sub-stream, else the second URL, else the first."""
    if not urls:
        raise ValueError("no RTSP URL")
    for url in urls:
        parts = urlsplit(url)
        if _SUB_STREAM.search(parts.path) or _SUB_STREAM.search(parts.query):
            return url
    return urls[1] if len(urls) > 1 else urls[0]


class PatrolService:
    """Runs patrol passes on a schedule (or on demand) and records what they find."""

    def __init__(
        self,
        settings: PatrolSettings,
        *,
        store: SqlStore,
        writer: EventWriter,
        metrics: Metrics | None = None,
        clock: Clock = utcnow,
        decrypt: CredentialDecryptor | None = None,
        node: str | None = None,
        logins: LoginBudget | None = None,
    ) -> None:
        self.settings = settings
        self._assessor = ProbeAssessor(settings)
        #: Every camera's login-failure budget (shared with the hub's other protocols).
        self.logins = logins if logins is not None else LoginBudget()
        self.repository = HealthRepository(store)
        self._writer = writer
        self._metrics = metrics
        self._clock = clock
        # Seam for the registry's credential decryption; until it is given,
        # the stored URL is probed as it is.
        self._decrypt = decrypt
        self._node = node or socket.gethostname()
        self._cameras: dict[str, CameraMemory] = {}
        self._last_evidence: dict[str, datetime] = {}
        self._loaded: dict[str, tuple[VqdBaseline | None, SceneReference | None, bytes | None]] = {}
        self._pool: ProbePool | None = None
        self._vqd_executor: ThreadPoolExecutor | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[PatrolProgress] | None = None
        self._run_lock = asyncio.Lock()
        self.current: PatrolProgress | None = None
        self.last: PatrolProgress | None = None
        self._started = False
        self._warned_credentials: set[str] = set()
        #: Sources of cameras without RTSP URLs (GB/T 28181 channels).
        self.stream_sources: list[StreamSource] = []
        self._served_by: dict[str, StreamSource] = {}
        #: Which cameras this node patrols (all, until a cluster says otherwise).
        self._is_mine: Callable[[str], bool] = lambda _: True
        self._others_alive: Callable[[], Awaitable[bool]] | None = None
        self._reassigned = asyncio.Event()

    def use_assignment(
        self,
        is_mine: Callable[[str], bool],
        others_alive: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Patrol only the cameras `is_mine` names (this node's share of a cluster);
        `others_alive` says at start whether other nodes keep the cameras' health."""
        self._is_mine = is_mine
        self._others_alive = others_alive

    def reassign(self) -> None:
        """This node's share changed: look for cameras now due here without waiting."""
        self._reassigned.set()

    # -- lifecycle -----------------------------------------------------------

    async def start(self, *, schedule: bool | None = None) -> None:
        """Mark cameras unknown, load baselines, and start the schedule (if enabled)."""
        if self._started:
            return
        s = self.settings
        self._pool = ProbePool(
            max_workers=s.concurrency,
            frames=s.frames,
            timeout_s=s.timeout_s,
            transport=s.transport,
            analysis_width=s.thresholds.analysis_width,
        )
        self._vqd_executor = ThreadPoolExecutor(s.concurrency, thread_name_prefix="vqd")
        now = self._clock()
        if self._others_alive is not None and await self._others_alive():
            # One node of several restarting: the live nodes patrol the cameras (and took
            # this node's share over while it was away), so what they know stays true.
            log.info("patrol: other nodes are running; camera health is kept")
        else:
            reset = await self.repository.reset_to_unknown(now, _RESTART_REASON)
            if reset:
                log.info("patrol: %d cameras are unknown until their next probe", len(reset))
        await self._load_memory()
        await self.repository.apply_timescale_policies(
            retention_days=s.sample_retention_days,
            compress_after_days=s.sample_compress_after_days,
        )
        self._started = True
        if s.enabled if schedule is None else schedule:
            self._loop_task = asyncio.create_task(self._schedule(), name="patrol")

    async def stop(self) -> None:
        """Stop the schedule, let a running pass end (cancelled), release the workers."""
        for task in (self._loop_task, self._run_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop_task = None
        self._run_task = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        if self._vqd_executor is not None:
            executor, self._vqd_executor = self._vqd_executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        self._started = False

    async def _load_memory(self) -> None:
        baselines = await self.repository.baselines()
        self._last_evidence = await self.repository.last_evidence_times()

        def decode() -> dict[str, tuple[VqdBaseline | None, SceneReference | None, bytes | None]]:
            loaded = {}
            for device_id, row in baselines.items():
                baseline = (
                    VqdBaseline(row.sharpness, max(1, row.samples))
                    if row.sharpness is not None
                    else None
                )
                reference = None
                if row.reference_png is not None:
                    grey = cv2.imdecode(
                        np.frombuffer(row.reference_png, np.uint8), cv2.IMREAD_GRAYSCALE
                    )
                    if grey is not None:
                        reference = SceneReference(grey.astype(np.uint8))
                loaded[device_id] = (baseline, reference, row.reference_png)
            return loaded

        self._loaded = await asyncio.to_thread(decode)

    def _camera(self, device_id: str, now: datetime) -> CameraMemory:
        camera = self._cameras.get(device_id)
        if camera is None:
            baseline, reference, png = self._loaded.get(device_id, (None, None, None))
            camera = CameraMemory(
                tracker=HealthTracker(device_id, self.settings.policy, now),
                baseline=baseline,
                reference=reference,
                reference_png=png,
                last_evidence_at=self._last_evidence.get(device_id),
            )
            self._cameras[device_id] = camera
        return camera

    # -- scheduling ----------------------------------------------------------

    async def _schedule(self) -> None:
        await asyncio.sleep(self.settings.start_delay_s)
        while True:
            try:
                await self.run_once(trigger="schedule", only_due=True)
                await self._housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("patrol pass failed; the next one starts on schedule")
            # Cameras taken over from another node are due at once if it missed them.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(await self._until_next_due()):
                    await self._reassigned.wait()
            self._reassigned.clear()

    async def _until_next_due(self) -> float:
        interval = self.settings.interval_s
        targets = await self._targets()
        if not targets:
            return interval
        oldest = targets[0].last_probe_at
        if oldest is None:
            return 1.0
        wait = (oldest + timedelta(seconds=interval) - self._clock()).total_seconds()
        return min(interval, max(1.0, wait))

    async def _housekeeping(self) -> None:
        now = self._clock()
        removed = await self.repository.delete_before(
            samples_before=now - timedelta(days=self.settings.sample_retention_days),
            evidence_before=now - timedelta(days=self.settings.evidence_retention_days),
        )
        if removed:
            log.info("patrol housekeeping removed %d old samples and snapshots", removed)

    def trigger(self, trigger: str = "manual") -> bool:
        """Start a full pass in the background now; False if one is already running.

        The pass is `current` from this call on, so whoever asked sees it
        running at once, before its cameras are even listed."""
        if not self._started:
            raise RuntimeError("the patrol service is not started")
        if self._run_lock.locked() or (self._run_task is not None and not self._run_task.done()):
            return False
        progress = PatrolProgress(None, trigger, self._clock(), 0)
        self.current = progress
        self._run_task = asyncio.create_task(
            self.run_once(trigger=trigger, progress=progress), name="patrol-run"
        )
        return True

    @property
    def running(self) -> bool:
        """True while a pass is in progress."""
        return self._run_lock.locked()

    # -- one pass ------------------------------------------------------------

    async def run_once(
        self,
        *,
        trigger: str = "manual",
        only_due: bool = False,
        on_progress: Callable[[PatrolProgress], None] | None = None,
        progress: PatrolProgress | None = None,
    ) -> PatrolProgress:
        """Probe every enabled camera (or only those due), the longest unprobed first.

        `progress` is the pass as `trigger()` already announced it."""
        if not self._started:
            raise RuntimeError("the patrol service is not started")
        if progress is None:
            progress = PatrolProgress(None, trigger, self._clock(), 0)
        try:
            async with self._run_lock:
                # Current from before its row exists to after its counts are stored:
                # a reader never sees the pass's row without its live counts.
                self.current = progress
                return await self._run(progress, only_due, on_progress)
        finally:
            if self.current is progress:
                self.current = None

    async def _run(
        self,
        progress: PatrolProgress,
        only_due: bool,
        on_progress: Callable[[PatrolProgress], None] | None,
    ) -> PatrolProgress:
        targets = await self._targets()
        if only_due:
            due_before = progress.started_at - timedelta(seconds=self.settings.interval_s * 0.95)
            targets = [
                t for t in targets if t.last_probe_at is None or t.last_probe_at <= due_before
            ]
        progress.total = len(targets)
        progress.run_id = await self.repository.start_run(
            progress.started_at, len(targets), progress.trigger, self._node
        )
        wall0 = time.perf_counter()
        try:
            await self._probe_all(targets, progress, on_progress)
        finally:
            progress.finished_at = self._clock()
            # Stored before the pass stops being "current" (run_once clears it): a
            # reader that sees no current pass then finds this one finished with its counts.
            try:
                await asyncio.shield(self._save_progress(progress))
            except Exception:
                log.exception("could not store the progress of patrol run %s", progress.run_id)
            self.last = progress
        wall = time.perf_counter() - wall0
        if self._metrics is not None and wall > 0 and progress.done:
            self._metrics.patrol_cameras_per_second.set(progress.done / wall)
        log.info(
            "patrol %s: %d cameras in %.1f s, %d failed, %d degraded, %d transitions",
            progress.trigger,
            progress.done,
            wall,
            progress.failed,
            progress.degraded,
            progress.transitions,
        )
        if on_progress is not None:
            on_progress(progress)
        return progress

    async def _save_progress(self, progress: PatrolProgress) -> None:
        if progress.run_id is None:
            return
        await self.repository.update_run(
            progress.run_id,
            done=progress.done,
            failed=progress.failed,
            degraded=progress.degraded,
            finished_at=progress.finished_at,
        )

    async def _probe_all(
        self,
        targets: Sequence[PatrolTarget],
        progress: PatrolProgress,
        on_progress: Callable[[PatrolProgress], None] | None,
    ) -> None:
        queue: asyncio.Queue[Assessment] = asyncio.Queue()
        pending = iter(targets)
        last_saved = time.monotonic()

        async def worker() -> None:
            for target in pending:
                if not self._is_mine(target.device_id):
                    # Moved to another node during the pass: probed there, not twice.
                    progress.total -= 1
                    continue
                try:
                    result = await self._probe_one(target, progress.run_id)
                    if result is None:
                        self._skipped(target, progress)
                        continue
                    queue.put_nowait(result)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("patrol of %s failed", target.device_id)

        async def flusher() -> None:
            nonlocal last_saved
            while True:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                await self._commit(batch, progress)
                if on_progress is not None:
                    on_progress(progress)
                if time.monotonic() - last_saved > _PROGRESS_EVERY_S:
                    last_saved = time.monotonic()
                    await self._save_progress(progress)
                for _ in batch:
                    queue.task_done()

        workers = [
            asyncio.create_task(worker(), name="patrol-worker")
            for _ in range(min(self.settings.concurrency, max(1, len(targets))))
        ]
        flush_task = asyncio.create_task(flusher(), name="patrol-flush")
        try:
            await asyncio.gather(*workers)
            await queue.join()
        finally:
            for task in [*workers, flush_task]:
                task.cancel()
            for task in [*workers, flush_task]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _skipped(self, target: PatrolTarget, progress: PatrolProgress) -> None:
        """A camera left alone because its login is auth_failed: counted, not probed."""
        progress.done += 1
        progress.degraded += 1
        if len(progress.problems) < 1000:
            progress.problems.append(
                (
                    target.device_id,
                    HealthState.DEGRADED.value,
                    self.logins.blocked_reason(target.device_id),
                )
            )

    async def _targets(self) -> list[PatrolTarget]:
        """This node's cameras with RTSP URLs, and those without that a stream source serves."""
        targets = [t for t in await self.repository.patrol_targets() if self._is_mine(t.device_id)]
        bare = [t.device_id for t in targets if not t.rtsp_urls]
        served: dict[str, StreamSource] = {}
        for source in self.stream_sources if bare else []:
            for device_id in await source.served(bare):
                served.setdefault(device_id, source)
        self._served_by = served
        return [t for t in targets if t.rtsp_urls or t.device_id in served]

    async def _probe_stream(self, target: PatrolTarget, run_id: int | None) -> Assessment:
        """Probe a camera without RTSP URL through the stream source that serves it."""
        s = self.settings
        probe = await self._served_by[target.device_id].probe(
            target.device_id,
            frames=s.frames,
            timeout_s=s.timeout_s,
            analysis_width=s.thresholds.analysis_width,
        )
        camera = self._camera(target.device_id, self._clock())
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._vqd_executor, self._assessor.assess, target, camera, probe, run_id, self._clock()
        )

    async def _probe_one(self, target: PatrolTarget, run_id: int | None) -> Assessment | None:
        """Probe one camera; None when its login budget says not to try it now."""
        assert self._pool is not None  # noqa: S101 - set by start()
        if not target.rtsp_urls:
            return await self._probe_stream(target, run_id)
        version = login_version(target.credentials)
        if target.credentials is not None and not self.logins.may_try(
            target.device_id, version, self._clock()
        ):
            return None
        url = self._probe_url(target)
        probe = await self._pool.probe(url)
        if probe.failure is ProbeFailure.AUTH_FAILED:
            if target.credentials is not None:
                self.logins.refused(target.device_id, version, self._clock(), "rtsp_probe")
        elif probe.reachable:
            self.logins.accepted(target.device_id)
        if self._metrics is not None:
            self._metrics.patrol_probe_seconds.observe(probe.total_time_s)
        camera = self._camera(target.device_id, self._clock())
        loop = asyncio.get_running_loop()
        # OpenCV work runs in its own bounded pool, never on the event loop.
        return await loop.run_in_executor(
            self._vqd_executor, self._assessor.assess, target, camera, probe, run_id, self._clock()
        )

    def _probe_url(self, target: PatrolTarget) -> str:
        url = choose_stream_url(target.rtsp_urls)
        if target.credentials is None:
            return url
        if self._decrypt is None:
            if target.device_id not in self._warned_credentials:
                self._warned_credentials.add(target.device_id)
                log.warning(
                    "camera %s has stored credentials but no decryption is configured; "
                    "probing its URL without them",
                    target.device_id,
                )
            return url
        try:
            login = self._decrypt(target.device_id, target.credentials)
        except Exception as exc:
            # Logged without the exception text: it may quote the ciphertext's context.
            log.warning(
                "camera %s: stored credentials cannot be decrypted (%s); probing without them",
                target.device_id,
                type(exc).__name__,
            )
            return url
        return with_credentials(url, *login) if login is not None else url

    async def _commit(self, batch: Sequence[Assessment], progress: PatrolProgress) -> None:
        transitions = [
            TransitionRow(
                device_id=r.transition.device_id,
                at=r.transition.at,
                from_state=r.transition.previous.value,
                to_state=r.transition.state.value,
                reason=r.transition.reason,
                evidence=evidence_json(r.transition, r.sample.evidence_id),
                reason_code=r.transition.code,
                reason_params=dict(r.transition.params),
            )
            for r in batch
            if r.transition is not None
        ]
        await self.repository.record(
            samples=[r.sample for r in batch],
            transitions=transitions,
            evidence=[r.evidence for r in batch if r.evidence is not None],
            baselines=[r.baseline for r in batch if r.baseline is not None],
            now=self._clock(),
        )
        events = [event for r in batch for event in r.events]
        # Commit, then announce: the events follow the stored state.
        await self._writer.submit_many(events)
        for r in batch:
            progress.done += 1
            if r.sample.observed == HealthState.OFFLINE.value:
                progress.failed += 1
            elif r.sample.observed == HealthState.DEGRADED.value:
                progress.degraded += 1
            if r.sample.observed != HealthState.ONLINE.value and len(progress.problems) < 1000:
                progress.problems.append((r.sample.device_id, r.sample.observed, r.reason))
            if self._metrics is not None:
                self._metrics.patrol_probes.labels(r.sample.observed).inc()
        progress.transitions += len(transitions)
        progress.events += len(events)
