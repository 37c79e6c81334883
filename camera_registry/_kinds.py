"""The device kinds, kept apart so that `gb28181` and `models` can both use them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DeviceKind"]


class DeviceKind(StrEnum):
    """What a registered device is, as operators group them."""

    CAMERA = "camera"
    ALARM_POINT = "alarm_point"
    BROADCAST_UNIT = "broadcast_unit"
    NVR = "nvr"
    PLATFORM = "platform"
