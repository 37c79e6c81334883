"""Outbound sinks: webhook signing, CAP 1.2 encoding (pure), delivery I/O.

The I/O modules (`webhook`, `amqp`, `mqtt`) are imported by their path.
"""

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

__all__ = [
    "CAP_NS",
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
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
