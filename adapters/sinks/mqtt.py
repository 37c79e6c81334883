"""MQTT delivery: publish at QoS 1 and count it delivered only on PUBACK.

paho runs its network loop in its own thread; waiting for the PUBACK happens in
a worker thread so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from adapters.sinks.errors import DeliveryFailed

__all__ = ["MqttSink"]

log = logging.getLogger(__name__)


class MqttSink:
    """Publishes each message to one topic at QoS 1."""

    def __init__(self, name: str, url: str, topic: str, *, timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("MQTT sink URL must look like mqtt://host:1883")
        self.name = name
        self._host = parts.hostname
        self._port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self._tls = parts.scheme == "mqtts"
        self._username = parts.username
        self._password = parts.password
        self._topic = topic
        self._timeout = timeout_s
        self._client: mqtt.Client | None = None

    async def start(self) -> None:
        """Connect in the background; paho reconnects by itself."""
        if self._client is not None:
            return
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"gridwatch-sink-{self.name}-{uuid.uuid4().hex[:8]}",
            clean_session=True,
        )
        if self._username:
            client.username_pw_set(self._username, self._password)
        if self._tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        client.connect_async(self._host, self._port, keepalive=30)
        client.loop_start()
        self._client = client

    @property
    def connected(self) -> bool:
        """True while the connection to the broker is up."""
        return self._client is not None and self._client.is_connected()

    async def close(self) -> None:
        """Disconnect and stop paho's thread."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    async def deliver(self, message_id: str, body: bytes, content_type: str) -> str:
        """Publish at QoS 1; return once the broker's PUBACK arrived."""
        await self.start()
        client = self._client
        assert client is not None  # noqa: S101 - started just above
        if not client.is_connected():
            raise DeliveryFailed("not connected to the MQTT broker")
        info = client.publish(self._topic, body, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryFailed(f"MQTT publish refused: {mqtt.error_string(info.rc)}")

        def wait() -> bool:
            try:
                info.wait_for_publish(self._timeout)
            except (RuntimeError, ValueError):
                return False
            return bool(info.is_published())

        if not await asyncio.to_thread(wait):
            raise DeliveryFailed(f"no PUBACK within {self._timeout}s")
        return f"mqtt PUBACK (topic {self._topic}, mid {info.mid})"

    def __repr__(self) -> str:
        return f"MqttSink({self.name!r}, {self._host}:{self._port}, {self._topic!r})"
