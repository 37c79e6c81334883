"""The device registry domain: device types, jurisdictions, events. No I/O."""

from camera_registry.events import (
    DEVICE_ID_PATTERN,
    DeviceEvent,
    RejectedMessage,
    Severity,
    validate_device_id,
)

__all__ = [
    "DEVICE_ID_PATTERN",
    "DeviceEvent",
    "RejectedMessage",
    "Severity",
    "validate_device_id",
]
