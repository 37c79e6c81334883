"""The registry's in-process view: a lookup cache for hot paths and the change listeners.

The cache (`RegistryCache`) answers `lookup` and `lookup_mqtt` without I/O from any
thread; the registry refreshes it on every change it commits and reloads it whole
for changes made by another hub node. Listeners (`ChangeListeners`) are told after
every committed change; one failing listener does not keep the others from hearing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from hub.devices import storage as repo
from hub.devices.registry_types import CachedDevice, DeviceChange

__all__ = ["ChangeListeners", "RegistryCache"]

log = logging.getLogger(__name__)


class RegistryCache:
    """Every device's id, kind, MQTT id, path and switch, by id and by MQTT id."""

    def __init__(self) -> None:
        self._by_id: dict[str, CachedDevice] = {}
        self._by_mqtt: dict[str, CachedDevice] = {}
        self._lock = threading.Lock()

    def lookup(self, device_id: str) -> CachedDevice | None:
        """The cached device with this registry id."""
        return self._by_id.get(device_id)

    def lookup_mqtt(self, mqtt_device_id: str) -> CachedDevice | None:
        """The cached device with this MQTT device id."""
        return self._by_mqtt.get(mqtt_device_id)

    def replace(self, devices: Iterable[CachedDevice]) -> None:
        """Swap in a whole new content (after a reload from storage)."""
        by_id = {c.id: c for c in devices}
        by_mqtt = {c.mqtt_device_id: c for c in by_id.values() if c.mqtt_device_id}
        with self._lock:
            self._by_id, self._by_mqtt = by_id, by_mqtt

    def put(self, rows: Iterable[repo.DeviceRow]) -> None:
        """Add or replace the written devices."""
        with self._lock:
            for row in rows:
                d = row.device
                old = self._by_id.get(d.id)
                if old is not None and old.mqtt_device_id:
                    self._by_mqtt.pop(old.mqtt_device_id, None)
                entry = CachedDevice(
                    d.id, d.kind.value, d.mqtt_device_id, row.jurisdiction_path, d.enabled
                )
                self._by_id[d.id] = entry
                if d.mqtt_device_id:
                    self._by_mqtt[d.mqtt_device_id] = entry

    def drop(self, device_id: str) -> None:
        """Forget a deleted device."""
        with self._lock:
            old = self._by_id.pop(device_id, None)
            if old is not None and old.mqtt_device_id:
                self._by_mqtt.pop(old.mqtt_device_id, None)


class ChangeListeners:
    """Who wants to hear of committed registry changes."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[DeviceChange], None]] = []

    def add(self, listener: Callable[[DeviceChange], None]) -> Callable[[], None]:
        """Call `listener` after every committed change; returns an unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def notify(self, change: DeviceChange) -> None:
        """Tell every listener (a failing one is logged, the others still hear)."""
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("device change listener failed")
