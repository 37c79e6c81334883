"""The demo's simulated panic buttons and broadcast units.

Over a broker they are `adapters.sim` MQTT clients publishing the documented topics.
Without one, each message goes through the MQTT adapter's own parser, with the hub's
device directory, straight to the writer.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.mqtt.models import DeviceInfo
from adapters.mqtt.parsers import InboundMessage, Rejection, decode_message
from adapters.sim import BroadcastUnitSim, District, PanicButtonSim
from camera_registry.events import DeviceEvent

__all__ = [
    "DemoFleet",
    "InjectedDevice",
    "injected_fleet",
    "start_mqtt_devices",
    "stop_mqtt_devices",
]

log = logging.getLogger(__name__)


class InjectedDevice:
    """Without a broker: a simulated device whose messages go through the MQTT
    adapter's parser straight to the writer (same payloads, same decoding).

    `lookup` is the hub's MQTT device directory, as the adapter uses it: the topic's
    id becomes the registered device, so events carry the registry id and, through
    it, the device's jurisdiction.
    """

    def __init__(
        self,
        mqtt_id: str,
        lookup: Callable[[str], DeviceInfo | None],
        submit: Callable[[DeviceEvent], None],
    ) -> None:
        self.device_id = mqtt_id
        self._lookup = lookup
        self._submit = submit

    def _send(self, suffix: str, body: dict[str, Any]) -> None:
        message = InboundMessage(
            f"gridwatch/v1/{self.device_id}/{suffix}",
            json.dumps(body).encode(),
            False,
            datetime.now(UTC),
        )
        decoded = decode_message(
            message,
            prefix="gridwatch/v1",
            lookup=self._lookup,
            max_payload_bytes=64 * 1024,
            vendor_mappings=(),
        )
        if isinstance(decoded, Rejection):
            log.warning("demo: simulated %s message refused: %s", self.device_id, decoded)
            return
        self._submit(decoded)

    def press(self, *, drill: bool = False) -> str:
        """A panic press; returns its message id."""
        msg_id = uuid.uuid4().hex
        body: dict[str, Any] = {"v": 1, "msg_id": msg_id, "type": "panic.press"}
        if drill:
            body["drill"] = True
        self._send("event", {**body, "time": datetime.now(UTC).isoformat()})
        return msg_id

    def restore(self) -> str:
        """The button released; returns its message id."""
        msg_id = uuid.uuid4().hex
        self._send("event", {"v": 1, "msg_id": msg_id, "type": "panic.restore"})
        return msg_id

    def heartbeat(self, *, battery: int | None = None) -> None:
        """One heartbeat."""
        body: dict[str, Any] = {"v": 1, "interval_s": 60}
        if battery is not None:
            body["battery"] = battery
        self._send("heartbeat", body)

    def low_battery(self, level: int) -> str:
        """A low-battery report; returns its message id."""
        msg_id = uuid.uuid4().hex
        self._send(
            "event", {"v": 1, "msg_id": msg_id, "type": "device.low_battery", "battery": level}
        )
        return msg_id

    def online(self) -> None:
        """The device announces itself online."""
        self._send("availability", {"v": 1, "state": "online"})


@dataclass
class DemoFleet:
    """The demo's simulated MQTT devices by MQTT id (over a broker or injected)."""

    buttons: dict[str, Any] = field(default_factory=dict)  # mqtt id → sim
    units: dict[str, Any] = field(default_factory=dict)
    over_mqtt: bool = False

    def all(self) -> list[Any]:
        """Every simulated device."""
        return [*self.buttons.values(), *self.units.values()]


def start_mqtt_devices(district: District, port: int) -> DemoFleet:
    """One paho client per device (96 light clients), connected in parallel."""
    fleet = DemoFleet(over_mqtt=True)
    sims: list[Any] = []
    for device in district.panic_buttons:
        assert device.mqtt_device_id is not None  # noqa: S101 - the district sets it
        sim = PanicButtonSim(device.mqtt_device_id, port=port)
        fleet.buttons[device.mqtt_device_id] = sim
        sims.append(sim)
    for device in district.broadcast_units:
        assert device.mqtt_device_id is not None  # noqa: S101
        unit = BroadcastUnitSim(device.mqtt_device_id, port=port, play_seconds=8.0)
        fleet.units[device.mqtt_device_id] = unit
        sims.append(unit)
    with ThreadPoolExecutor(16, thread_name_prefix="sim-connect") as pool:
        list(pool.map(lambda s: s.start(timeout=10.0), sims))
    return fleet


def stop_mqtt_devices(fleet: DemoFleet) -> None:
    """Disconnect every simulated device (in parallel)."""
    if not fleet.over_mqtt:
        return

    def stop(sim: Any) -> None:
        try:
            sim.stop()
        except Exception:
            log.exception("demo: stopping simulated device %s failed", sim.device_id)

    with ThreadPoolExecutor(16, thread_name_prefix="sim-stop") as pool:
        list(pool.map(stop, fleet.all()))


def injected_fleet(
    district: District,
    lookup: Callable[[str], DeviceInfo | None],
    submit: Callable[[DeviceEvent], None],
) -> DemoFleet:
    """The district's buttons and units as `InjectedDevice`s (no broker)."""
    return DemoFleet(
        buttons={
            d.mqtt_device_id: InjectedDevice(d.mqtt_device_id, lookup, submit)
            for d in district.panic_buttons
            if d.mqtt_device_id
        },
        units={
            d.mqtt_device_id: InjectedDevice(d.mqtt_device_id, lookup, submit)
            for d in district.broadcast_units
            if d.mqtt_device_id
        },
    )
