"""MQTT adapter: school panic buttons and cloud broadcast units (see `models` for the topics)."""

from adapters.mqtt.client import (
    AdapterMetrics,
    CommandOutcome,
    CommandResult,
    ConnectionState,
    ConnectionStatus,
    MqttAdapter,
    OnCommitted,
    Submit,
    UnknownUnitError,
)
from adapters.mqtt.models import (
    BroadcastAction,
    BroadcastCommand,
    DeviceInfo,
    MqttSettings,
    MqttTlsSettings,
    RejectReason,
    UnitStatus,
    VendorMapping,
)

__all__ = [
    "AdapterMetrics",
    "BroadcastAction",
    "BroadcastCommand",
    "CommandOutcome",
    "CommandResult",
    "ConnectionState",
    "ConnectionStatus",
    "DeviceInfo",
    "MqttAdapter",
    "MqttSettings",
    "MqttTlsSettings",
    "OnCommitted",
    "RejectReason",
    "Submit",
    "UnitStatus",
    "UnknownUnitError",
    "VendorMapping",
]
