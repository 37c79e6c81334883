"""The MQTT adapter's I/O: paho-mqtt 2 on its network thread, bridged into asyncio.

Integration: paho's own network thread (``loop_start``) reads and writes the socket;
every paho callback hands its data to the event loop with ``call_soon_threadsafe`` and
does nothing else, so nothing blocks the loop and no project state is touched from the
paho thread. ``client.ack()`` and ``client.publish()`` called on the loop thread only
append to paho's outgoing deque and wake its ``select`` through a socket pair.

Acknowledgement after commit: the client runs with ``manual_ack=True``; every QoS 1
message is handed to ``submit`` together with an ``on_committed`` callback, and only that
callback sends the PUBACK. Until then the broker keeps the message in the hub's persistent
session and redelivers it after a crash. The number of messages waiting for their commit is
bounded by the broker's in-flight window (MQTT 5 Receive Maximum, ``max_inflight_messages``
for 3.1.1), which is also what bounds the adapter's internal queue.

Acks are tied to the connection they belong to: packet ids are per connection, so a
commit that completes after the connection dropped sends nothing (the broker redelivers
the message on the new connection and dedup absorbs the copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from adapters.clock import utcnow
from adapters.mqtt.models import (
    BroadcastCommand,
    MqttSettings,
    RejectReason,
    UnitStatus,
)
from adapters.mqtt.parsers import (
    COMMAND_ACK_KIND,
    DeviceLookup,
    InboundMessage,
    Rejection,
    command_topic,
    decode_message,
    encode_command,
    status_from_event,
    to_rejected_message,
)
from adapters.mqtt.sharing import (
    connect_properties,
    disconnect_properties,
    is_observer_copy,
    subscribe,
)
from adapters.mqtt.status import (
    AdapterMetrics,
    CommandOutcome,
    CommandResult,
    ConnectionState,
    ConnectionStatus,
    OnCommitted,
    Submit,
    UnknownUnitError,
)
from camera_registry.events import DeviceEvent, validate_device_id
from camera_registry.models import DeviceKind

__all__ = [
    "AdapterMetrics",
    "CommandOutcome",
    "CommandResult",
    "ConnectionState",
    "ConnectionStatus",
    "MqttAdapter",
    "OnCommitted",
    "Submit",
    "UnknownUnitError",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    retained: bool
    mid: int
    qos: int
    generation: int
    observer: bool = False


@dataclass(frozen=True, slots=True)
class _Ack:
    result: str
    reason: str | None


class MqttAdapter:
    """Panic buttons and broadcast units over MQTT, as an async context manager.

    ``submit`` receives every `DeviceEvent` and `RejectedMessage` with the callback that
    PUBACKs its MQTT message; ``device_lookup`` tells registered devices (called on the
    loop thread for each message, so it must be a fast in-memory lookup).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        submit: Submit,
        device_lookup: DeviceLookup,
        clock: Callable[[], datetime] = utcnow,
        drain_only: bool = False,
    ) -> None:
        self.settings = settings
        # Taking over another node's session: no subscriptions, leave the shared group
        # at once, take what the broker still holds for that session, then end it.
        self._drain_only = drain_only
        #: QoS 1/2 messages handed to `submit` whose commit (and ack) is still to come.
        self.unacked = 0
        #: When the last message arrived (event-loop time), for a drain's quiet period.
        self.last_message_at: float | None = None
        self._end_session = False
        self.metrics = AdapterMetrics()
        self._submit = submit
        self._lookup = device_lookup
        self._clock = clock
        self._status = ConnectionStatus(ConnectionState.DISCONNECTED, clock(), "not started")
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Messages cross from the paho thread in a deque; the loop is woken once per
        # burst (`_wake_pending`), not once per message: a wake-up is a self-pipe
        # write, and each one hands the GIL back and forth between the threads.
        self._arrivals: deque[_Received] = deque()
        self._arrived = asyncio.Event()
        self._wake_pending = False
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()
        # Guarded by _ack_lock: bumped by the paho thread whenever a connection ends or a
        # new one starts, so an ack of an old packet id never reaches a new connection.
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._closed = False
        self._attempt = 0
        self._subscribe_mids: set[int] = set()
        self._pending: dict[str, asyncio.Future[_Ack]] = {}
        self._unit_status: dict[str, UnitStatus] = {}
        self._logged: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ public surface

    @property
    def state(self) -> ConnectionStatus:
        """The connection state as it truly is (a refused CONNACK is `REFUSED`)."""
        return self._status

    def unit_status(self, device_id: str) -> UnitStatus:
        """What the adapter last heard a device is doing (`UNKNOWN` until evidence)."""
        return self._unit_status.get(device_id, UnitStatus.UNKNOWN)

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 - a plain wait
        """Wait until connected and the broker confirmed the subscriptions; False on timeout."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        # Building the client may read certificate files: keep it off the loop.
        self._client = await asyncio.to_thread(self._build_client)
        self._set_status(ConnectionState.CONNECTING, None)
        v5 = self.settings.protocol == "5"
        self._tasks = [asyncio.create_task(self._consume(), name="mqtt-consume")]
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive_s,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=connect_properties(self.settings),
        )
        self._client.loop_start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for future in self._pending.values():
            future.cancel()
        client = self._client
        if client is not None:
            with self._ack_lock:
                self._generation += 1
            # The network thread first (it leaves once queued acks are written), then
            # DISCONNECT from here: the other order races the thread into one more
            # select on the closed socket, which paho logs as an error.
            await asyncio.to_thread(client.loop_stop)
            await asyncio.to_thread(
                client.disconnect,
                properties=disconnect_properties(self.settings, self._end_session),
            )
        self._connected.clear()
        self._set_status(ConnectionState.DISCONNECTED, "stopped")

    async def send_command(
        self,
        unit_id: str,
        command: BroadcastCommand,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - per attempt, not an overall deadline
        retries: int = 2,
    ) -> CommandResult:
        """Publish a broadcast command (QoS 1), wait for the unit's ack, retry, and report."""
        validate_device_id(unit_id)
        device = self._lookup(unit_id)
        if device is None or device.kind is not DeviceKind.BROADCAST_UNIT:
            raise UnknownUnitError(f"{unit_id} is not a registered broadcast unit")
        if self._client is None or self._loop is None or self._closed:
            raise RuntimeError("the MQTT adapter is not running")
        correlation_id = uuid.uuid4().hex
        answer: asyncio.Future[_Ack] = self._loop.create_future()
        self._pending[correlation_id] = answer
        sent_at = self._clock()
        attempts = 0
        try:
            for attempt in range(1, retries + 2):
                attempts = attempt
                body = encode_command(
                    command, correlation_id=correlation_id, attempt=attempt, sent_at=self._clock()
                )
                self._client.publish(
                    command_topic(self.settings.topic_prefix, unit_id), body, qos=self.settings.qos
                )
                self.metrics.commands_sent += 1
                try:
                    ack = await asyncio.wait_for(asyncio.shield(answer), timeout)
                except TimeoutError:
                    logger.warning(
                        "broadcast command %s to %s: no ack after attempt %d",
                        correlation_id,
                        unit_id,
                        attempt,
                    )
                    continue
                outcome = CommandOutcome.ACKED if ack.result == "ok" else CommandOutcome.FAILED
                return self._command_result(
                    correlation_id, unit_id, command, outcome, attempts, sent_at, ack.reason
                )
            return self._command_result(
                correlation_id,
                unit_id,
                command,
                CommandOutcome.TIMED_OUT,
                attempts,
                sent_at,
                f"no acknowledgement within {timeout:g} s x {attempts}",
            )
        finally:
            self._pending.pop(correlation_id, None)

    # ------------------------------------------------------------------ setup

    def _build_client(self) -> paho.Client:
        settings = self.settings
        v5 = settings.protocol == "5"
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=None if v5 else False,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            manual_ack=True,
        )
        client.enable_logger(logging.getLogger("paho.mqtt"))
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls is not None:
            tls = settings.tls
            client.tls_set(
                ca_certs=tls.ca_file,
                certfile=tls.cert_file,
                keyfile=tls.key_file,
                cert_reqs=ssl.CERT_NONE if tls.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(tls.insecure_skip_verify)
        # The first delay; every later one is re-drawn with jitter in _plan_reconnect.
        first = self._backoff_delay()
        client.reconnect_delay_set(first, first)  # type: ignore[arg-type]  # floats work
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_subscribe
        return client

    def end_session_on_close(self) -> None:
        """Ask the broker to delete this client's session when the adapter closes."""
        self._end_session = True

    def _backoff_delay(self) -> float:
        """Full-jitter exponential backoff, so a fleet of hubs does not reconnect in step."""
        low, high = self.settings.reconnect_min_s, self.settings.reconnect_max_s
        ceiling = min(high, low * 2 ** min(self._attempt, 16))
        return secrets.SystemRandom().uniform(low, ceiling)

    def _plan_reconnect(self, client: paho.Client) -> None:
        self._attempt += 1
        delay = self._backoff_delay()
        client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]  # floats work

    # ------------------------------------------------------------------ paho thread

    def _call_in_loop(self, callback: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            logger.debug("event loop closed; dropped a callback from the MQTT thread")

    def _bump_generation(self) -> None:
        with self._ack_lock:
            self._generation += 1

    def _on_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        self._bump_generation()
        self._call_in_loop(self._set_status, ConnectionState.CONNECTING, None)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                self._plan_reconnect(client)
                self._call_in_loop(self._refused, str(reason_code))
                return
            self._attempt = 0
            self._call_in_loop(self._connected_now, flags.session_present)
            self._subscribe(client)
        except Exception:
            logger.exception("MQTT on_connect failed")
            raise

    def _subscribe(self, client: paho.Client) -> None:
        self._subscribe_mids = subscribe(client, self.settings, drain_only=self._drain_only)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[Any],
        properties: Properties | None,
    ) -> None:
        if mid not in self._subscribe_mids:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        self._call_in_loop(self._subscribed, mid, refused)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._plan_reconnect(client)
        self._call_in_loop(self._set_status, ConnectionState.DISCONNECTED, "connection failed")

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: Any,
        properties: Properties | None,
    ) -> None:
        self._bump_generation()
        self._plan_reconnect(client)
        self._call_in_loop(self._disconnected, str(reason_code))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic not UTF-8>"
        with self._ack_lock:
            generation = self._generation
        identifiers = getattr(message.properties, "SubscriptionIdentifier", None) or []
        item = _Received(
            topic=topic,
            payload=bytes(message.payload),
            retained=bool(message.retain),
            mid=message.mid,
            qos=message.qos,
            generation=generation,
            observer=is_observer_copy(identifiers),
        )
        self._arrivals.append(item)
        if not self._wake_pending:
            self._wake_pending = True
            self._call_in_loop(self._arrived.set)

    # ------------------------------------------------------------------ loop thread

    def _set_status(
        self, state: ConnectionState, reason: str | None, session_present: bool = False
    ) -> None:
        if state is ConnectionState.CONNECTING and self._status.state is ConnectionState.REFUSED:
            # Keep the refusal visible while retrying: "connecting" would hide the cause.
            reason = f"retrying after refusal: {self._status.reason}"
        self._status = ConnectionStatus(state, self._clock(), reason, session_present)

    def _refused(self, reason: str) -> None:
        self.metrics.refusals += 1
        self._connected.clear()
        logger.error("MQTT broker %s refused the connection: %s", self.settings.host, reason)
        self._set_status(ConnectionState.REFUSED, reason)

    def _subscribed(self, mid: int, refused: list[str]) -> None:
        if refused:
            # The broker's ACL refused a filter: alarms on it would never arrive.
            logger.error("MQTT broker refused subscriptions: %s", ", ".join(refused))
            self.metrics.subscriptions_refused += len(refused)
        self._subscribe_mids.discard(mid)
        if not self._subscribe_mids:
            self._connected.set()

    def _connected_now(self, session_present: bool) -> None:
        self.metrics.connects += 1
        self._set_status(ConnectionState.CONNECTED, None, session_present)
        logger.info(
            "MQTT connected to %s:%d (session present: %s)",
            self.settings.host,
            self.settings.port,
            session_present,
        )

    def _disconnected(self, reason: str) -> None:
        self._connected.clear()
        if self._status.state is ConnectionState.REFUSED:
            return
        self.metrics.disconnects += 1
        if not self._closed:
            logger.warning("MQTT connection lost: %s", reason)
        self._set_status(ConnectionState.DISCONNECTED, reason)

    def _committed_callback(self, item: _Received) -> OnCommitted | None:
        if item.qos == 0:
            return None
        client = self._client
        self.unacked += 1

        def on_committed() -> None:
            self.unacked -= 1
            with self._ack_lock:
                if self._closed or client is None or item.generation != self._generation:
                    self.metrics.stale_acks += 1
                    return
                client.ack(item.mid, item.qos)
            self.metrics.acked += 1

        return on_committed

    async def _consume(self) -> None:
        arrivals = self._arrivals
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            # Cleared before draining: a message appended from here on wakes us again.
            self._wake_pending = False
            while arrivals:
                await self._take(arrivals.popleft())

    async def _take(self, item: _Received) -> None:
        """Decode one message and queue its event (or its rejection) for the writer."""
        self.metrics.received += 1
        self.last_message_at = asyncio.get_running_loop().time()
        message = InboundMessage(item.topic, item.payload, item.retained, self._clock())
        if item.observer:
            self._observe_copy(message)
            return
        try:
            decoded = decode_message(
                message,
                prefix=self.settings.topic_prefix,
                lookup=self._lookup,
                max_payload_bytes=self.settings.max_payload_bytes,
                vendor_mappings=self.settings.vendor_mappings,
            )
        except Exception as exc:
            # A decoder bug must not stop ingest: keep the message as rejected.
            logger.exception("decoding MQTT message on %s failed", item.topic)
            decoded = Rejection(RejectReason.DECODE_ERROR, type(exc).__name__)
        on_committed = self._committed_callback(item)
        if isinstance(decoded, Rejection):
            self._note_rejection(message, decoded)
            record = to_rejected_message(
                message, decoded, max_payload_bytes=self.settings.max_payload_bytes
            )
            await self._submit(record, on_committed)
        else:
            self.metrics.events += 1
            self._observe(decoded)
            await self._submit(decoded, on_committed)

    def _observe_copy(self, message: InboundMessage) -> None:
        """An observer copy (QoS 0, another node stores the shared one): it only
        completes a command this node is waiting for."""
        try:
            decoded = decode_message(
                message,
                prefix=self.settings.topic_prefix,
                lookup=self._lookup,
                max_payload_bytes=self.settings.max_payload_bytes,
            )
        except Exception:
            logger.exception("decoding an observed MQTT message on %s failed", message.topic)
            return
        if isinstance(decoded, DeviceEvent) and decoded.kind == COMMAND_ACK_KIND:
            self._observe(decoded)

    def _note_rejection(self, message: InboundMessage, rejection: Rejection) -> None:
        self.metrics.rejected[rejection.reason.value] += 1
        if rejection.reason is RejectReason.RETAINED_IGNORED:
            logger.info("ignored a retained message on %s (replayed by the broker)", message.topic)
            return
        key = (rejection.reason.value, rejection.device_id or message.topic[:200])
        if key in self._logged:
            logger.debug("rejected MQTT message on %s: %s", message.topic, rejection.reason)
            return
        self._logged.add(key)
        logger.warning(
            "rejected MQTT message on %s: %s %s (further ones from this source logged at debug)",
            message.topic[:200],
            rejection.reason.value,
            rejection.detail,
        )

    def _observe(self, event: DeviceEvent) -> None:
        if event.kind == COMMAND_ACK_KIND:
            waiting = self._pending.get(str(event.payload["correlation_id"]))
            if waiting is not None and not waiting.done():
                waiting.set_result(_Ack(str(event.payload["result"]), event.payload.get("reason")))
        status = status_from_event(event)
        if status is not None:
            self._unit_status[event.device_id] = status
        elif self._unit_status.get(event.device_id, UnitStatus.UNKNOWN) in (
            UnitStatus.UNKNOWN,
            UnitStatus.OFFLINE,
        ):
            self._unit_status[event.device_id] = UnitStatus.ONLINE

    def _command_result(
        self,
        correlation_id: str,
        unit_id: str,
        command: BroadcastCommand,
        outcome: CommandOutcome,
        attempts: int,
        sent_at: datetime,
        reason: str | None,
    ) -> CommandResult:
        self.metrics.commands[outcome.value] += 1
        return CommandResult(
            correlation_id=correlation_id,
            unit_id=unit_id,
            command=command,
            outcome=outcome,
            attempts=attempts,
            sent_at=sent_at,
            finished_at=self._clock(),
            reason=reason,
        )
