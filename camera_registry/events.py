"""The `DeviceEvent`: what any adapter turns a device's message into."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

__all__ = [
    "DEVICE_ID_PATTERN",
    "DeviceEvent",
    "RejectedMessage",
    "Severity",
    "validate_device_id",
]

#: A device id is a GB/T 28181 20-digit code or a safe free id; both match this.
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_KIND_PATTERN = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")
_MAX_KEY = 200


class Severity(StrEnum):
    """How bad an event is, independent of any alarm priority derived from it."""

    INFO = "info"
    WARNING = "warning"
    MAJOR = "major"
    CRITICAL = "critical"


def validate_device_id(value: str) -> str:
    """Return `value` if it is a usable device id, else raise ValueError."""
    if not isinstance(value, str) or not DEVICE_ID_PATTERN.fullmatch(value):
        raise ValueError(f"invalid device id {value!r}: expected [A-Za-z0-9_.-]{{1,64}}")
    return value


def _freeze(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(payload))


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One thing a device said or a probe found, as stored in `events`.

    `kind` is a dotted lower-case name (`panic.press`, `onvif.motion`,
    `health.offline`). `dedup_key`, when given, makes the event idempotent:
    a second event with the same key is stored once.
    """

    time: datetime
    device_id: str
    kind: str
    severity: Severity = Severity.INFO
    source: str = "hub"
    payload: Mapping[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        if self.time.tzinfo is not UTC and (
            self.time.tzinfo is None or self.time.utcoffset() != timedelta(0)
        ):
            raise ValueError("DeviceEvent.time must be timezone-aware UTC")
        validate_device_id(self.device_id)
        if not _KIND_PATTERN.fullmatch(self.kind) or len(self.kind) > 64:
            raise ValueError(f"invalid event kind {self.kind!r}")
        if not self.source or len(self.source) > 32:
            raise ValueError(f"invalid event source {self.source!r}")
        if self.dedup_key is not None and not 0 < len(self.dedup_key) <= _MAX_KEY:
            raise ValueError("dedup_key must be 1..200 characters")
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "payload", _freeze(self.payload))


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """Input that could not become an event, kept with the reason so nothing is lost silently.

    `payload` holds the raw bytes (capped by the producer); `origin` says where it
    came from (an MQTT topic, an ONVIF endpoint, an import file row).
    """

    time: datetime
    source: str
    origin: str
    reason: str
    payload: bytes = b""
    device_id: str | None = None
    message_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() != timedelta(0):
            raise ValueError("RejectedMessage.time must be timezone-aware UTC")
        if not self.reason:
            raise ValueError("a rejected message needs a reason")
