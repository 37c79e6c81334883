"""MQTT wire models: topic scheme, payloads (version 1), settings, vendor mappings.

Topic scheme (``{prefix}`` defaults to ``gridwatch/v1``):

=============================================  ==========  ========  =========================
topic                                          direction   retained  payload model
=============================================  ==========  ========  =========================
``{prefix}/{device_id}/event``                 device→hub  never     `EventPayload`
``{prefix}/{device_id}/heartbeat``             device→hub  never     `HeartbeatPayload`
``{prefix}/{device_id}/availability``          device→hub  yes       `AvailabilityPayload`
``{prefix}/{device_id}/cmd/ack``               device→hub  never     `CommandAckPayload`
``{prefix}/{device_id}/cmd``                   hub→device  never     `CommandPayload`
=============================================  ==========  ========  =========================

Every payload is a UTF-8 JSON object with ``"v": 1``. A device sets its last will to
``{"v": 1, "state": "offline"}`` on its availability topic, QoS 1, retained, and publishes
``{"v": 1, "state": "online"}`` retained after connecting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from camera_registry.events import Severity, validate_device_id
from camera_registry.models import DeviceKind

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_TOPIC_PREFIX",
    "EVENT_DEVICE_KINDS",
    "EVENT_SEVERITY",
    "MAX_PAYLOAD_BYTES",
    "PAYLOAD_MODELS",
    "PROTOCOL_VERSION",
    "AvailabilityPayload",
    "AvailabilityState",
    "BroadcastAction",
    "BroadcastCommand",
    "CommandAckPayload",
    "CommandPayload",
    "CommandResultCode",
    "DeviceInfo",
    "EventPayload",
    "EventType",
    "HeartbeatPayload",
    "MessageType",
    "MqttSettings",
    "MqttTlsSettings",
    "RejectReason",
    "UnitStatus",
    "VendorMapping",
    "json_schemas",
]

PROTOCOL_VERSION = 1
DEFAULT_TOPIC_PREFIX = "gridwatch/v1"
#: A device's heartbeat period when it announces none. 20 s with 3 missed intervals
#: (plus half an interval of grace) declares a silent device offline 70 s after it was
#: last heard, within the 90 s a path failure must be reported in (EN 50136).
DEFAULT_HEARTBEAT_INTERVAL_S = 20
#: Larger payloads are rejected unparsed: no device of ours sends more than a few hundred bytes.
MAX_PAYLOAD_BYTES = 64 * 1024

_MSG_ID = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
_TOPIC_LEVEL = re.compile(r"[^/+#]+")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the adapter needs to know about a registered device."""

    device_id: str
    kind: DeviceKind

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        object.__setattr__(self, "kind", DeviceKind(self.kind))


class MessageType(StrEnum):
    """Device → hub message types, named by the last topic level(s)."""

    EVENT = "event"
    HEARTBEAT = "heartbeat"
    AVAILABILITY = "availability"
    COMMAND_ACK = "cmd/ack"


class EventType(StrEnum):
    """Values of `EventPayload.type`; each is also the stored `DeviceEvent.kind`."""

    PANIC_PRESS = "panic.press"
    PANIC_RESTORE = "panic.restore"
    PANIC_TAMPER = "panic.tamper"
    LOW_BATTERY = "device.low_battery"
    BROADCAST_STATUS = "broadcast.status"


class AvailabilityState(StrEnum):
    """Availability topic values."""

    ONLINE = "online"
    OFFLINE = "offline"


class UnitStatus(StrEnum):
    """What a device is doing, as far as the adapter has heard."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"
    IDLE = "idle"
    BUSY = "busy"
    FAULT = "fault"


class RejectReason(StrEnum):
    """Why an MQTT message did not become an event; stored with the rejected message."""

    TOPIC_OUTSIDE_SCHEME = "topic_outside_scheme"
    OVERSIZE = "oversize"
    MALFORMED_JSON = "malformed_json"
    UNSUPPORTED_VERSION = "unsupported_version"
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_DEVICE = "unknown_device"
    WRONG_DEVICE_KIND = "wrong_device_kind"
    RETAINED_IGNORED = "retained_ignored"
    UNMAPPED_EVENT_TYPE = "unmapped_event_type"
    DECODE_ERROR = "decode_error"


#: Severity of each device event type.
EVENT_SEVERITY: dict[EventType, Severity] = {
    EventType.PANIC_PRESS: Severity.CRITICAL,
    EventType.PANIC_RESTORE: Severity.INFO,
    EventType.PANIC_TAMPER: Severity.MAJOR,
    EventType.LOW_BATTERY: Severity.WARNING,
    EventType.BROADCAST_STATUS: Severity.INFO,
}

#: Which device kinds may send which event types (any kind may report a low battery).
EVENT_DEVICE_KINDS: dict[EventType, frozenset[DeviceKind]] = {
    EventType.PANIC_PRESS: frozenset({DeviceKind.ALARM_POINT}),
    EventType.PANIC_RESTORE: frozenset({DeviceKind.ALARM_POINT}),
    EventType.PANIC_TAMPER: frozenset({DeviceKind.ALARM_POINT, DeviceKind.BROADCAST_UNIT}),
    EventType.LOW_BATTERY: frozenset({DeviceKind.ALARM_POINT, DeviceKind.BROADCAST_UNIT}),
    EventType.BROADCAST_STATUS: frozenset({DeviceKind.BROADCAST_UNIT}),
}


class _Wire(BaseModel):
    """Base of the payload models: strict about unknown fields so integrators see mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(description="Payload format version; this document describes 1.")


class EventPayload(_Wire):
    """Device → hub: something happened (``{prefix}/{device_id}/event``, QoS 1, not retained)."""

    model_config = ConfigDict(title="GridWatch MQTT device event")

    msg_id: _MSG_ID = Field(
        description="Unique per device and message; a redelivery repeats it (dedup key)."
    )
    type: EventType = Field(description="What happened.")
    time: AwareDatetime | None = Field(
        default=None, description="Device clock, RFC 3339 with offset; hub time if absent."
    )
    battery: int | None = Field(default=None, ge=0, le=100, description="Battery percent.")
    status: Literal["idle", "busy", "fault"] | None = Field(
        default=None, description="Required for broadcast.status: what the unit is doing."
    )
    detail: str | None = Field(default=None, max_length=500, description="Free text.")
    drill: bool = Field(
        default=False,
        strict=True,  # "yes" or 1 must not turn a real alarm into a drill or back
        description=(
            "True for a drill (exercise): the alarm is marked as a drill, kept apart from "
            "real alarms, delivered only to sinks configured for drills, left out of KPIs."
        ),
    )

    @model_validator(mode="after")
    def _status_with_broadcast_status(self) -> EventPayload:
        if (self.type is EventType.BROADCAST_STATUS) != (self.status is not None):
            raise ValueError("status is required for broadcast.status and only there")
        return self


class HeartbeatPayload(_Wire):
    """Device → hub: I am alive (``{prefix}/{device_id}/heartbeat``, QoS 1, not retained)."""

    model_config = ConfigDict(title="GridWatch MQTT heartbeat")

    interval_s: int = Field(
        default=DEFAULT_HEARTBEAT_INTERVAL_S,
        ge=1,
        le=86_400,
        description=(
            "Seconds until the next heartbeat. Send every 20 s (the default): with the "
            "hub's 3 missed intervals a silent device is then offline within 90 s."
        ),
    )
    time: AwareDatetime | None = Field(default=None, description="Device clock (RFC 3339).")
    battery: int | None = Field(default=None, ge=0, le=100, description="Battery percent.")
    rssi: int | None = Field(default=None, ge=-150, le=0, description="Signal strength, dBm.")


class AvailabilityPayload(_Wire):
    """Device → hub: online/offline (``{prefix}/{device_id}/availability``, retained, last will)."""

    model_config = ConfigDict(title="GridWatch MQTT availability")

    state: AvailabilityState = Field(description="'offline' is also the device's last will.")
    time: AwareDatetime | None = Field(default=None, description="Device clock (RFC 3339).")


class CommandResultCode(StrEnum):
    """What a unit answers to a command."""

    OK = "ok"
    FAILED = "failed"


class CommandAckPayload(_Wire):
    """Device → hub: answer to a command (``{prefix}/{device_id}/cmd/ack``, QoS 1)."""

    model_config = ConfigDict(title="GridWatch MQTT command acknowledgement")

    correlation_id: _MSG_ID = Field(description="The command's correlation_id.")
    attempt: int = Field(default=1, ge=1, le=100, description="The attempt answered.")
    result: CommandResultCode = Field(description="ok: carried out; failed: refused or broken.")
    reason: str | None = Field(default=None, max_length=200, description="Why it failed.")
    time: AwareDatetime | None = Field(default=None, description="Device clock (RFC 3339).")


class BroadcastAction(StrEnum):
    """What a broadcast unit is told to do."""

    PLAY = "play"
    TTS = "tts"
    STOP = "stop"
    VOLUME = "volume"


class BroadcastCommand(BaseModel):
    """An operator's broadcast command, validated per action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: BroadcastAction = Field(description="play a file/URL, speak text, stop, set volume.")
    url: str | None = Field(
        default=None, min_length=1, max_length=1024, description="play: file name or URL."
    )
    text: str | None = Field(
        default=None, min_length=1, max_length=2000, description="tts: text to speak."
    )
    volume: int | None = Field(default=None, ge=0, le=100, description="volume: 0–100.")
    zone: str | None = Field(
        default=None, min_length=1, max_length=64, description="Target zone/group on the unit."
    )
    priority: int = Field(
        default=3, ge=1, le=4, description="1 highest (pre-empts lower), as alarm priorities."
    )
    repeat: int = Field(default=1, ge=1, le=100, description="play/tts: times to repeat.")

    @model_validator(mode="after")
    def _fields_match_action(self) -> BroadcastCommand:
        needed = {
            BroadcastAction.PLAY: "url",
            BroadcastAction.TTS: "text",
            BroadcastAction.VOLUME: "volume",
            BroadcastAction.STOP: None,
        }[self.action]
        for name in ("url", "text", "volume"):
            present = getattr(self, name) is not None
            if present != (name == needed):
                raise ValueError(
                    f"{self.action.value} {'needs' if name == needed else 'takes no'} {name}"
                )
        return self


class CommandPayload(_Wire):
    """Hub → device: a broadcast command (``{prefix}/{device_id}/cmd``, QoS 1, not retained)."""

    model_config = ConfigDict(title="GridWatch MQTT broadcast command")

    correlation_id: _MSG_ID = Field(description="Echoed in the acknowledgement.")
    attempt: int = Field(default=1, ge=1, le=100, description="1 first send, then retries.")
    command: BroadcastCommand
    time: AwareDatetime = Field(description="When the hub sent it.")


#: Schema file stem → model; files live in ``adapters/mqtt/schemas/<stem>.json``.
PAYLOAD_MODELS: dict[str, type[BaseModel]] = {
    "event": EventPayload,
    "heartbeat": HeartbeatPayload,
    "availability": AvailabilityPayload,
    "cmd_ack": CommandAckPayload,
    "cmd": CommandPayload,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema document of each message type, keyed by file stem."""
    out: dict[str, dict[str, Any]] = {}
    for stem, model in PAYLOAD_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://gridwatch.example/schemas/mqtt/v1/{stem}.json"
        out[stem] = schema
    return out


class VendorMapping(BaseModel):
    """Feeds a vendor's own topic and JSON layout into the same events, without code.

    ``topic`` is an MQTT filter where one level may be ``{device_id}`` (captures that
    level); ``+`` and a trailing ``#`` work as in MQTT. Pointers are RFC 6901 JSON
    pointers into the payload. ``kinds`` maps the value found at ``event_type_pointer``
    (numbers and booleans compared as their JSON text, e.g. ``"1"``, ``"true"``) to a kind.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]{1,32}$", description="Short id, used in dedup keys.")
    topic: str = Field(min_length=1, max_length=256, description="e.g. 'acme/+/{device_id}/sos'")
    device_id_pointer: str | None = Field(
        default=None, description="Device id in the payload; the topic capture if absent."
    )
    event_type_pointer: str = Field(description="Where the vendor's event code is.")
    kinds: dict[str, EventType] = Field(min_length=1, description="vendor code → event kind")
    msg_id_pointer: str | None = Field(
        default=None, description="Vendor message id; a hash of topic+payload if absent."
    )
    time_pointer: str | None = Field(default=None, description="Event time; hub time if absent.")
    time_format: Literal["iso8601", "epoch_s", "epoch_ms"] = "iso8601"
    battery_pointer: str | None = None

    @field_validator(
        "device_id_pointer",
        "event_type_pointer",
        "msg_id_pointer",
        "time_pointer",
        "battery_pointer",
    )
    @classmethod
    def _pointer_syntax(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not value.startswith("/"):
            raise ValueError("a JSON pointer is empty or starts with '/'")
        return value

    @field_validator("topic")
    @classmethod
    def _topic_syntax(cls, value: str) -> str:
        levels = value.split("/")
        for index, level in enumerate(levels):
            if level in ("+", "{device_id}") or _TOPIC_LEVEL.fullmatch(level):
                continue
            if level == "#" and index == len(levels) - 1:
                continue
            raise ValueError(f"bad topic level {level!r}")
        return value

    @model_validator(mode="after")
    def _device_id_source(self) -> VendorMapping:
        captures = self.topic.split("/").count("{device_id}")
        if captures > 1:
            raise ValueError("{device_id} may appear once in the topic")
        if captures == 0 and self.device_id_pointer is None:
            raise ValueError("need {device_id} in the topic or a device_id_pointer")
        return self

    @property
    def subscription(self) -> str:
        """The MQTT filter to subscribe to."""
        return self.topic.replace("{device_id}", "+")


class MqttTlsSettings(BaseModel):
    """TLS towards the broker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = Field(default=None, description="CA bundle; system CAs if absent.")
    cert_file: str | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(default=None, description="Client key (mutual TLS).")
    insecure_skip_verify: bool = Field(
        default=False, description="Accept any server certificate: lab use only."
    )


class MqttSettings(BaseModel):
    """How the hub connects to the MQTT broker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str = Field(
        default="gridwatch-hub",
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        description="Fixed, so the broker keeps the session (and its queue) across restarts.",
    )
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTlsSettings | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=0xFFFFFFFE,
        description="MQTT 5: how long the broker keeps the session while the hub is away.",
    )
    receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="MQTT 5: unacknowledged messages the broker may send at once.",
    )
    topic_prefix: str = Field(default=DEFAULT_TOPIC_PREFIX, pattern=r"^[^+#/]+(/[^+#/]+)*$")
    qos: Literal[1, 2] = 1
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=600)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=256, le=1 << 20)
    vendor_mappings: tuple[VendorMapping, ...] = ()
    shared_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description=(
            "MQTT 5 shared subscription group: every hub node subscribes as "
            "$share/<group>/… so each message is consumed by one node (set on every "
            "node of a cluster; each node then connects as <client_id>-<node id>)."
        ),
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttSettings:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.shared_group is not None and self.protocol != "5":
            raise ValueError("shared_group needs protocol 5 (shared subscriptions are MQTT 5)")
        names = [m.name for m in self.vendor_mappings]
        if len(names) != len(set(names)):
            raise ValueError("vendor mapping names must be unique")
        return self
