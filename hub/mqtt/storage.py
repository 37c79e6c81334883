"""What the MQTT side reads from the registry and the event store.

Devices of kind `alarm_point` (school panic buttons) and `broadcast_unit` are loaded whole
into the hub's in-memory directory through the device storage (the `devices` table's
owner); a cheap fingerprint (row count and newest `updated_at`) tells when another
node changed them. Device health is decided by the one health machine
(`camera_registry.health`) and stored through `hub.devices.health_storage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from camera_registry.models import HealthState
from hub.devices import storage as devices_repo
from hub.storage.base import SqlStore, from_json, from_ts

__all__ = [
    "MQTT_REGISTRY_KINDS",
    "LastHeard",
    "MqttDeviceRow",
    "last_heard",
    "load_mqtt_devices",
    "registry_fingerprint",
]

#: Registry kinds that talk MQTT.
MQTT_REGISTRY_KINDS = ("alarm_point", "broadcast_unit")


@dataclass(frozen=True, slots=True)
class MqttDeviceRow:
    """A registered MQTT device as the directory keeps it."""

    device_id: str
    kind: str
    name: str
    mqtt_device_id: str | None
    jurisdiction_path: str | None
    tags: tuple[str, ...]


async def load_mqtt_devices(store: SqlStore) -> list[MqttDeviceRow]:
    """Every registered panic button (`alarm_point`) and broadcast unit."""
    return [
        MqttDeviceRow(
            device_id=row.device_id,
            kind=row.kind,
            name=row.name,
            mqtt_device_id=row.mqtt_device_id,
            jurisdiction_path=row.jurisdiction_path,
            tags=row.tags,
        )
        for row in await devices_repo.devices_of_kinds(store, MQTT_REGISTRY_KINDS)
    ]


_STATES = frozenset(state.value for state in HealthState)
#: Device ids per IN list (well under either backend's parameter limit).
_IDS_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class LastHeard:
    """When a heartbeat-sending device was last heard, and its announced interval."""

    device_id: str
    at: datetime
    interval_s: float
    #: Its stored health (never offline: offline devices are not watched).
    health: HealthState = HealthState.UNKNOWN


async def last_heard(
    store: SqlStore, device_ids: Sequence[str], *, heartbeat_kind: str
) -> list[LastHeard]:
    """For each of `device_ids` that has sent a heartbeat (events of `heartbeat_kind`)
    and is not offline now: the newest evidence of it (any stored event) and the
    interval of its newest heartbeat.

    What the hub knew before a restart, so that a device that went silent while the
    hub was down (or just before) is still declared offline after its missed
    heartbeats instead of never.
    """
    found: list[LastHeard] = []
    async with store.reading() as tx:
        state: dict[str, tuple[Any, datetime | None]] = {}
        for start in range(0, len(device_ids), _IDS_PER_QUERY):
            chunk = device_ids[start : start + _IDS_PER_QUERY]
            rows = await tx.fetchall(
                "SELECT device_id, health, last_seen_at FROM device_state"  # noqa: S608 - placeholders only
                f" WHERE device_id IN ({', '.join('%s' for _ in chunk)})",
                chunk,
            )
            state.update({str(row[0]): (row[1], from_ts(row[2])) for row in rows})
        # One indexed look-up (events by device and time) per device: the newest
        # heartbeat is near the top of each, where a grouped scan would read them all.
        for device_id in device_ids:
            health, seen = state.get(device_id, (None, None))
            if health == "offline":
                continue
            row = await tx.fetchone(
                "SELECT time, payload FROM events WHERE device_id = %s AND kind = %s"
                " ORDER BY time DESC LIMIT 1",
                (device_id, heartbeat_kind),
            )
            if row is None:
                continue
            beat = from_ts(row[0])
            payload = from_json(row[1])
            interval = payload.get("interval_s") if isinstance(payload, dict) else None
            if beat is None or not isinstance(interval, int | float) or interval <= 0:
                continue
            stored = HealthState(health) if health in _STATES else HealthState.UNKNOWN
            found.append(LastHeard(device_id, max(beat, seen or beat), float(interval), stored))
    return found


async def registry_fingerprint(store: SqlStore) -> tuple[int, str]:
    """Changes whenever an MQTT device is added, removed or updated."""
    return await devices_repo.kinds_fingerprint(store, MQTT_REGISTRY_KINDS)
