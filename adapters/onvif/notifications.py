"""Pure parsing of PullMessages answers into `NotificationMessage`s.

One notification that cannot be read is recorded as malformed, with its
reason, without costing the others in the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from adapters.onvif.soapxml import checked_body, first, local_name, text_of
from adapters.safexml import XmlRefused, parse_xs_datetime

__all__ = [
    "NotificationMessage",
    "PullMessagesResult",
    "normalize_topic",
    "parse_bool",
    "parse_pull_messages_response",
]


def normalize_topic(topic: str) -> str:
    """`tns1:VideoSource/MotionAlarm` → `VideoSource/MotionAlarm`, whatever the prefixes."""
    segments = []
    for segment in topic.strip().split("/"):
        name = segment.rsplit(":", 1)[-1].strip()
        if name and name != ".":
            segments.append(name)
    return "/".join(segments)


def parse_bool(value: str | None) -> bool | None:
    """xs:boolean as cameras write it (`true`, `1`, `False`); None if not a boolean."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    return None


@dataclass(frozen=True, slots=True)
class NotificationMessage:
    """One wsnt:NotificationMessage, reduced to what the topic parsers need."""

    topic: str
    raw_topic: str
    utc_time: datetime | None = None
    property_operation: str | None = None  # Initialized / Changed / Deleted
    source: Mapping[str, str] = field(default_factory=dict)
    key: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, str] = field(default_factory=dict)
    producer: str | None = None

    def __post_init__(self) -> None:
        if not self.topic:
            raise ValueError("a notification needs a topic")
        for name in ("source", "key", "data"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def item(self, *names: str) -> str | None:
        """The first of `names` found among the Data, then Source items."""
        for items in (self.data, self.source):
            for name in names:
                if name in items:
                    return items[name]
        return None


@dataclass(frozen=True, slots=True)
class PullMessagesResult:
    """A parsed PullMessagesResponse."""

    current_time: datetime | None
    termination_time: datetime | None
    messages: tuple[NotificationMessage, ...] = ()
    malformed: tuple[str, ...] = ()  # one reason per notification that could not be read


_OPERATIONS = {"initialized": "Initialized", "changed": "Changed", "deleted": "Deleted"}
_MAX_ITEMS = 64
_MAX_VALUE = 1024


def _simple_items(container: Any | None) -> dict[str, str]:
    items: dict[str, str] = {}
    if container is None:
        return items
    for element in container.iter():
        if local_name(element) != "SimpleItem":
            continue
        name = element.get("Name")
        value = element.get("Value")
        if name and value is not None and len(items) < _MAX_ITEMS:
            items[name[:_MAX_VALUE]] = value[:_MAX_VALUE]
    return items


def _parse_notification(element: Any) -> NotificationMessage:
    topic_el = first(element, "Topic")
    raw_topic = text_of(topic_el)
    if not raw_topic:
        raise ValueError("notification without a topic")
    topic = normalize_topic(raw_topic)
    if not topic:
        raise ValueError(f"unreadable topic {raw_topic[:100]!r}")
    message_wrapper = first(element, "Message")
    if message_wrapper is None:
        raise ValueError(f"notification {topic!r} without a Message")
    # wsnt:Message wraps tt:Message; tolerate cameras that put the items directly in it.
    inner = first(message_wrapper, "Message")
    message = inner if inner is not None else message_wrapper
    operation_text = message.get("PropertyOperation")
    operation = None
    if operation_text is not None:
        operation = _OPERATIONS.get(operation_text.strip().lower())
        if operation is None:
            raise ValueError(f"unknown PropertyOperation {operation_text[:40]!r}")
    producer_el = first(element, "ProducerReference", "Address")
    return NotificationMessage(
        topic=topic,
        raw_topic=raw_topic[:_MAX_VALUE],
        utc_time=parse_xs_datetime(message.get("UtcTime")),
        property_operation=operation,
        source=_simple_items(first(message, "Source")),
        key=_simple_items(first(message, "Key")),
        data=_simple_items(first(message, "Data")),
        producer=text_of(producer_el),
    )


def parse_pull_messages_response(data: bytes) -> PullMessagesResult:
    """Parse the raw SOAP of a PullMessagesResponse; a fault raises `SoapFault`."""
    body = checked_body(data)
    response = first(body, "PullMessagesResponse")
    if response is None:
        raise XmlRefused("answer is not a PullMessagesResponse")
    messages: list[NotificationMessage] = []
    malformed: list[str] = []
    for child in response:
        if local_name(child) != "NotificationMessage":
            continue
        try:
            messages.append(_parse_notification(child))
        except ValueError as exc:
            # One bad notification must not cost the others in the batch.
            malformed.append(str(exc))
    return PullMessagesResult(
        current_time=parse_xs_datetime(text_of(first(response, "CurrentTime"))),
        termination_time=parse_xs_datetime(text_of(first(response, "TerminationTime"))),
        messages=tuple(messages),
        malformed=tuple(malformed),
    )
