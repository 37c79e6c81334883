"""Shared pieces of the MQTT integration tests: a fake writer and broker helpers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters.mqtt import DeviceInfo, MqttSettings, OnCommitted
from camera_registry.events import DeviceEvent, RejectedMessage
from camera_registry.models import DeviceKind
from tests.peers import peer_missing, port_open

__all__ = [
    "MACHINE_BROKER",
    "FakeWriter",
    "Publisher",
    "Registry",
    "drop_session",
    "machine_broker",
    "settings_for",
    "unique_prefix",
]

MACHINE_BROKER = ("127.0.0.1", 1883)


def machine_broker() -> tuple[str, int]:
    """The machine's Mosquitto, or skip/fail when it is not running."""
    if not port_open(*MACHINE_BROKER):
        peer_missing("mosquitto", "nothing listens on 127.0.0.1:1883")
    return MACHINE_BROKER


def unique_prefix() -> str:
    """A topic prefix of this test only, so parallel or leftover traffic cannot interfere."""
    return f"gwtest-{uuid.uuid4().hex[:10]}/v1"


def settings_for(
    host: str,
    port: int,
    prefix: str,
    *,
    client_id: str | None = None,
    protocol: Literal["5", "3.1.1"] = "5",
    **extra: object,
) -> MqttSettings:
    """Adapter settings for a test broker with fast reconnects."""
    return MqttSettings.model_validate(
        {
            "host": host,
            "port": port,
            "client_id": client_id or f"gw-test-{uuid.uuid4().hex[:12]}",
            "protocol": protocol,
            "topic_prefix": prefix,
            "session_expiry_s": 300,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 1.0,
            **extra,
        }
    )


@dataclass
class Registry:
    """An in-memory device registry for `device_lookup`."""

    devices: dict[str, DeviceInfo] = field(default_factory=dict)

    def add(self, device_id: str, kind: DeviceKind) -> Registry:
        self.devices[device_id] = DeviceInfo(device_id, kind)
        return self

    def lookup(self, device_id: str) -> DeviceInfo | None:
        return self.devices.get(device_id)


class FakeWriter:
    """The hub's writer, faked: records, dedups by key, commits after a delay (or on demand)."""

    def __init__(self, *, commit_delay: float = 0.005, hold: bool = False) -> None:
        self.commit_delay = commit_delay
        self.hold = hold
        self.items: list[DeviceEvent | RejectedMessage] = []
        self.stored: dict[str, DeviceEvent] = {}
        self.duplicates = 0
        self.held: list[OnCommitted] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    async def submit(
        self, item: DeviceEvent | RejectedMessage, on_committed: OnCommitted | None
    ) -> None:
        with self.changed:
            self.items.append(item)
            if isinstance(item, DeviceEvent) and item.dedup_key is not None:
                if item.dedup_key in self.stored:
                    self.duplicates += 1
                else:
                    self.stored[item.dedup_key] = item
            self.changed.notify_all()
        if on_committed is None:
            return
        if self.hold:
            self.held.append(on_committed)
        else:
            asyncio.get_running_loop().call_later(self.commit_delay, on_committed)

    def commit_held(self) -> None:
        held, self.held = self.held, []
        for callback in held:
            callback()

    def events(self, kind: str | None = None) -> list[DeviceEvent]:
        with self.lock:
            return [i for i in self.items if isinstance(i, DeviceEvent) and kind in (None, i.kind)]

    def rejections(self) -> list[RejectedMessage]:
        with self.lock:
            return [i for i in self.items if isinstance(i, RejectedMessage)]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                kinds = [getattr(i, "kind", None) or getattr(i, "reason", "") for i in self.items]
                raise AssertionError(f"condition not met within {timeout} s; got {kinds}")
            await asyncio.sleep(0.02)


class Publisher:
    """A plain paho publisher for raw payloads (QoS 1, waits for the broker's PUBACK)."""

    def __init__(self, host: str, port: int) -> None:
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"gw-test-pub-{uuid.uuid4().hex[:8]}",
        )
        self._client.connect(host, port)
        self._client.loop_start()

    def send(self, topic: str, payload: bytes | dict[str, object], *, retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        info = self._client.publish(topic, body, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"broker did not accept {topic}"

    def send_nowait(self, topic: str, payload: bytes) -> paho.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def drop_session(host: str, port: int, client_id: str) -> None:
    """Remove a persistent session the test left on the broker."""
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
    )
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    client.connect(host, port, clean_start=True, properties=properties)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()
