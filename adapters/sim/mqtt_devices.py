"""Simulated MQTT field devices: school panic buttons and cloud broadcast units.

They speak the documented GridWatch MQTT protocol (``gridwatch/v1/...``, payload ``v`` 1)
over a real broker. The JSON is written here independently of the hub's own models on
purpose: a simulator that shared the hub's code would agree with the hub even where both
disagree with the published schemas.

Each simulator runs paho's network thread; its methods only queue a publish and return.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

__all__ = [
    "BroadcastUnitSim",
    "PanicButtonSim",
    "ReceivedCommand",
    "SimDevice",
]

logger = logging.getLogger(__name__)

_OFFLINE = json.dumps({"v": 1, "state": "offline"}).encode()


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


class SimDevice:
    """One simulated device with a last will, online announcement and optional heartbeats."""

    def __init__(
        self,
        device_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "gridwatch/v1",
        protocol: Literal["5", "3.1.1"] = "3.1.1",
        heartbeat_interval_s: float | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port
        self.prefix = prefix
        self.heartbeat_interval_s = heartbeat_interval_s
        self._connected = threading.Event()
        self._stop_heartbeats = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"sim-{device_id}-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5 if protocol == "5" else paho.MQTTv311,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.will_set(self.topic("availability"), _OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe

    def topic(self, suffix: str) -> str:
        """This device's topic for `suffix` (event, heartbeat, availability, cmd, cmd/ack)."""
        return f"{self.prefix}/{self.device_id}/{suffix}"

    # -------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 5.0) -> None:
        """Connect, announce online (retained), start heartbeats; block until connected."""
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise TimeoutError(f"simulated device {self.device_id} could not connect")
        if self.heartbeat_interval_s is not None:
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeats, name=f"sim-heartbeat-{self.device_id}", daemon=True
            )
            self._heartbeat_thread.start()

    def stop(self) -> None:
        """Go offline politely: publish retained ``offline``, then disconnect."""
        self._stop_heartbeats.set()
        info = self._client.publish(self.topic("availability"), _OFFLINE, qos=1, retain=True)
        info.wait_for_publish(5)
        self._client.disconnect()
        self._client.loop_stop()

    def crash(self) -> None:
        """Drop the connection without DISCONNECT, so the broker publishes the last will."""
        self._stop_heartbeats.set()
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client.is_connected():
            self.stop()
        else:
            self._client.loop_stop()

    # -------------------------------------------------------------- messages

    def publish(
        self, suffix: str, body: dict[str, Any] | bytes, *, retain: bool = False, qos: int = 1
    ) -> paho.MQTTMessageInfo:
        """Publish raw `body` (a dict is JSON-encoded) on this device's `suffix` topic."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._client.publish(self.topic(suffix), payload, qos=qos, retain=retain)

    def event(
        self, event_type: str, *, msg_id: str | None = None, retain: bool = False, **fields: Any
    ) -> str:
        """Publish an event; return its msg_id."""
        msg_id = msg_id or uuid.uuid4().hex
        body = {"v": 1, "msg_id": msg_id, "type": event_type, "time": _now_text(), **fields}
        self.publish("event", body, retain=retain)
        return msg_id

    def pause_heartbeats(self) -> None:
        """Stop sending heartbeats but stay connected (a hung device)."""
        self._stop_heartbeats.set()

    def heartbeat(self, *, battery: int | None = None) -> None:
        """Publish one heartbeat."""
        body: dict[str, Any] = {
            "v": 1,
            "interval_s": max(1, round(self.heartbeat_interval_s or 20)),
            "time": _now_text(),
        }
        if battery is not None:
            body["battery"] = battery
        self.publish("heartbeat", body)

    def low_battery(self, level: int) -> str:
        """Report a low battery (percent)."""
        return self.event("device.low_battery", battery=level)

    def tamper(self) -> str:
        """Report the enclosure opened."""
        return self.event("panic.tamper")

    def _announce_online(self) -> None:
        body = json.dumps({"v": 1, "state": "online", "time": _now_text()}).encode()
        self._client.publish(self.topic("availability"), body, qos=1, retain=True)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            logger.error("simulated device %s refused: %s", self.device_id, reason_code)
            return
        self._announce_online()
        if not self._subscribe(client):
            self._connected.set()

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, codes: Any, properties: Any
    ) -> None:
        self._connected.set()  # ready only once the broker confirmed the subscription

    def _subscribe(self, client: paho.Client) -> bool:
        """Subscribe to what this device listens to; False when it listens to nothing."""
        return False

    def _heartbeats(self) -> None:
        interval = self.heartbeat_interval_s or 60.0
        while not self._stop_heartbeats.wait(interval):
            self.heartbeat()


class PanicButtonSim(SimDevice):
    """A school one-touch panic button."""

    def press(self, *, msg_id: str | None = None, retain: bool = False, drill: bool = False) -> str:
        """The button is pressed (as a drill when `drill`); return the msg_id."""
        if drill:
            return self.event("panic.press", msg_id=msg_id, retain=retain, drill=True)
        return self.event("panic.press", msg_id=msg_id, retain=retain)

    def restore(self) -> str:
        """The button is released / restored on the device."""
        return self.event("panic.restore")


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    """A command as the simulated unit received it."""

    correlation_id: str
    attempt: int
    command: dict[str, Any]


@dataclass
class _UnitState:
    commands: list[ReceivedCommand] = field(default_factory=list)
    playing: bool = False


class BroadcastUnitSim(SimDevice):
    """A cloud broadcast (IP speaker) unit: acks, fails or ignores commands as configured.

    ``behaviour``: ``"ack"`` answers ok and reports ``busy`` for ``play_seconds`` after a
    play/tts; ``"fail"`` answers failed with ``fail_reason``; ``"ignore"`` never answers;
    ``"ignore_first"`` ignores attempt 1 and acks the retry.
    """

    def __init__(
        self,
        device_id: str,
        *,
        behaviour: Literal["ack", "fail", "ignore", "ignore_first"] = "ack",
        play_seconds: float = 0.5,
        fail_reason: str = "amplifier fault",
        on_command: Callable[[ReceivedCommand], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(device_id, **kwargs)
        self.behaviour = behaviour
        self.play_seconds = play_seconds
        self.fail_reason = fail_reason
        self.volume = 50
        self._on_command = on_command
        self._state = _UnitState()
        self._lock = threading.Lock()
        self._client.on_message = self._on_message

    @property
    def commands(self) -> list[ReceivedCommand]:
        """Every command received so far (retries included)."""
        with self._lock:
            return list(self._state.commands)

    @property
    def playing(self) -> bool:
        """True while a play/tts is running."""
        with self._lock:
            return self._state.playing

    def report_status(self, status: Literal["idle", "busy", "fault"]) -> str:
        """Publish a ``broadcast.status`` event."""
        return self.event("broadcast.status", status=status)

    def _subscribe(self, client: paho.Client) -> bool:
        client.subscribe(self.topic("cmd"), qos=1)
        return True

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
            received = ReceivedCommand(
                str(body["correlation_id"]), int(body.get("attempt", 1)), dict(body["command"])
            )
        except (ValueError, KeyError, TypeError):
            logger.warning("simulated unit %s got an unreadable command", self.device_id)
            return
        with self._lock:
            self._state.commands.append(received)
        if self._on_command is not None:
            self._on_command(received)
        if self.behaviour == "ignore" or (
            self.behaviour == "ignore_first" and received.attempt == 1
        ):
            return
        if self.behaviour == "fail":
            self._answer(received, "failed", self.fail_reason)
            return
        self._carry_out(received.command)
        self._answer(received, "ok", None)

    def _answer(self, received: ReceivedCommand, result: str, reason: str | None) -> None:
        body: dict[str, Any] = {
            "v": 1,
            "correlation_id": received.correlation_id,
            "attempt": received.attempt,
            "result": result,
            "time": _now_text(),
        }
        if reason is not None:
            body["reason"] = reason
        self.publish("cmd/ack", body)

    def _carry_out(self, command: dict[str, Any]) -> None:
        action = command.get("action")
        if action == "volume":
            self.volume = int(command["volume"])
        elif action == "stop":
            self._set_playing(False)
        elif action in ("play", "tts"):
            self._set_playing(True)
            timer = threading.Timer(self.play_seconds, self._set_playing, args=(False,))
            timer.daemon = True
            timer.start()

    def _set_playing(self, playing: bool) -> None:
        with self._lock:
            changed = self._state.playing != playing
            self._state.playing = playing
        if changed:
            self.report_status("busy" if playing else "idle")
