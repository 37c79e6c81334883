"""MQTT devices' liveness and health, through the one health state machine.

Every panic button and broadcast unit heard on this node has one `HealthTracker`
(`camera_registry.health`), the same machine the cameras and GB/T 28181 devices go
through. Its policy is `CONCLUSIVE` (a broker's last will, a unit's own status, a
heartbeat verdict are proof enough) plus, once the device announced its heartbeat
interval, a heartbeat policy: `missed_intervals` intervals and `grace_intervals` of one
with no sign of life take it offline (3 + 0.5 at the default 20 s: 70 s after it was
last heard, within the 90 s a path failure must be reported in, EN 50136).

- `decide` runs in the writer's transaction (`MqttService.in_transaction`): the health
  each device's MQTT events prove is observed by its tracker, continued from the stored
  health whenever that is not the tracker's own state (the hub restarted, or the state
  changed elsewhere); the transitions are what the hook stores. Every other event of
  the device (a press, a command ack) is a sign of life for the heartbeat clock.
- `overdue`, once every `CHECK_S`: the trackers whose heartbeat silence ran out; each
  becomes a `device.offline` event (reason `heartbeat_missed`, `last_heard`) handed to
  the writer like any other, so the hook stores the transition and the alarm engine
  sees it in the same batch. A device is reported once, until it is heard again.
- `seed`, at start: a device heard before this start and silent since is still
  watched from when it was last heard.

Pure bookkeeping: times come in with the calls, nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.mqtt.parsers import HEARTBEAT_KIND, OFFLINE_KIND, ONLINE_KIND, SOURCE
from camera_registry.events import DeviceEvent, Severity
from camera_registry.health import (
    HEALTH_EVENT_PREFIX,
    Evidence,
    HealthPolicy,
    HealthTracker,
    Transition,
)
from camera_registry.models import HealthState
from hub.devices.health_storage import StoredHealth

__all__ = [
    "CHECK_S",
    "HealthChange",
    "MqttHealth",
    "health_changes",
]

#: How often the hub looks for devices whose heartbeats stopped (s).
CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A device's health as proven by one stored event."""

    device_id: str
    health: str
    at: datetime
    reason: str
    code: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    #: The heartbeat interval the event announced (heartbeats only).
    interval_s: float | None = None


def _offline_reason(event: DeviceEvent) -> tuple[str, str, dict[str, Any]]:
    if event.payload.get("reason") == "heartbeat_missed":
        last = event.payload.get("last_heard")
        return (
            f"missed heartbeats over MQTT (last heard {last})",
            "heartbeat.missed",
            {"last_heard": last},
        )
    if event.payload.get("retained"):
        return "offline over MQTT (retained availability / last will)", "mqtt.last_will", {}
    return "offline over MQTT (availability / last will)", "mqtt.last_will", {}


_Health = tuple[str, str, str, dict[str, Any]]


def _health_of(event: DeviceEvent) -> _Health | None:
    """(health, reason, reason code, code parameters) an MQTT event proves, if any."""
    if event.source != SOURCE or event.kind.startswith(HEALTH_EVENT_PREFIX):
        return None
    if event.kind == ONLINE_KIND:
        return "online", "announced online over MQTT", "mqtt.online", {}
    if event.kind == HEARTBEAT_KIND:
        return "online", "MQTT heartbeat", "mqtt.heartbeat", {}
    if event.kind == OFFLINE_KIND:
        return ("offline", *_offline_reason(event))
    if event.kind == "broadcast.status":
        status = event.payload.get("status")
        if status == "fault":
            detail = event.payload.get("detail") or "no detail"
            return (
                "degraded",
                f"unit reports a fault: {detail}",
                "unit.fault",
                {"detail": detail},
            )
        return "online", f"unit reports {status}", "unit.status", {"status": status}
    return None


def _interval(event: DeviceEvent) -> float | None:
    if event.kind != HEARTBEAT_KIND:
        return None
    value = event.payload.get("interval_s")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def health_changes(events: Sequence[DeviceEvent]) -> list[HealthChange]:
    """The newest health each device's stored MQTT events prove (one change per device)."""
    latest: dict[str, HealthChange] = {}
    for event in events:
        health = _health_of(event)
        if health is None:
            continue
        current = latest.get(event.device_id)
        if current is None or event.time >= current.at:
            latest[event.device_id] = HealthChange(
                event.device_id,
                health[0],
                event.time,
                health[1],
                health[2],
                health[3],
                _interval(event),
            )
    return list(latest.values())


class MqttHealth:
    """The health trackers of this node's MQTT devices."""

    def __init__(self, missed_intervals: int, grace_intervals: float = 0.0) -> None:
        # One conclusive observation moves the state; the heartbeat part is per device.
        self._policy = HealthPolicy(
            failures_to_offline=1,
            faults_to_degrade=1,
            missed_heartbeats_to_offline=missed_intervals,
            heartbeat_grace_intervals=grace_intervals,
        )
        self._trackers: dict[str, HealthTracker] = {}

    def _policy_for(self, interval_s: float | None) -> HealthPolicy:
        if interval_s is None:
            return self._policy
        return self._policy.model_copy(update={"heartbeat_interval_s": interval_s})

    def state_of(self, device_id: str) -> HealthState | None:
        """The device's health as this node's tracker holds it (None: never heard)."""
        tracker = self._trackers.get(device_id)
        return tracker.state if tracker is not None else None

    def seed(
        self, device_id: str, last_heard: datetime, interval_s: float, state: HealthState
    ) -> None:
        """Watch a device heard before this start (silence counts from `last_heard`);
        a device already heard since is left as it is."""
        if device_id not in self._trackers:
            self._trackers[device_id] = HealthTracker.resume(
                device_id, self._policy_for(interval_s), state, last_heard, "stored state"
            )

    def _continued(self, device_id: str, stored: StoredHealth, at: datetime) -> HealthTracker:
        """The device's tracker, continued from `stored` when its state is not the tracker's."""
        tracker = self._trackers.get(device_id)
        state = HealthState(stored.health)
        if tracker is not None and tracker.state is state:
            return tracker
        policy = tracker.policy if tracker is not None else self._policy
        resumed = HealthTracker.resume(
            device_id, policy, state, stored.since or at, stored.reason or ""
        )
        self._trackers[device_id] = resumed
        return resumed

    def decide(
        self,
        changes: Sequence[HealthChange],
        stored: dict[str, StoredHealth],
        events: Sequence[DeviceEvent] = (),
    ) -> list[Transition]:
        """The transitions the devices' trackers make of `changes`, each continued from
        its `stored` health (devices without one are not registered: skipped); `events`
        of the batch are then signs of life for the heartbeat clock."""
        transitions: list[Transition] = []
        for change in sorted(changes, key=lambda c: c.at):
            current = stored.get(change.device_id)
            if current is None:
                continue
            tracker = self._continued(change.device_id, current, change.at)
            if change.interval_s is not None:
                tracker.policy = self._policy_for(change.interval_s)
            observed = HealthState(change.health)
            evidence = Evidence(
                observed,
                change.reason[:500] or "MQTT",
                source=SOURCE,
                details={"code": change.code, "params": dict(change.params)} if change.code else {},
            )
            transition = tracker.observe(observed, evidence, change.at)
            if transition is not None:
                transitions.append(transition)
                stored[change.device_id] = StoredHealth(
                    change.device_id, transition.state.value, transition.at, transition.reason
                )
        for event in events:
            if event.source == SOURCE and (heard := self._trackers.get(event.device_id)):
                heard.heard(event.time)
        return transitions

    def overdue(self, now: datetime) -> list[DeviceEvent]:
        """A `device.offline` event for each device whose heartbeats stopped (once each)."""
        found: list[DeviceEvent] = []
        for tracker in self._trackers.values():
            last_heard = tracker.status().last_evidence_at
            transition = tracker.check_heartbeat(now)
            if transition is None or last_heard is None:
                continue
            interval = tracker.policy.heartbeat_interval_s
            found.append(
                DeviceEvent(
                    time=now,
                    device_id=tracker.device_id,
                    kind=OFFLINE_KIND,
                    severity=Severity.WARNING,
                    source=SOURCE,
                    payload={
                        "reason": "heartbeat_missed",
                        "last_heard": last_heard.isoformat(),
                        "interval_s": interval,
                    },
                    dedup_key=f"mqtt:{tracker.device_id}:missed:{last_heard.isoformat()}",
                )
            )
        return found
