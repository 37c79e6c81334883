"""MQTT topic scheme: the hub's own `<prefix>/<device_id>/<type>` topics and vendor filters.

Pure string work: which topic a device publishes on, which a unit receives commands on,
which filters the hub subscribes to, and which device and message type a topic names.
"""

from __future__ import annotations

import functools

from adapters.mqtt.models import (
    MessageType,
    VendorMapping,
)
from camera_registry.events import DEVICE_ID_PATTERN

# --------------------------------------------------------------------------- topics


def device_topic(prefix: str, device_id: str, message_type: MessageType) -> str:
    """The topic a device publishes `message_type` on."""
    return f"{prefix}/{device_id}/{message_type.value}"


def command_topic(prefix: str, unit_id: str) -> str:
    """The topic a broadcast unit receives commands on."""
    return f"{prefix}/{unit_id}/cmd"


def subscriptions(prefix: str, mappings: tuple[VendorMapping, ...] = ()) -> list[str]:
    """Every topic filter the hub subscribes to."""
    own = [f"{prefix}/+/{message_type.value}" for message_type in MessageType]
    return own + [mapping.subscription for mapping in mappings]


_SUFFIXES: dict[tuple[str, ...], MessageType] = {
    tuple(message_type.value.split("/")): message_type for message_type in MessageType
}


@functools.lru_cache(maxsize=16384)
def parse_topic(prefix: str, topic: str) -> tuple[str, MessageType] | None:
    """(device_id, message type) for a topic of the scheme, else None (remembered for
    the most recent topics: a district's devices publish on a few thousand)."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1 :].split("/")
    if len(rest) < 2:
        return None
    message_type = _SUFFIXES.get(tuple(rest[1:]))
    if message_type is None or not DEVICE_ID_PATTERN.fullmatch(rest[0]):
        return None
    return rest[0], message_type


def _match_vendor_topic(pattern: str, topic: str) -> tuple[bool, str | None]:
    """(matched, captured device id) for an MQTT filter with an optional {device_id} level."""
    pattern_levels = pattern.split("/")
    topic_levels = topic.split("/")
    captured: str | None = None
    for index, level in enumerate(pattern_levels):
        if level == "#":
            return True, captured
        if index >= len(topic_levels):
            return False, None
        if level == "{device_id}":
            captured = topic_levels[index]
        elif level != "+" and level != topic_levels[index]:
            return False, None
    return len(pattern_levels) == len(topic_levels), captured


# --------------------------------------------------------------------------- JSON pointer
