"""Outbound sinks: webhook signing, CAP 1.2 encoding (pure), delivery I/O.

The I/O modules (`webhook`, `amqp`, `mqtt`) are imported by their path. The JSON
body the webhook, AMQP and MQTT sinks send is described by `ALARM_BODY_SCHEMA`.
"""

from pathlib import Path

from adapters.sinks.cap import (
    CAP_NS,
    CapOptions,
    build_alert,
    cap_identifier,
    encode_alert,
    format_cap_time,
    validate_alert,
)
from adapters.sinks.errors import DeliveryFailed
from adapters.sinks.signing import (
    DEFAULT_TOLERANCE,
    SECRET_PREFIX,
    SignatureError,
    headers_for,
    parse_secret,
    sign,
    verify,
)

#: JSON Schema (draft 2020-12) of the body webhook, AMQP and MQTT sinks deliver.
ALARM_BODY_SCHEMA = Path(__file__).with_name("schemas") / "alarm.json"
#: JSON Schema of the body a department's sink receives for one revision of one of its tasks.
TASK_BODY_SCHEMA = Path(__file__).with_name("schemas") / "task.json"

__all__ = [
    "ALARM_BODY_SCHEMA",
    "CAP_NS",
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "TASK_BODY_SCHEMA",
    "CapOptions",
    "DeliveryFailed",
    "SignatureError",
    "build_alert",
    "cap_identifier",
    "encode_alert",
    "format_cap_time",
    "headers_for",
    "parse_secret",
    "sign",
    "validate_alert",
    "verify",
]
