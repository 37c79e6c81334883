"""The MQTT devices in the hub: registry directory, adapter lifecycle, health, metrics.

- `DeviceDirectory` answers the adapter's synchronous `device_lookup` from memory. It is
  loaded from the registry at start and reloaded at once when the registry announces a
  device change (`Registry.on_change`), within `device_refresh_s` of a change made on
  another hub node (a cheap fingerprint query), and in full every few minutes regardless.
- `MqttService` runs the `MqttAdapter` with the writer's `submit`: the adapter PUBACKs a
  message only in the writer's committed-callback.
- `MqttService.in_transaction` (a writer hook) hands the health each batch's MQTT events
  prove (availability, heartbeats, broadcast status) to the devices' trackers of the one
  health machine (`hub.mqtt.health.MqttHealth` over `camera_registry.health`), in the
  writer's transaction. Each transition is stored in the health history and announced
  as a `health.<state>` event that joins the batch, so the alarm engine (the next hook)
  opens or closes the device-offline alarm exactly as for a camera.
- Once a second the same trackers say which devices' heartbeats stopped; each becomes a
  `device.offline` event (`heartbeat_missed`) through the writer, and so a transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.mqtt import (
    BroadcastCommand,
    CommandResult,
    ConnectionState,
    DeviceInfo,
    MqttAdapter,
    UnitStatus,
)
from adapters.mqtt.parsers import HEARTBEAT_KIND, SOURCE
from adapters.mqtt.sharing import node_client_id
from camera_registry.events import DEVICE_ID_PATTERN, DeviceEvent
from camera_registry.health import transition_event
from camera_registry.models import DeviceKind, HealthState
from hub.cluster import Cluster
from hub.config import MqttHubSettings
from hub.devices.health_storage import TransitionRow, current_health, insert_transitions
from hub.devices.registry import DeviceChange, Registry
from hub.metrics import Metrics
from hub.mqtt.health import CHECK_S, MqttHealth, health_changes
from hub.mqtt.sharing import SessionTakeover, SharedLiveness
from hub.mqtt.storage import (
    MqttDeviceRow,
    last_heard,
    load_mqtt_devices,
    registry_fingerprint,
)
from hub.storage import SqlStore, Tx
from hub.writer import EventWriter

__all__ = [
    "DeviceDirectory",
    "MqttCollector",
    "MqttService",
    "MqttStatus",
]

log = logging.getLogger(__name__)

#: The registry kinds that talk MQTT (panic buttons are alarm points).
_MQTT_KINDS = frozenset({DeviceKind.ALARM_POINT, DeviceKind.BROADCAST_UNIT})
_FULL_RELOAD_S = 300.0


class DeviceDirectory:
    """In-memory registry view for the adapter: MQTT id → registered device."""

    def __init__(self, store: SqlStore, *, refresh_s: float = 2.0) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._by_mqtt_id: dict[str, DeviceInfo] = {}
        self._rows: dict[str, MqttDeviceRow] = {}
        self._fingerprint: tuple[int, str] | None = None
        self._changed = asyncio.Event()
        self.loaded_at: float | None = None

    def lookup(self, mqtt_id: str) -> DeviceInfo | None:
        """The registered device publishing as `mqtt_id` (its `mqtt_device_id`, else its id)."""
        return self._by_mqtt_id.get(mqtt_id)

    def topic_id(self, device_id: str) -> str | None:
        """The id a registered device uses on MQTT, or None if it is not an MQTT device."""
        row = self._rows.get(device_id)
        if row is None:
            return None
        return row.mqtt_device_id or row.device_id

    def __len__(self) -> int:
        return len(self._by_mqtt_id)

    def device_ids(self) -> list[str]:
        """The registry ids of every MQTT device in the directory."""
        return list(self._rows)

    def load(self, rows: Iterable[MqttDeviceRow]) -> None:
        """Replace the directory's content with `rows` (swapped in one assignment)."""
        by_mqtt: dict[str, DeviceInfo] = {}
        by_id: dict[str, MqttDeviceRow] = {}
        for row in rows:
            if row.kind not in _MQTT_KINDS:
                continue
            kind = DeviceKind(row.kind)
            topic_id = row.mqtt_device_id or row.device_id
            if not DEVICE_ID_PATTERN.fullmatch(row.device_id) or not DEVICE_ID_PATTERN.fullmatch(
                topic_id
            ):
                log.warning("device %r cannot be reached over MQTT: id not usable", row.device_id)
                continue
            by_id[row.device_id] = row
            # A device with an mqtt_device_id is matched by that id only, so a message on
            # its registry id's topic cannot pass for it.
            by_mqtt[topic_id] = DeviceInfo(row.device_id, kind)
        self._by_mqtt_id, self._rows = by_mqtt, by_id
        self.loaded_at = time.monotonic()

    async def refresh(self) -> None:
        """Reload from the registry now."""
        fingerprint = await registry_fingerprint(self._store)
        rows = await load_mqtt_devices(self._store)
        self.load(rows)
        self._fingerprint = fingerprint
        log.debug("MQTT device directory: %d devices", len(self._by_mqtt_id))

    async def refresh_if_changed(self) -> bool:
        """Reload when the registry's MQTT devices changed; True if it reloaded."""
        fingerprint = await registry_fingerprint(self._store)
        if fingerprint == self._fingerprint:
            return False
        await self.refresh()
        return True

    def registry_changed(self, change: DeviceChange) -> None:
        """Registry listener: devices changed on this node; reload at once."""
        self._changed.set()

    async def run(self) -> None:
        """Keep the directory current until cancelled: at once after a change made on
        this node (the registry's notification), within `refresh_s` after one made on
        another node (the fingerprint), in full every few minutes regardless."""
        last_full = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_s):
                    await self._changed.wait()
            notified = self._changed.is_set()
            self._changed.clear()
            try:
                if notified or time.monotonic() - last_full >= _FULL_RELOAD_S:
                    await self.refresh()
                    last_full = time.monotonic()
                else:
                    await self.refresh_if_changed()
            except Exception:
                log.exception("refreshing the MQTT device directory failed; will retry")


@dataclass(frozen=True, slots=True)
class MqttStatus:
    """The MQTT connection as reported by /readyz."""

    enabled: bool
    connected: bool
    state: str
    since: datetime | None = None
    reason: str | None = None
    devices: int = 0


class MqttService:
    """The MQTT adapter, its device directory and its health hook, built from settings."""

    def __init__(
        self,
        settings: MqttHubSettings,
        *,
        store: SqlStore,
        writer: EventWriter,
        metrics: Metrics | None = None,
        node_id: str = "hub",
    ) -> None:
        self.settings = settings
        self._store = store
        self._writer = writer
        self.node_id = node_id
        #: Set with `mqtt.shared_group`: liveness judged from the database (hub.mqtt.sharing).
        self.shared_liveness: SharedLiveness | None = None
        self.takeover: SessionTakeover | None = None
        self._cluster: Cluster | None = None
        self.directory = DeviceDirectory(store, refresh_s=settings.device_refresh_s)
        #: The devices' trackers of the one health machine (liveness included).
        self.health = MqttHealth(
            settings.heartbeat_missed_intervals, settings.heartbeat_grace_intervals
        )
        self._submit = writer.submit
        self.adapter: MqttAdapter | None = None
        if settings.enabled:
            adapter_settings = settings.adapter_settings()
            if settings.shared_group is not None:
                # Each node its own session: what the broker routed to it stays its own.
                adapter_settings = adapter_settings.model_copy(
                    update={"client_id": node_client_id(settings.client_id, node_id)}
                )
                self.shared_liveness = SharedLiveness(
                    settings, store=store, writer=writer, device_ids=self.directory.device_ids
                )
            self.adapter = MqttAdapter(
                adapter_settings,
                submit=writer.submit,
                device_lookup=self.directory.lookup,
            )
        self._tasks: list[asyncio.Task[None]] = []
        if metrics is not None:
            metrics.registry.register(MqttCollector(self))

    def use_cluster(self, cluster: Cluster) -> None:
        """Judge liveness only for the devices this node owns, and drain the broker
        sessions of departed nodes that fall to it (with `mqtt.shared_group`)."""
        self._cluster = cluster
        cluster.on_change(self._membership_changed)
        if self.shared_liveness is None:
            return
        self.shared_liveness.cluster = cluster
        self.takeover = SessionTakeover(
            self.settings,
            node_id=self.node_id,
            cluster=cluster,
            writer=self._writer,
            device_lookup=self.directory.lookup,
        )
        cluster.on_change(self.takeover.wake)

    def _membership_changed(self) -> None:
        cluster = self._cluster
        if cluster is None or self.adapter is None or self.shared_liveness is not None:
            return
        if len(cluster.live_nodes) > 1:
            log.error(
                "MQTT: %d hub nodes share this database but mqtt.shared_group is not set: "
                "each takes every message under one client id; set mqtt.shared_group "
                "on every node",
                len(cluster.live_nodes),
            )

    def watch_registry(self, registry: Registry) -> None:
        """Reload the device directory whenever the registry commits a device change."""
        registry.on_change(self.directory.registry_changed)

    @property
    def enabled(self) -> bool:
        """True when the hub is configured to talk MQTT."""
        return self.adapter is not None

    async def start(self) -> None:
        """Load the directory and connect (the broker may still be away: it reconnects)."""
        if self.adapter is None:
            log.info("MQTT devices disabled (mqtt.enabled is false)")
            return
        await self.directory.refresh()
        await self.adapter.__aenter__()
        self._tasks.append(asyncio.create_task(self.directory.run(), name="mqtt-directory"))
        shared = self.shared_liveness
        if shared is None:
            self._tasks.append(asyncio.create_task(self._watch_silence(), name="mqtt-liveness"))
        else:
            # This node sees only its share of the heartbeats: silence is judged from
            # the database by each device's owner (hub.mqtt.sharing).
            try:
                await shared.seed()
            except Exception:
                log.exception("could not read when MQTT devices were last heard")
            clock = functools.partial(datetime.now, UTC)
            self._tasks.append(asyncio.create_task(shared.run(clock), name="mqtt-liveness"))
            if self.takeover is not None:
                self._tasks.append(asyncio.create_task(self.takeover.run(), name="mqtt-takeover"))
        log.info(
            "MQTT adapter started for %s:%d with %d registered devices",
            self.settings.host,
            self.settings.port,
            len(self.directory),
        )

    async def _resume_liveness(self) -> None:
        """Watch again the heartbeats of devices heard before this start.

        Liveness lives in memory; without this, a button that went silent while the
        hub was down (or just before) would never be declared offline. Devices
        already offline stay so until heard again.
        """
        try:
            heard = await last_heard(
                self._store, self.directory.device_ids(), heartbeat_kind=HEARTBEAT_KIND
            )
        except Exception:
            log.exception("could not read when MQTT devices were last heard")
            return
        for entry in heard:
            self.health.seed(entry.device_id, entry.at, entry.interval_s, entry.health)
        if heard:
            log.info("watching the heartbeats of %d MQTT devices heard before start", len(heard))

    async def _watch_silence(self) -> None:
        """Hand the writer a `device.offline` event for each device whose heartbeats stopped."""
        await self._resume_liveness()
        while True:
            await asyncio.sleep(CHECK_S)
            for event in self.health.overdue(datetime.now(UTC)):
                log.warning(
                    "device %s missed %d heartbeats (last heard %s)",
                    event.device_id,
                    self.settings.heartbeat_missed_intervals,
                    event.payload["last_heard"],
                )
                await self._submit(event, None)

    async def stop(self) -> None:
        """Disconnect; un-acked messages stay with the broker for the next start."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.adapter is not None:
            await self.adapter.__aexit__(None, None, None)

    async def in_transaction(self, tx: Tx, events: list[DeviceEvent]) -> None:
        """Writer hook: device health from the batch's MQTT events, in its transaction.

        The `health.<state>` events of the transitions are stored and appended to
        `events`, so the hooks after this one (the alarm engine) see them in this batch.
        """
        judged = events
        if self.shared_liveness is not None:
            late = await self.shared_liveness.in_transaction(tx, events)
            judged = [event for event in events if event.event_id.hex not in late]
        changes = health_changes(judged)
        stored = await current_health(tx, [c.device_id for c in changes]) if changes else {}
        transitions = self.health.decide(changes, stored, events)
        if not transitions:
            return
        await insert_transitions(
            tx,
            [
                TransitionRow(
                    device_id=t.device_id,
                    at=t.at,
                    from_state=t.previous.value,
                    to_state=t.state.value,
                    reason=t.reason,
                    evidence={"source": SOURCE},
                    reason_code=t.code,
                    reason_params=dict(t.params),
                )
                for t in transitions
            ],
            datetime.now(UTC),
        )
        events.extend(
            await self._store.store_derived(tx, [transition_event(t, SOURCE) for t in transitions])
        )

    def status(self) -> MqttStatus:
        """Connection state for readiness."""
        if self.adapter is None:
            return MqttStatus(enabled=False, connected=False, state="disabled")
        state = self.adapter.state
        return MqttStatus(
            enabled=True,
            connected=state.state is ConnectionState.CONNECTED,
            state=state.state.value,
            since=state.since,
            reason=state.reason,
            devices=len(self.directory),
        )

    def unit_status(self, device_id: str) -> UnitStatus:
        """What the adapter last heard a registered device is doing."""
        topic_id = self.directory.topic_id(device_id)
        if self.adapter is None or topic_id is None:
            return UnitStatus.UNKNOWN
        if self.health.state_of(device_id) is HealthState.OFFLINE:
            # Its heartbeats stopped, or it said so: whatever it last reported is stale.
            return UnitStatus.OFFLINE
        return self.adapter.unit_status(topic_id)

    async def send_command(self, device_id: str, command: BroadcastCommand) -> CommandResult:
        """Send a command to the registered broadcast unit `device_id` and wait for its end."""
        if self.adapter is None:
            raise RuntimeError("MQTT is disabled")
        topic_id = self.directory.topic_id(device_id)
        if topic_id is None:
            # Registered after the last refresh: reload once before giving up.
            await self.directory.refresh()
            topic_id = self.directory.topic_id(device_id) or device_id
        return await self.adapter.send_command(
            topic_id,
            command,
            timeout=self.settings.command_timeout_s,
            retries=self.settings.command_retries,
        )


class MqttCollector(Collector):
    """Exports the adapter's counters and connection state at scrape time."""

    def __init__(self, service: MqttService) -> None:
        self._service = service

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the families depend on whether MQTT is enabled."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """The adapter's metrics now."""
        status = self._service.status()
        connected = GaugeMetricFamily(
            "gridwatch_mqtt_connected", "1 while connected to the broker with subscriptions"
        )
        connected.add_metric([], 1.0 if status.connected else 0.0)
        yield connected
        state = GaugeMetricFamily(
            "gridwatch_mqtt_state",
            "The MQTT connection state (1 for the current one)",
            labels=["state"],
        )
        for name in ["disabled", *(s.value for s in ConnectionState)]:
            state.add_metric([name], 1.0 if name == status.state else 0.0)
        yield state
        devices = GaugeMetricFamily(
            "gridwatch_mqtt_devices", "Registered MQTT devices known to the adapter"
        )
        devices.add_metric([], float(status.devices))
        yield devices
        adapter = self._service.adapter
        if adapter is None:
            return
        m = adapter.metrics
        plain: list[tuple[str, str, int]] = [
            ("received", "MQTT messages received", m.received),
            ("events", "MQTT messages decoded into events", m.events),
            ("acked", "MQTT messages acknowledged after commit", m.acked),
            ("stale_acks", "Acks dropped because their connection had ended", m.stale_acks),
            ("connects", "Successful broker connections", m.connects),
            ("refusals", "Connections the broker refused", m.refusals),
            ("subscriptions_refused", "Subscriptions the broker refused", m.subscriptions_refused),
            ("disconnects", "Lost broker connections", m.disconnects),
            ("commands_sent", "Broadcast command publishes (retries included)", m.commands_sent),
        ]
        for name, text, value in plain:
            family = CounterMetricFamily(f"gridwatch_mqtt_{name}", text)
            family.add_metric([], float(value))
            yield family
        yield _labelled("gridwatch_mqtt_rejected", "Rejected MQTT messages", "reason", m.rejected)
        yield _labelled(
            "gridwatch_mqtt_commands", "Broadcast commands by outcome", "outcome", m.commands
        )


def _labelled(name: str, text: str, label: str, counts: Any) -> CounterMetricFamily:
    family = CounterMetricFamily(name, text, labels=[label])
    for key, value in sorted(counts.items()):
        family.add_metric([str(key)], float(value))
    return family
