"""ONVIF event channels in the hub: one PullPoint channel per enabled camera that has an
ONVIF address and a login, kept in step with the registry, and their metrics.

Channels are set up with bounded concurrency; the registry is re-read when this node's
registry announces a change and every `resync_s` regardless (a cheap fingerprint query
first), so cameras added, changed or removed on any node get their channel started,
restarted or stopped. Events go to the hub's writer; channel health is in `health()`
and in the `gridwatch_onvif_*` metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.onvif.models import ChannelHealth
from adapters.onvif.parsers import PARSERS, normalize_topic
from adapters.onvif.security import PinPolicy
from camera_registry.events import DeviceEvent
from hub.devices.registry import DeviceChange, Registry
from hub.metrics import Metrics
from hub.onvif import storage as repo
from hub.onvif.config import OnvifSettings
from hub.onvif.probes import OnvifUnavailable, camera_origin, open_login
from hub.storage import SqlStore

__all__ = ["ChannelStats", "EventChannels", "EventSink"]

log = logging.getLogger(__name__)

#: Hands an event to the hub's writer.
EventSink = Callable[[DeviceEvent], Awaitable[None]]


class ChannelStats:
    """Turns cumulative per-channel counters into Prometheus counter increments."""

    def __init__(self, metrics: Metrics, registered_topics: Sequence[str]) -> None:
        self._metrics = metrics
        self._exact = frozenset(t for t in registered_topics if not t.endswith("/*"))
        self._subtrees = frozenset(t[:-2] for t in registered_topics if t.endswith("/*"))
        self._seen: dict[str, tuple[int, int, int, int, int, Counter[str]]] = {}

    def topic_label(self, topic: str) -> str | None:
        """The registered topic (or `subtree/*`) a topic counts under; None if unknown.

        Labels come only from the parser registry, so a camera inventing topic
        names under a known subtree cannot create new series.
        """
        key = normalize_topic(topic).lower()
        if key in self._exact:
            return key
        while key:
            if key in self._subtrees:
                return f"{key}/*"
            key = key.rpartition("/")[0]
        return None

    def update(self, health: Mapping[str, ChannelHealth], now: datetime, stale_s: float) -> None:
        """Count what the channels did since the last update; set the channel gauges."""
        m = self._metrics
        states: Counter[str] = Counter()
        stale = 0
        oldest = 0.0
        for device_id, item in health.items():
            states[item.state] += 1
            last = item.last_successful_pull or item.subscribed_since
            age = (now - last).total_seconds() if last is not None else None
            if item.last_successful_pull is None or (age is not None and age > stale_s):
                stale += 1
            if age is not None:
                oldest = max(oldest, age)
            unknown = sum(item.unknown_topics.values())
            topics: Counter[str] = Counter()
            for topic, count in item.messages_per_topic.items():
                label = self.topic_label(topic)
                if label is not None:
                    topics[label] += count
            previous = self._seen.get(device_id, (0, 0, 0, 0, 0, Counter()))
            now_counts = (
                item.pulls,
                item.renew_failures,
                item.resubscriptions,
                unknown,
                item.malformed_messages,
            )
            for counter, new, old in zip(
                (
                    m.onvif_pulls,
                    m.onvif_renew_failures,
                    m.onvif_resubscriptions,
                    m.onvif_unknown_topic_messages,
                    m.onvif_malformed_messages,
                ),
                now_counts,
                previous[:5],
                strict=True,
            ):
                if new > old:
                    counter.inc(new - old)
            for topic, count in topics.items():
                grown = count - previous[5].get(topic, 0)
                if grown > 0:
                    m.onvif_messages.labels(topic=topic).inc(grown)
            self._seen[device_id] = (*now_counts, topics)
        for gone in set(self._seen) - set(health):
            del self._seen[gone]
        for state in ("starting", "subscribed", "backoff", "stopped"):
            m.onvif_channels.labels(state=state).set(states.get(state, 0))
        m.onvif_channels_stale.set(stale)
        m.onvif_oldest_pull_age.set(oldest)


class EventChannels:
    """The event channels of every eligible camera, while started."""

    def __init__(
        self,
        settings: OnvifSettings,
        *,
        store: SqlStore,
        submit: EventSink,
        registry: Registry,
        policy: PinPolicy,
        metrics: Metrics | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self._store = store
        self._submit = submit
        self._registry = registry
        self._policy = policy
        self._clock = clock
        self._manager: Any = None  # adapters.onvif.client.EventChannelManager while running
        self._pool: Any = None  # its CameraHttp pool
        self._channels: dict[str, str] = {}  # device id → fingerprint of what it was built from
        self._refused: dict[str, str] = {}  # device id → fingerprint whose login did not open
        self._registry_fingerprint: tuple[Any, ...] | None = None
        self._resync_lock = asyncio.Lock()
        self._resync_wanted = asyncio.Event()
        self._unsubscribe_registry: Callable[[], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stats = ChannelStats(metrics, PARSERS.topics()) if metrics is not None else None
        #: Which cameras this node subscribes to (all, until a cluster says otherwise).
        self._is_mine: Callable[[str], bool] = lambda _: True
        self._reassigned = False

    def use_assignment(self, is_mine: Callable[[str], bool]) -> None:
        """Subscribe only to the cameras `is_mine` names (a cluster's share of this node)."""
        self._is_mine = is_mine

    def reassign(self) -> None:
        """This node's share changed: release what moved away, subscribe what moved here."""
        self._reassigned = True
        self._resync_wanted.set()

    @property
    def running(self) -> bool:
        """True while the channels are maintained."""
        return self._manager is not None

    def __len__(self) -> int:
        return len(self._channels)

    async def start(self) -> None:
        """Open a channel to every eligible camera and keep them in step with the registry."""
        from adapters.onvif.client import CameraHttp, EventChannelManager

        self._pool = CameraHttp(
            max_connections=self.settings.max_connections, tls=self.settings.camera_tls()
        )
        self._manager = EventChannelManager(
            self._submit,
            settings=self.settings.channel_settings(),
            max_concurrent_setups=self.settings.setup_concurrency,
            http=self._pool,
            registry=PARSERS.extended(self.settings.adapter_mappings()),
        )
        await self.resync(force=True)
        self._unsubscribe_registry = self._registry.on_change(self._registry_notified)
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="onvif-resync"))

    async def stop(self) -> None:
        """Stop every channel (best-effort unsubscribe) and close their connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        unsubscribe, self._unsubscribe_registry = self._unsubscribe_registry, None
        if unsubscribe is not None:
            unsubscribe()
        manager, self._manager = self._manager, None
        if manager is not None:
            await manager.close()
        self._channels.clear()
        # The manager leaves the pool it was handed to its owner.
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    def health(self) -> dict[str, ChannelHealth]:
        """Every channel's health, by device id."""
        if self._manager is None:
            return {}
        health: dict[str, ChannelHealth] = self._manager.health()
        return health

    def health_of(self, device_id: str) -> ChannelHealth | None:
        """One camera's channel health (None: no channel for it)."""
        if self._manager is None or device_id not in self._channels:
            return None
        health: ChannelHealth | None = self._manager.health().get(device_id)
        return health

    def refresh_metrics(self) -> None:
        """Bring the `gridwatch_onvif_*` metrics up to date with the channels."""
        if self._stats is not None:
            self._stats.update(self.health(), self._clock(), self.settings.stale_after_s)

    async def _registry_changed(self) -> bool:
        fingerprint = await repo.registry_fingerprint(self._store)
        changed = fingerprint != self._registry_fingerprint
        self._registry_fingerprint = fingerprint
        return changed

    async def resync(self, *, force: bool = False) -> tuple[int, int]:
        """Match the channels to the registry; return (started, stopped)."""
        manager = self._manager
        if manager is None:
            return 0, 0
        async with self._resync_lock:
            reassigned, self._reassigned = self._reassigned, False
            if not await self._registry_changed() and not force and not reassigned:
                return 0, 0
            targets = {
                t.device_id: t
                for t in await repo.event_channel_targets(self._store)
                if self._is_mine(t.device_id)
            }
            stopped = 0
            for device_id, fingerprint in list(self._channels.items()):
                target = targets.get(device_id)
                if target is None or target.channel_fingerprint() != fingerprint:
                    await manager.remove(device_id)
                    del self._channels[device_id]
                    stopped += 1
            started = 0
            for device_id, target in targets.items():
                if device_id in self._channels:
                    continue
                fingerprint = target.channel_fingerprint()
                if self._refused.get(device_id) == fingerprint:
                    continue
                try:
                    scheme, host, port = camera_origin(target.onvif_url or "")
                    login = open_login(self._registry, target)
                except OnvifUnavailable as exc:
                    # Logged once per registry state of the device, not every resync.
                    self._refused[device_id] = fingerprint
                    log.warning("camera %s: no event channel: %s", device_id, exc)
                    continue
                self._refused.pop(device_id, None)
                manager.add(
                    device_id,
                    host,
                    port,
                    login.username,
                    login.password.get_secret_value(),
                    policy=self._policy,
                    scheme=scheme,
                )
                self._channels[device_id] = fingerprint
                started += 1
            if started or stopped:
                log.info(
                    "ONVIF event channels: %d started, %d stopped, %d running",
                    started,
                    stopped,
                    len(self._channels),
                )
            return started, stopped

    def _registry_notified(self, change: DeviceChange) -> None:
        # Called by the registry after a commit (on the event loop): resync soon.
        self._resync_wanted.set()

    async def _resync_loop(self) -> None:
        while True:
            # Woken by registry changes made on this node; the period catches other nodes'.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.resync_s):
                    await self._resync_wanted.wait()
            self._resync_wanted.clear()
            try:
                await self.resync()
            except Exception:
                log.exception("ONVIF event channel resync failed; will retry")
