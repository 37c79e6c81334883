"""MQTT heartbeat liveness: which devices went silent, and the `device.offline` event for them.

Pure bookkeeping: times come in with the calls, nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from adapters.mqtt.parsers import _OFFLINE_KIND, SOURCE
from camera_registry.events import DeviceEvent, Severity


@dataclass(frozen=True, slots=True)
class OverdueDevice:
    """A device that stopped sending heartbeats."""

    device_id: str
    last_heard: datetime
    interval_s: float


@dataclass
class _Liveness:
    last_heard: datetime
    interval_s: float
    reported: bool = False


def silence_limit_s(interval_s: float, missed_intervals: int, grace_intervals: float) -> float:
    """How long a device announcing heartbeats every `interval_s` may stay silent before
    it is offline: `missed_intervals` whole intervals plus `grace_intervals` of one, so
    the last of the missed heartbeats counts as missed only when it is clearly late (a
    heartbeat delayed after two lost ones is not an outage)."""
    return interval_s * (missed_intervals + grace_intervals)


@dataclass
class LivenessTracker:
    """Which heartbeat-sending devices went silent for `missed_intervals` intervals.

    Only devices that announced an interval (by a heartbeat) are watched; each silence
    is reported once, until the device is heard again. Silent means silent for longer
    than `silence_limit_s` (the adapter gives half an interval of grace).
    """

    missed_intervals: int
    grace_intervals: float = 0.0
    _devices: dict[str, _Liveness] = field(default_factory=dict)

    def heard(self, device_id: str, at: datetime, interval_s: float | None = None) -> None:
        """Record evidence that `device_id` is alive at `at`."""
        entry = self._devices.get(device_id)
        if entry is None:
            if interval_s is None:
                return
            self._devices[device_id] = _Liveness(at, interval_s)
            return
        entry.last_heard = max(entry.last_heard, at)
        entry.reported = False
        if interval_s is not None:
            entry.interval_s = interval_s

    def seed(self, device_id: str, last_heard: datetime, interval_s: float) -> None:
        """Watch a device heard before this tracker existed (the hub restarted);
        a device already heard since is left as it is."""
        if device_id not in self._devices:
            self._devices[device_id] = _Liveness(last_heard, interval_s)

    def forget(self, device_id: str) -> None:
        """Stop watching a device (it said it is offline)."""
        self._devices.pop(device_id, None)

    def overdue(self, now: datetime) -> list[OverdueDevice]:
        """Devices silent too long and not yet reported; marks them reported."""
        out: list[OverdueDevice] = []
        for device_id, entry in self._devices.items():
            deadline = entry.last_heard + timedelta(
                seconds=silence_limit_s(
                    entry.interval_s, self.missed_intervals, self.grace_intervals
                )
            )
            if not entry.reported and now > deadline:
                entry.reported = True
                out.append(OverdueDevice(device_id, entry.last_heard, entry.interval_s))
        return out


def missed_heartbeat_event(overdue: OverdueDevice, now: datetime) -> DeviceEvent:
    """The `device.offline` event for a device that stopped sending heartbeats."""
    return DeviceEvent(
        time=now,
        device_id=overdue.device_id,
        kind=_OFFLINE_KIND,
        severity=Severity.WARNING,
        source=SOURCE,
        payload={
            "reason": "heartbeat_missed",
            "last_heard": overdue.last_heard.isoformat(),
            "interval_s": overdue.interval_s,
        },
        dedup_key=f"mqtt:{overdue.device_id}:missed:{overdue.last_heard.isoformat()}",
    )
