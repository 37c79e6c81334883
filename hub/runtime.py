"""Assembly: builds every service from settings, starts them in order, stops them in reverse.

The device-protocol services (MQTT, broadcast, patrol, ONVIF, evidence, GB/T 28181, and
any `AdapterFactory` handed to `Hub`) are started and stopped through the `Adapter`
contract alone, in one list: started after storage, the writer and the alarm side,
stopped in reverse before the writer drains, so nothing they hand over is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI

from adapters.onvif.http import CameraHttp
from camera_registry.events import DeviceEvent
from hub.alarms.change_feed import ChangeFeed
from hub.alarms.dispatcher import Dispatcher, build_sink
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.feed_storage import ChangeListener
from hub.api import create_app
from hub.auth.first_admin import hand_out_first_admin_password
from hub.auth.service import Authenticator
from hub.broadcast.service import BroadcastService
from hub.bus import EventBus
from hub.cluster import Cluster
from hub.config import Settings
from hub.contracts import Adapter, AdapterFactory
from hub.crypto import CredentialCipher, load_keyring
from hub.departments.service import DepartmentService
from hub.devices.patrol import PatrolService, camera_login
from hub.devices.registry import Registry
from hub.evidence.service import EvidenceService
from hub.gb28181.pictures import ChannelPictures
from hub.gb28181.service import Gb28181Service
from hub.live.service import LiveViews
from hub.metrics import Metrics
from hub.mqtt.service import MqttService
from hub.node import node_identity
from hub.onvif.service import OnvifService
from hub.storage import SqlStore, Tx, open_store
from hub.storage.base import IngestResult, InTransaction
from hub.writer import EventWriter

__all__ = ["Hub", "RunningAdapter", "freeze_startup_heap", "serve"]

log = logging.getLogger(__name__)

_RETENTION_EVERY_S = 3600.0
_STOP_S = 15.0
_DRAIN_S = 60.0


async def _stop(
    part: str, stopping: Coroutine[Any, Any, None], *, timeout_s: float = _STOP_S
) -> None:
    """Await one part's stop for at most `timeout_s`; log (never raise) when it overruns."""
    try:
        await asyncio.wait_for(stopping, timeout_s)
    except TimeoutError:
        log.error("%s did not stop within %.0f s; shutting down without it", part, timeout_s)
    except Exception:
        log.exception("%s failed while stopping", part)


@dataclass(frozen=True, slots=True)
class RunningAdapter:
    """A device-protocol service the hub runs, as the hub names it in its log."""

    name: str
    adapter: Adapter
    #: How long its stop may take before shutdown goes on without it.
    stop_s: float = _STOP_S


class Hub:
    """One GridWatch node: storage, writer, bus and the HTTP app over them."""

    def __init__(self, settings: Settings, *, adapters: Sequence[AdapterFactory] = ()) -> None:
        """Build every service from `settings`; each of `adapters` is built around the
        writer's `submit` and runs after the built-in device-protocol services."""
        self.settings = settings
        self.metrics = Metrics()
        #: This node's stable name (outbox claims, membership heartbeats).
        self.node_id = node_identity(settings.node_id, settings.data_dir)
        self.events: EventBus[DeviceEvent] = EventBus("events")
        self.store: SqlStore = open_store(
            settings.storage_url(),
            pool_size=settings.storage.pool_size,
            retention_days=settings.storage.retention_days,
            compress_after_days=settings.storage.compress_after_days,
        )
        self.writer = EventWriter(
            self.store,
            bus=self.events,
            metrics=self.metrics,
            queue_size=settings.writer.queue_size,
            batch_max=settings.writer.batch_max,
            batch_delay=settings.writer.batch_delay_ms / 1000,
            in_transaction=self._in_transaction,
            after_commit=self._after_commit,
        )
        # Run inside every batch's transaction, in this order (see _in_transaction).
        self._commit_hooks: list[InTransaction] = []
        self.mqtt = MqttService(
            settings.mqtt,
            store=self.store,
            writer=self.writer,
            metrics=self.metrics,
            node_id=self.node_id,
        )
        self._commit_hooks.append(self.mqtt.in_transaction)
        self.broadcast = BroadcastService(self.store, self.mqtt)
        self.alarm_changes: EventBus[AlarmChange] = EventBus("alarm-changes")
        self.alarms = AlarmEngine(
            self.store, settings.alarms, bus=self.alarm_changes, metrics=self.metrics
        )
        self._commit_hooks.append(self.alarms.in_transaction)
        self.dispatcher = Dispatcher.from_settings(
            self.store,
            settings.alarms.delivery,
            list(settings.alarms.sinks),
            metrics=self.metrics,
            worker=self.node_id,
        )
        self.alarms.on_outbox(self.dispatcher.wake)
        # What the console streams show: on PostgreSQL every node's committed changes
        # (several nodes may share the database), read from the change log in order;
        # on SQLite (one node) this node's own bus.
        self.change_feed: ChangeFeed | None = None
        self.stream_changes = self.alarm_changes
        if self.store.dialect.is_postgresql:
            self.stream_changes = EventBus("alarm-changes-all-nodes")
            self.change_feed = ChangeFeed(
                self.store,
                ChangeListener(settings.storage_url(), name=f"gridwatch-feed:{self.node_id}"),
                self.stream_changes,
            )
            self.alarm_changes.on_publish(self.change_feed.committed_here)
        self.departments = DepartmentService(
            self.store, settings.departments, bus=self.alarm_changes
        )
        self.alarms.add_close_guard(self.departments.close_guard)
        for sink in settings.departments.sinks:
            if sink.enabled:
                self.dispatcher.add_sink(build_sink(sink), sink)
        self.departments.on_outbox(self.dispatcher.wake)
        self.auth = Authenticator(self.store, settings.auth)
        #: The first admin's one-time password when this start created it (else None).
        self.first_admin_password: str | None = None
        self.registry = Registry(
            self.store,
            CredentialCipher(load_keyring(settings.credentials_key_path())),
            linkage_radius_m=settings.registry.linkage_radius_m,
            linkage_limit=settings.registry.linkage_limit,
        )
        self.mqtt.watch_registry(self.registry)
        # Alarm snapshots log in to linked cameras with their stored credentials.
        self.alarms.use_credentials(camera_login(self.registry.cipher))
        self.alarms.use_login_budget(self.registry.logins)
        # Snapshot URLs go through the one hardened camera HTTP client, with the site's TLS.
        self.alarms.use_camera_http(CameraHttp(tls=settings.onvif.camera_tls(), max_connections=64))
        # Camera logins are decrypted only here, to build the RTSP URL the hub pulls.
        self.live = LiveViews(self.store, settings.live, open_credentials=self.registry.cipher.open)
        self.patrol = PatrolService(
            settings.patrol,
            store=self.store,
            writer=self.writer,
            metrics=self.metrics,
            decrypt=camera_login(self.registry.cipher),
            logins=self.registry.logins,
        )
        self.onvif = OnvifService(
            settings.onvif,
            store=self.store,
            metrics=self.metrics,
            submit=self.writer.submit,
            registry=self.registry,
        )
        # Pre-alarm buffers of linked cameras; a clip per camera when an alarm opens. It
        # follows every node's alarms: the node that buffers a camera cuts its clips.
        self.evidence = EvidenceService(
            self.store,
            settings.evidence,
            settings.data_dir,
            alarm_changes=self.stream_changes,
            open_credentials=self.registry.cipher.open,
            base_url=settings.evidence.public_url
            or f"http://{settings.http.host}:{settings.http.port}",
        )
        self.registry.on_change(self.evidence.request_refresh)
        # A buffered camera's live viewers are served from its buffer's pull.
        self.live.relay.share_pulls(self.evidence.shared_player)
        # Complete clips become an alarm revision: every sink delivers their links.
        self.evidence.on_clips(
            lambda alarm_id, entries: self.alarms.add_evidence(
                alarm_id, entries, f"告警录像 {len(entries)} 段 / {len(entries)} evidence clip(s)"
            )
        )
        self.gb28181 = Gb28181Service(
            settings.gb28181,
            store=self.store,
            registry=self.registry,
            submit=self.writer.submit,
            node_id=node_identity(settings.node_id, settings.data_dir),
        )
        self._commit_hooks.append(self.gb28181.in_transaction)
        self.live.add_source(self.gb28181.open_player, self.gb28181.live_source)
        # Channels without RTSP URLs: snapshots, the patrol and the pre-alarm buffer
        # through their shared stream.
        gb_pictures = ChannelPictures(self.gb28181, self.store, self.registry)
        self.alarms.linkage.stream_snapshots.append(gb_pictures.snapshot)
        self.alarms.linkage.buffered_snapshots.append(self.evidence.snapshot)
        self.patrol.stream_sources.append(gb_pictures)
        self.evidence.add_stream_urls(gb_pictures.stream_urls)
        self.evidence.open_sources("gb28181", gb_pictures.open_source)
        self.cluster = Cluster(
            settings.cluster,
            store=self.store,
            node_id=self.node_id,
            address=settings.cluster.address or f"http://{settings.http.host}:{settings.http.port}",
            conninfo=settings.storage_url() if self.store.dialect.is_postgresql else None,
        )
        # Devices are split over the live nodes: each feature works on its share.
        self.onvif.use_assignment(self.cluster.is_mine)
        self.cluster.on_change(self.onvif.reassign)
        self.patrol.use_assignment(self.cluster.is_mine, self.cluster.others_alive)
        self.cluster.on_change(self.patrol.reassign)
        self.evidence.use_assignment(self.cluster.is_mine)
        self.cluster.on_change(self.evidence.request_refresh)
        self.gb28181.use_assignment(
            self.cluster.is_mine, lambda node: node in self.cluster.live_nodes
        )
        self.cluster.on_change(self.gb28181.reassign)
        self.mqtt.use_cluster(self.cluster)
        # Jobs that act on the whole database run on one node of a cluster.
        self.cluster.add_singleton("alarm-sla", self.alarms.sla.run)
        self.cluster.add_singleton("task-deadlines", self.departments.run_deadline_loop)
        self.cluster.add_singleton("retention", self._retention_loop)
        self.cluster.add_singleton("registry-counts", self.registry.run_count_folding)
        self._tasks: list[asyncio.Task[None]] = []
        #: Every device-protocol service, in start order (stopped in reverse).
        self.adapters: list[RunningAdapter] = [
            RunningAdapter("mqtt", self.mqtt),
            RunningAdapter("broadcast", self.broadcast),
            RunningAdapter("patrol", self.patrol),
            RunningAdapter("onvif", self.onvif),
            # Clips being cut may take their post-roll to finish.
            RunningAdapter("evidence", self.evidence, stop_s=_STOP_S * 2),
            RunningAdapter("gb28181", self.gb28181),
        ]
        for build in adapters:
            adapter = build(self.writer.submit)
            self.adapters.append(RunningAdapter(type(adapter).__name__, adapter))

    def app(self) -> FastAPI:
        """The HTTP API bound to this hub's services."""
        return create_app(
            self.settings,
            store=self.store,
            writer=self.writer,
            events=self.events,
            metrics=self.metrics,
            registry=self.registry,
            mqtt=self.mqtt,
            broadcast_service=self.broadcast,
            auth_service=self.auth,
            live=self.live,
            alarm_engine=self.alarms,
            alarm_changes=self.stream_changes,
            dispatcher=self.dispatcher,
            patrol_service=self.patrol,
            onvif=self.onvif,
            departments=self.departments,
            evidence=self.evidence,
            gb28181=self.gb28181,
            cluster=self.cluster,
        )

    async def _in_transaction(self, tx: Tx, events: list[DeviceEvent]) -> list[object]:
        """Every commit hook inside the batch's transaction; their results in hook order."""
        return [await hook(tx, events) for hook in self._commit_hooks]

    def _after_commit(self, result: IngestResult) -> None:
        """Announce what the committed batch's hooks changed (alarm changes, outbox wake)."""
        outcomes = result.hook_result if isinstance(result.hook_result, list) else []
        for outcome in outcomes:
            self.alarms.after_commit(outcome)

    async def start(self) -> None:
        """Open storage (migrating it), then start the writer and housekeeping."""
        await self.store.open()
        await self.registry.start(fold_counts=False)
        await self.writer.start()
        self.first_admin_password = await self.auth.start()
        if self.first_admin_password is not None:
            # Shown once to whoever started the hub (terminal or 0600 file); never logged.
            hand_out_first_admin_password(self.first_admin_password, self.settings.data_dir)
        await self.dispatcher.start()
        await self.departments.start(deadline_loop=False)
        if self.change_feed is not None:
            await self.change_feed.start()
        for running in self.adapters:
            await running.adapter.start()
        # Joins last: the singleton jobs and assigned devices need the services above.
        await self.cluster.start()
        log.info("hub started: storage=%s, node=%s", self.store.backend, self.node_id)

    async def stop(self) -> None:
        """Stop housekeeping, drain the writer (nothing queued is lost), close storage."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        # Each part gets a bounded time: a stuck part is named in the log and
        # left behind rather than holding the whole shutdown forever.
        await _stop("registry", self.registry.stop())
        await _stop("live view", self.live.stop())
        await _stop("auth", self.auth.stop())
        # Adapters before the writer: nothing new arrives while the queue drains.
        for running in reversed(self.adapters):
            await _stop(running.name, running.adapter.stop(), timeout_s=running.stop_s)
        # Their devices are released above; the other nodes take them (and the jobs) at once.
        await _stop("cluster", self.cluster.stop())
        await _stop("department tasks", self.departments.stop())
        if self.change_feed is not None:
            await _stop("alarm change feed", self.change_feed.stop())
        await _stop("alarm engine", self.alarms.stop())
        await _stop("dispatcher", self.dispatcher.stop())
        pending = self.writer.pending
        if pending:
            log.info("draining %d queued events before exit", pending)
        # Events still queued after the drain time were never acknowledged to
        # their source (an MQTT broker redelivers them), so nothing is lost.
        await self.writer.stop(drain_timeout=_DRAIN_S)
        await self.store.close()
        log.info("hub stopped")

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _retention_loop(self) -> None:
        while True:
            try:
                removed = await self.store.apply_retention(datetime.now(UTC))
                if removed:
                    log.info("retention removed %d old event rows/chunks", removed)
            except Exception:
                log.exception("retention run failed; will retry")
            await asyncio.sleep(_RETENTION_EVERY_S)


def freeze_startup_heap() -> None:
    """Put what is alive once the hub has started out of the garbage collector's way.

    Modules, settings, rules, schemas and caches of a started hub are some
    150,000 objects that live as long as the process. Each full collection
    walks all of them (about 70 ms on a 2-core machine), and the event loop,
    with ingest, acknowledgements and the console, stands still meanwhile: it
    was the largest part of the ingest latency's p99. `gc.freeze()` moves them
    to the permanent generation, so collections walk only what came after.
    """
    gc.collect()
    gc.freeze()


async def serve(settings: Settings) -> None:
    """Run the hub and its HTTP server until SIGINT/SIGTERM, then shut down cleanly."""
    async with Hub(settings) as hub:
        freeze_startup_heap()
        config = uvicorn.Config(
            hub.app(),
            host=settings.http.host,
            port=settings.http.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.request_exit, signum)
        log.info("GridWatch listening on http://%s:%d", settings.http.host, settings.http.port)
        try:
            await server.serve()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal capture: it re-raises the signal after serving,
    which would kill the process before the writer is drained."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self, signum: int) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        self.should_exit = True
