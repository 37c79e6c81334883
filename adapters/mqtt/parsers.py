"""Pure MQTT decoding/encoding: topic → message type, payload → `DeviceEvent` or rejection.

No sockets, no clock reads: the receive time comes in with the message.

Decisions recorded here:

* The event's ``time`` is the hub's receive time; the device's own clock (often unsynchronised
  on school panic buttons) is kept as ``payload["device_time"]``.
* Dedup keys: ``mqtt:{device_id}:{msg_id}`` for events, so a QoS 1 redelivery is stored once;
  heartbeats use one key per device per heartbeat interval (``mqtt:{id}:hb:{bucket}``), so the
  store holds at most one heartbeat per interval however often a device repeats itself;
  availability changes carry no key (they are idempotent state, and a retained ``offline``
  replayed after a second outage must not be taken for the first one).
* A retained message on the event, heartbeat or ack topics is rejected with
  ``retained_ignored`` (kept as a rejected message, logged by the client): a replayed
  "pressed" must never open an alarm. Retained availability is the point of that topic
  and is accepted, marked ``payload["retained"] = True``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from adapters.mqtt.models import (
    EVENT_DEVICE_KINDS,
    EVENT_SEVERITY,
    AvailabilityPayload,
    AvailabilityState,
    BroadcastCommand,
    CommandAckPayload,
    CommandPayload,
    CommandResultCode,
    DeviceInfo,
    EventPayload,
    EventType,
    HeartbeatPayload,
    MessageType,
    RejectReason,
    UnitStatus,
    VendorMapping,
)
from adapters.mqtt.topics import (
    _match_vendor_topic,
    command_topic,
    device_topic,
    parse_topic,
    subscriptions,
)
from camera_registry.events import DEVICE_ID_PATTERN, DeviceEvent, RejectedMessage, Severity
from camera_registry.models import DeviceKind

__all__ = [
    "COMMAND_ACK_KIND",
    "HEARTBEAT_KIND",
    "OFFLINE_KIND",
    "ONLINE_KIND",
    "SOURCE",
    "Decoded",
    "DeviceLookup",
    "InboundMessage",
    "PointerError",
    "Rejection",
    "availability_payload",
    "command_topic",
    "decode_message",
    "device_topic",
    "encode_command",
    "parse_topic",
    "resolve_pointer",
    "status_from_event",
    "subscriptions",
    "to_rejected_message",
]

SOURCE = "mqtt"
HEARTBEAT_KIND = "device.heartbeat"
COMMAND_ACK_KIND = "broadcast.command_ack"
ONLINE_KIND = "device.online"
OFFLINE_KIND = "device.offline"
_MAX_DETAIL = 300

DeviceLookup = Callable[[str], DeviceInfo | None]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An MQTT message as received, with the hub's receive time."""

    topic: str
    payload: bytes
    retained: bool
    received_at: datetime

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is not UTC and self.received_at.utcoffset() != timedelta(0):
            raise ValueError("received_at must be timezone-aware UTC")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused, with the device when it could be told."""

    reason: RejectReason
    detail: str = ""
    device_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", RejectReason(self.reason))
        object.__setattr__(self, "detail", self.detail[:_MAX_DETAIL])


Decoded = DeviceEvent | Rejection


class PointerError(LookupError):
    """A JSON pointer does not resolve in a document."""


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at RFC 6901 `pointer` in `document`; raise PointerError if absent."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise PointerError(f"pointer {pointer!r} must start with '/'")
    current = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict):
            if token not in current:
                raise PointerError(f"{pointer}: no member {token!r}")
            current = current[token]
        elif isinstance(current, list):
            if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= len(current):
                raise PointerError(f"{pointer}: no array element {token!r}")
            current = current[int(token)]
        else:
            raise PointerError(f"{pointer}: cannot descend into a {type(current).__name__}")
    return current


# --------------------------------------------------------------------------- decoding


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load_object(payload: bytes) -> dict[str, Any] | Rejection:
    try:
        document = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"{type(exc).__name__}: {exc}")
    if not isinstance(document, dict):
        return Rejection(RejectReason.INVALID_PAYLOAD, "payload is not a JSON object")
    return document


def _validation_detail(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(loc) for loc in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)[:5]
    ]
    return "; ".join(parts)


def _model(
    document: dict[str, Any], model: type[BaseModel], device_id: str
) -> BaseModel | Rejection:
    version = document.get("v")
    if version is None:
        return Rejection(RejectReason.INVALID_PAYLOAD, "missing field v", device_id)
    if version != 1 or isinstance(version, bool):
        return Rejection(RejectReason.UNSUPPORTED_VERSION, f"v={version!r}", device_id)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        return Rejection(RejectReason.INVALID_PAYLOAD, _validation_detail(exc), device_id)


def _device_time(value: datetime | None) -> dict[str, str]:
    return {} if value is None else {"device_time": value.astimezone(UTC).isoformat()}


def _kind_allowed(event_type: EventType, device: DeviceInfo, device_id: str) -> Rejection | None:
    if device.kind in EVENT_DEVICE_KINDS[event_type]:
        return None
    return Rejection(
        RejectReason.WRONG_DEVICE_KIND, f"{device.kind.value} cannot send {event_type}", device_id
    )


def _decode_event(message: InboundMessage, document: dict[str, Any], device: DeviceInfo) -> Decoded:
    parsed = _model(document, EventPayload, device.device_id)
    if isinstance(parsed, Rejection):
        return parsed
    assert isinstance(parsed, EventPayload)  # noqa: S101 - narrowing for mypy
    refused = _kind_allowed(parsed.type, device, device.device_id)
    if refused is not None:
        return refused
    payload: dict[str, Any] = {"msg_id": parsed.msg_id, **_device_time(parsed.time)}
    for name in ("battery", "status", "detail"):
        if getattr(parsed, name) is not None:
            payload[name] = getattr(parsed, name)
    if parsed.drill:
        payload["drill"] = True  # the alarm rules open a drill alarm, never a real one
    return DeviceEvent(
        time=message.received_at,
        device_id=device.device_id,
        kind=parsed.type.value,
        severity=EVENT_SEVERITY[parsed.type],
        source=SOURCE,
        payload=payload,
        dedup_key=f"mqtt:{device.device_id}:{parsed.msg_id}",
    )


def _decode_heartbeat(
    message: InboundMessage, document: dict[str, Any], device: DeviceInfo
) -> Decoded:
    parsed = _model(document, HeartbeatPayload, device.device_id)
    if isinstance(parsed, Rejection):
        return parsed
    assert isinstance(parsed, HeartbeatPayload)  # noqa: S101 - narrowing for mypy
    bucket = int(message.received_at.timestamp()) // parsed.interval_s
    payload: dict[str, Any] = {"interval_s": parsed.interval_s, **_device_time(parsed.time)}
    for name in ("battery", "rssi"):
        if getattr(parsed, name) is not None:
            payload[name] = getattr(parsed, name)
    return DeviceEvent(
        time=message.received_at,
        device_id=device.device_id,
        kind=HEARTBEAT_KIND,
        severity=Severity.INFO,
        source=SOURCE,
        payload=payload,
        dedup_key=f"mqtt:{device.device_id}:hb:{parsed.interval_s}:{bucket}",
    )


def _decode_availability(
    message: InboundMessage, document: dict[str, Any], device: DeviceInfo
) -> Decoded:
    parsed = _model(document, AvailabilityPayload, device.device_id)
    if isinstance(parsed, Rejection):
        return parsed
    assert isinstance(parsed, AvailabilityPayload)  # noqa: S101 - narrowing for mypy
    online = parsed.state is AvailabilityState.ONLINE
    return DeviceEvent(
        time=message.received_at,
        device_id=device.device_id,
        kind=ONLINE_KIND if online else OFFLINE_KIND,
        severity=Severity.INFO if online else Severity.WARNING,
        source=SOURCE,
        payload={
            "retained": message.retained,
            "reason": "availability",
            **_device_time(parsed.time),
        },
    )


def _decode_command_ack(
    message: InboundMessage, document: dict[str, Any], device: DeviceInfo
) -> Decoded:
    if device.kind is not DeviceKind.BROADCAST_UNIT:
        return Rejection(
            RejectReason.WRONG_DEVICE_KIND,
            f"{device.kind.value} sends no command acks",
            device.device_id,
        )
    parsed = _model(document, CommandAckPayload, device.device_id)
    if isinstance(parsed, Rejection):
        return parsed
    assert isinstance(parsed, CommandAckPayload)  # noqa: S101 - narrowing for mypy
    payload: dict[str, Any] = {
        "correlation_id": parsed.correlation_id,
        "attempt": parsed.attempt,
        "result": parsed.result.value,
        **_device_time(parsed.time),
    }
    if parsed.reason is not None:
        payload["reason"] = parsed.reason
    failed = parsed.result is CommandResultCode.FAILED
    return DeviceEvent(
        time=message.received_at,
        device_id=device.device_id,
        kind=COMMAND_ACK_KIND,
        severity=Severity.WARNING if failed else Severity.INFO,
        source=SOURCE,
        payload=payload,
        dedup_key=f"mqtt:{device.device_id}:ack:{parsed.correlation_id}:{parsed.attempt}",
    )


_Decoder = Callable[[InboundMessage, dict[str, Any], DeviceInfo], Decoded]

#: Message type → decoder (a registry, so a new message type is one entry).
_DECODERS: dict[MessageType, _Decoder] = {
    MessageType.EVENT: _decode_event,
    MessageType.HEARTBEAT: _decode_heartbeat,
    MessageType.AVAILABILITY: _decode_availability,
    MessageType.COMMAND_ACK: _decode_command_ack,
}


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _vendor_time(value: Any, time_format: str) -> datetime:
    if time_format == "iso8601":
        if not isinstance(value, str):
            raise ValueError("time is not a string")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("time has no UTC offset")
        return parsed.astimezone(UTC)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("time is not a number")
    seconds = value / 1000 if time_format == "epoch_ms" else value
    return datetime.fromtimestamp(seconds, tz=UTC)


def _decode_vendor(
    message: InboundMessage,
    mapping: VendorMapping,
    captured: str | None,
    lookup: DeviceLookup,
) -> Decoded:
    document = _load_object(message.payload)
    if isinstance(document, Rejection):
        return Rejection(document.reason, f"{mapping.name}: {document.detail}", captured)
    try:
        if mapping.device_id_pointer is not None:
            raw_id = resolve_pointer(document, mapping.device_id_pointer)
            if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
                raise ValueError("device id is not a string or integer")
            device_id = str(raw_id)
        else:
            device_id = captured or ""
        code = _json_text(resolve_pointer(document, mapping.event_type_pointer))
        msg_id = (
            _json_text(resolve_pointer(document, mapping.msg_id_pointer))
            if mapping.msg_id_pointer is not None
            else hashlib.sha256(message.topic.encode() + b"\0" + message.payload).hexdigest()[:32]
        )
        extra: dict[str, Any] = {"vendor": mapping.name, "vendor_code": code[:64]}
        if mapping.time_pointer is not None:
            device_time = _vendor_time(
                resolve_pointer(document, mapping.time_pointer), mapping.time_format
            )
            extra["device_time"] = device_time.isoformat()
        if mapping.battery_pointer is not None:
            battery = resolve_pointer(document, mapping.battery_pointer)
            if isinstance(battery, bool) or not isinstance(battery, int | float):
                raise ValueError("battery is not a number")
            extra["battery"] = battery
    except (PointerError, ValueError, OverflowError, OSError) as exc:
        return Rejection(RejectReason.INVALID_PAYLOAD, f"{mapping.name}: {exc}", captured)
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        return Rejection(RejectReason.UNKNOWN_DEVICE, f"{mapping.name}: bad device id", None)
    device = lookup(device_id)
    if device is None:
        return Rejection(RejectReason.UNKNOWN_DEVICE, f"{mapping.name}: {device_id}", device_id)
    event_type = mapping.kinds.get(code)
    if event_type is None:
        return Rejection(
            RejectReason.UNMAPPED_EVENT_TYPE, f"{mapping.name}: code {code[:64]!r}", device_id
        )
    if event_type is EventType.BROADCAST_STATUS:
        return Rejection(
            RejectReason.UNMAPPED_EVENT_TYPE, "broadcast.status needs the native topic", device_id
        )
    refused = _kind_allowed(event_type, device, device_id)
    if refused is not None:
        return refused
    msg_key = msg_id if len(msg_id) <= 64 else hashlib.sha256(msg_id.encode()).hexdigest()[:32]
    return DeviceEvent(
        time=message.received_at,
        device_id=device_id,
        kind=event_type.value,
        severity=EVENT_SEVERITY[event_type],
        source=SOURCE,
        payload={"msg_id": msg_key, **extra},
        dedup_key=f"mqtt:{mapping.name}:{device_id}:{msg_key}",
    )


def decode_message(
    message: InboundMessage,
    *,
    prefix: str,
    lookup: DeviceLookup,
    max_payload_bytes: int,
    vendor_mappings: tuple[VendorMapping, ...] = (),
) -> Decoded:
    """Turn one MQTT message into a `DeviceEvent` or a `Rejection`; never raises on bad input."""
    own = parse_topic(prefix, message.topic)
    if own is None:
        for mapping in vendor_mappings:
            matched, captured = _match_vendor_topic(mapping.topic, message.topic)
            if matched:
                return _screen_then(
                    message,
                    captured,
                    max_payload_bytes,
                    False,
                    functools.partial(_decode_vendor, message, mapping, captured, lookup),
                )
        return Rejection(RejectReason.TOPIC_OUTSIDE_SCHEME, message.topic[:200])
    device_id, message_type = own
    retained_ok = message_type is MessageType.AVAILABILITY

    def decode_own() -> Decoded:
        device = lookup(device_id)
        if device is None:
            return Rejection(RejectReason.UNKNOWN_DEVICE, device_id, device_id)
        document = _load_object(message.payload)
        if isinstance(document, Rejection):
            return Rejection(document.reason, document.detail, device_id)
        return _DECODERS[message_type](message, document, device)

    return _screen_then(
        message, device_id, max_payload_bytes, retained_ok, decode_own, checked_id=True
    )


def _screen_then(
    message: InboundMessage,
    device_id: str | None,
    max_payload_bytes: int,
    retained_ok: bool,
    decode: Callable[[], Decoded],
    *,
    checked_id: bool = False,
) -> Decoded:
    """Refuse what is too big or retained where it must not be, else `decode`.
    `checked_id`: `device_id` already passed the device id pattern (own topics)."""
    if device_id is not None and not checked_id and not DEVICE_ID_PATTERN.fullmatch(device_id):
        device_id = None
    if len(message.payload) > max_payload_bytes:
        return Rejection(
            RejectReason.OVERSIZE,
            f"{len(message.payload)} bytes > {max_payload_bytes}",
            device_id,
        )
    if message.retained and not retained_ok:
        return Rejection(
            RejectReason.RETAINED_IGNORED, "retained message replayed by the broker", device_id
        )
    return decode()


def to_rejected_message(
    message: InboundMessage, rejection: Rejection, *, max_payload_bytes: int
) -> RejectedMessage:
    """The `RejectedMessage` to store for a refused MQTT message (payload capped)."""
    reason = rejection.reason.value
    if rejection.detail:
        reason = f"{reason}: {rejection.detail}"
    return RejectedMessage(
        time=message.received_at,
        source=SOURCE,
        origin=message.topic[:1024] or "<empty topic>",
        reason=reason,
        payload=message.payload[:max_payload_bytes],
        device_id=rejection.device_id,
    )


# --------------------------------------------------------------------------- encoding


def availability_payload(state: AvailabilityState) -> bytes:
    """The availability payload (the last will is ``availability_payload(OFFLINE)``)."""
    return AvailabilityPayload(v=1, state=state).model_dump_json(exclude_none=True).encode()


def encode_command(
    command: BroadcastCommand, *, correlation_id: str, attempt: int, sent_at: datetime
) -> bytes:
    """The JSON bytes of a broadcast command."""
    payload = CommandPayload(
        v=1, correlation_id=correlation_id, attempt=attempt, command=command, time=sent_at
    )
    return payload.model_dump_json(exclude_none=True).encode()


# --------------------------------------------------------------------------- status


_STATUS_BY_KIND: dict[str, UnitStatus] = {
    ONLINE_KIND: UnitStatus.ONLINE,
    OFFLINE_KIND: UnitStatus.OFFLINE,
}


def status_from_event(event: DeviceEvent) -> UnitStatus | None:
    """The device status an event proves, if any."""
    if event.kind == EventType.BROADCAST_STATUS.value:
        return UnitStatus(event.payload["status"])
    return _STATUS_BY_KIND.get(event.kind)
