"""MQTT on several hub nodes: liveness judged once from the database, dead nodes' sessions drained.

**Liveness.** With `mqtt.shared_group`, the broker spreads a device's heartbeats over
the nodes, so no node's memory knows when the device was last heard and a node that
did not get its heartbeats must not call it offline. Instead every node records, in
each batch's transaction, what its stored MQTT events prove (`mqtt_liveness`); the
node that owns the device by the cluster's assignment (`Cluster.is_mine`) looks once
a second for devices past their deadline and submits the missed-heartbeat
`device.offline` event. That event's dedup key is made from the last-heard time the
database holds, the same on every node, so even two nodes judging at once store it
once; and its health change is applied only if, in its transaction, the device is
still not heard since (`confirm_offline` takes the row's lock, so a heartbeat another
node commits at the same moment wins). A last will (`availability` offline) is an
ordinary message: one node gets it and stores it once. When a node dies, its devices
pass to the survivors with the assignment (≤ node_timeout_s + a heartbeat) and their
deadlines are still in the table.

**Sessions of dead nodes.** Each node has its own persistent session (client id
`<client_id>-<node id>`). Mosquitto keeps routing a shared group's messages to a
member whose connection died, queueing them in its session, and it drops what a
session held when the session ends. So the survivor that owns a dead or stopped node
(`is_mine("mqtt-session:<node>")`), once the node has been silent for two node
timeouts (a node merely late with its heartbeats is still connected to the broker, and
taking its session would only kick it off) or has left cleanly, connects with that
node's client id, unsubscribes
the shared filters at once (nothing new goes there), stores what the broker still
held, acknowledging each message after its commit, and when all is acknowledged and
nothing came for `quiet_s`, disconnects with session expiry 0 (the session is
deleted). A node that comes back with its id takes its session over from the
drainer (the broker ends the drainer's connection); dedup absorbs a message both saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from adapters.mqtt import ConnectionState, DeviceInfo, MqttAdapter, UnitStatus
from adapters.mqtt.parsers import HEARTBEAT_KIND, OFFLINE_KIND, SOURCE, status_from_event
from adapters.mqtt.sharing import node_client_id
from camera_registry.events import DeviceEvent, Severity
from hub.cluster import Cluster
from hub.config import MqttHubSettings
from hub.mqtt import liveness_storage
from hub.mqtt.liveness_storage import Heard, Silent
from hub.mqtt.storage import last_heard
from hub.storage.base import SqlStore, Tx
from hub.writer import EventWriter

__all__ = ["SessionTakeover", "SharedLiveness", "missed_heartbeats", "session_key"]

log = logging.getLogger(__name__)

#: How often the owner of a device looks for silent ones (s), as a single node does.
CHECK_S = 1.0


def session_key(node_id: str) -> str:
    """The assignment key of a node's MQTT session (who drains it when the node is gone)."""
    return f"mqtt-session:{node_id}"


def _missed_verdict(event: DeviceEvent) -> bool:
    return event.kind == OFFLINE_KIND and event.payload.get("reason") == "heartbeat_missed"


def missed_heartbeats(silent: Silent, now: datetime) -> DeviceEvent:
    """The `device.offline` verdict for a silent device (the same event a single node's
    trackers make); its dedup key comes from the stored last-heard time, so every node
    that judges the same silence makes the same key."""
    last = silent.last_heard.isoformat()
    return DeviceEvent(
        time=now,
        device_id=silent.device_id,
        kind=OFFLINE_KIND,
        severity=Severity.WARNING,
        source=SOURCE,
        payload={"reason": "heartbeat_missed", "last_heard": last, "interval_s": silent.interval_s},
        dedup_key=f"mqtt:{silent.device_id}:missed:{last}",
    )


class SharedLiveness:
    """Heartbeat liveness of the MQTT devices, kept in the database (see the module)."""

    def __init__(
        self,
        settings: MqttHubSettings,
        *,
        store: SqlStore,
        writer: EventWriter,
        device_ids: Callable[[], Sequence[str]],
        cluster: Cluster | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._device_ids = device_ids
        self.cluster = cluster
        # The silence limit in intervals, as the single-node trackers' heartbeat policy.
        self._factor = settings.heartbeat_missed_intervals + settings.heartbeat_grace_intervals
        self._missed = settings.heartbeat_missed_intervals
        #: (device, last heard) verdicts submitted and not yet seen settled.
        self._submitted: set[tuple[str, datetime]] = set()
        self.declared = 0

    async def in_transaction(self, tx: Tx, events: Sequence[DeviceEvent]) -> set[str]:
        """Record what the batch's stored MQTT events prove; the ids of missed-heartbeat
        verdicts that came too late (the device was heard since) and prove nothing."""
        heard: list[Heard] = []
        stale: set[str] = set()
        for event in events:
            if event.source != SOURCE or event.kind.startswith("health."):
                continue
            if _missed_verdict(event):
                last = datetime.fromisoformat(str(event.payload.get("last_heard")))
                if not await liveness_storage.confirm_offline(tx, event.device_id, last):
                    stale.add(event.event_id.hex)
                continue
            if status_from_event(event) is UnitStatus.OFFLINE:
                await liveness_storage.stop_watching(tx, event.device_id, event.time)
                continue
            interval = event.payload.get("interval_s") if event.kind == HEARTBEAT_KIND else None
            heard.append(
                Heard(
                    event.device_id,
                    event.time,
                    float(interval) if isinstance(interval, int | float) else None,
                )
            )
        await liveness_storage.record_heard(tx, heard, self._factor)
        return stale

    async def seed(self) -> None:
        """Watch devices heard before the shared record held them (first start shared)."""
        heard = await last_heard(
            self._store, list(self._device_ids()), heartbeat_kind=HEARTBEAT_KIND
        )
        await liveness_storage.seed(
            self._store, [Silent(h.device_id, h.at, h.interval_s) for h in heard], self._factor
        )

    async def check(self, now: datetime) -> int:
        """Submit the missed-heartbeat verdicts of this node's silent devices; how many."""
        silent = await liveness_storage.overdue(self._store, now)
        registered = set(self._device_ids())
        due = {(s.device_id, s.last_heard) for s in silent}
        self._submitted &= due  # settled verdicts leave the table's overdue list
        submitted = 0
        for entry in silent:
            key = (entry.device_id, entry.last_heard)
            if entry.device_id not in registered or key in self._submitted:
                continue
            if self.cluster is not None and not self.cluster.is_mine(entry.device_id):
                continue
            self._submitted.add(key)
            log.warning(
                "device %s missed %d heartbeats (last heard %s)",
                entry.device_id,
                self._missed,
                entry.last_heard.isoformat(),
            )
            await self._writer.submit(missed_heartbeats(entry, now), None)
            submitted += 1
        self.declared += submitted
        return submitted

    async def run(self, clock: Callable[[], datetime]) -> None:
        """Check once a second until cancelled."""
        while True:
            await asyncio.sleep(CHECK_S)
            try:
                await self.check(clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checking MQTT heartbeats failed; will retry")


@dataclass
class DrainResult:
    """What draining one node's session did."""

    node_id: str
    received: int
    complete: bool


class SessionTakeover:
    """Drains the broker sessions of dead or stopped nodes this node owns (see the module)."""

    def __init__(
        self,
        settings: MqttHubSettings,
        *,
        node_id: str,
        cluster: Cluster,
        writer: EventWriter,
        device_lookup: Callable[[str], DeviceInfo | None],
        quiet_s: float = 2.0,
        check_s: float = 5.0,
        dead_for_s: float | None = None,
        limit_s: float = 300.0,
    ) -> None:
        self._settings = settings
        self._node_id = node_id
        self._cluster = cluster
        self._writer = writer
        self._lookup = device_lookup
        self._quiet_s = quiet_s
        self._check_s = check_s
        self._limit_s = limit_s
        # A node late with its heartbeats on a loaded machine is still connected to the
        # broker: taking its session would only kick it off. Drain a node silent for
        # two timeouts (or one that left cleanly).
        self._dead_for_s = (
            dead_for_s if dead_for_s is not None else 2 * cluster.settings.node_timeout_s
        )
        self._wake = asyncio.Event()
        #: (node, its last heartbeat) already drained by this node.
        self._drained: set[tuple[str, datetime]] = set()
        self.results: list[DrainResult] = []

    def wake(self) -> None:
        """Membership changed: look for sessions to drain now."""
        self._wake.set()

    async def run(self) -> None:
        """Drain what falls to this node until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("MQTT: draining the sessions of departed nodes failed; will retry")

    async def drain_due(self) -> list[DrainResult]:
        """Drain every departed node's session this node owns and has not drained."""
        done = []
        for node in await self._cluster.nodes():
            key = (node.node_id, node.heartbeat_at)
            if node.this_node or node.state == "alive" or key in self._drained:
                continue
            if node.state == "dead" and node.heartbeat_age_s < self._dead_for_s:
                continue
            if not self._cluster.is_mine(session_key(node.node_id)):
                continue
            result = await self.drain(node.node_id)
            if result.complete:
                self._drained.add(key)
            done.append(result)
        return done

    async def drain(self, node_id: str) -> DrainResult:
        """Take the node's session, store what it held, delete it."""
        base = self._settings.adapter_settings()
        settings = base.model_copy(update={"client_id": node_client_id(base.client_id, node_id)})
        adapter = MqttAdapter(
            settings,
            submit=self._writer.submit,
            device_lookup=self._lookup,
            drain_only=True,
        )
        complete = False
        async with adapter:
            if not await adapter.wait_connected(10.0):
                log.warning("MQTT: could not take the session of node %s (yet)", node_id)
                return DrainResult(node_id, 0, False)
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            while time.monotonic() - started < self._limit_s:
                await asyncio.sleep(0.2)
                if adapter.state.state is not ConnectionState.CONNECTED:
                    # The node came back and took its session: it handles the rest.
                    log.info("MQTT: node %s took its session back", node_id)
                    complete = True
                    break
                last = adapter.last_message_at
                quiet = last is None or loop.time() - last >= self._quiet_s
                if quiet and adapter.unacked == 0 and time.monotonic() - started >= self._quiet_s:
                    adapter.end_session_on_close()
                    complete = True
                    break
        received = adapter.metrics.received
        log.info(
            "MQTT: drained the session of node %s: %d messages stored%s",
            node_id,
            received,
            "" if complete else " (not finished; will retry)",
        )
        result = DrainResult(node_id, received, complete)
        self.results.append(result)
        return result
