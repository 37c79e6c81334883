"""From topic signals to `DeviceEvent`s, per device (pure, time passed in).

`PropertyStateTracker` decides which signals are news (an `Initialized`
repeat of a known state is not) and turns an "on" that never got its "off"
into an "off" after a hold time; the `NotificationInterpreter` ties parsing,
tracking and counting together per device, counting unknown topics and
malformed notifications without dropping the rest of a batch.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from adapters.onvif.notifications import NotificationMessage, PullMessagesResult
from adapters.onvif.topics import PARSERS, EventSignal, NotificationRejected, TopicRegistry
from camera_registry.events import DeviceEvent, Severity

__all__ = [
    "DEFAULT_HOLD_TIME",
    "DEFAULT_HOLD_TIMES",
    "EVENT_SOURCE",
    "NotificationInterpreter",
    "PropertyStateTracker",
    "UnknownTopicCounter",
    "to_device_event",
]

logger = logging.getLogger(__name__)

EVENT_SOURCE = "onvif"


def _dedup_key(device_id: str, *parts: object) -> str:
    digest = hashlib.sha256("\x1f".join([device_id, *map(str, parts)]).encode()).hexdigest()
    return f"onvif:{digest[:48]}"


def to_device_event(
    device_id: str,
    signal: EventSignal,
    at: datetime,
    *,
    state: bool | None = None,
    reason: str | None = None,
    initialized: bool = False,
) -> DeviceEvent:
    """Build the `DeviceEvent` for a signal (or its synthetic "off" when `state` is given)."""
    message = signal.message
    effective = signal.state if state is None else state
    payload: dict[str, Any] = {
        "state": effective,
        "topic": message.topic,
        "raw_topic": message.raw_topic,
        "operation": message.property_operation,
        "source": dict(message.source),
        "key": dict(message.key),
        "data": dict(message.data),
        "device_time": message.utc_time.isoformat() if message.utc_time else None,
        "producer": message.producer,
    }
    payload.update(signal.detail)
    if reason is not None:
        payload["reason"] = reason
    if initialized:
        payload["initialized"] = True
    if reason is not None:
        # A synthetic edge: unique per edge, so a replay of the same expiry is absorbed.
        dedup = _dedup_key(device_id, message.topic, sorted(message.source.items()), reason, at)
    elif message.utc_time is not None:
        dedup = _dedup_key(
            device_id,
            message.topic,
            sorted(message.source.items()),
            message.property_operation,
            message.utc_time.isoformat(),
            effective,
        )
    else:
        dedup = None
    return DeviceEvent(
        time=at,
        device_id=device_id,
        kind=signal.kind,
        severity=signal.severity if effective else Severity.INFO,
        source=EVENT_SOURCE,
        payload=payload,
        dedup_key=dedup,
    )


#: Default time an "on" is believed without being repeated or turned off.
DEFAULT_HOLD_TIME = timedelta(minutes=5)
#: Per-kind hold times; None means "held until the camera says otherwise" — used for
#: conditions (failures, lost video, a door contact) the camera re-states on every
#: new subscription rather than repeating while they last.
DEFAULT_HOLD_TIMES: Mapping[str, timedelta | None] = MappingProxyType(
    {
        "onvif.storage_failure": None,
        "onvif.hardware_failure": None,
        "onvif.video_loss": None,
        "onvif.digital_input": None,
    }
)


@dataclass(slots=True)
class _Held:
    state: bool
    since: datetime
    last_seen: datetime
    signal: EventSignal


class PropertyStateTracker:
    """Per-device memory of property states, fed with notifications and the time.

    - a repeat of a known state (including `Initialized` after a re-subscribe)
      is not news and yields no event, but keeps an "on" alive;
    - an "on" not repeated within its hold time is turned off by `expire`;
    - `Deleted` forgets the property, turning it off first if it was on.
    """

    def __init__(
        self,
        device_id: str,
        *,
        hold_time: timedelta = DEFAULT_HOLD_TIME,
        hold_times: Mapping[str, timedelta | None] = DEFAULT_HOLD_TIMES,
    ) -> None:
        if hold_time <= timedelta(0):
            raise ValueError("hold_time must be positive")
        self.device_id = device_id
        self._default_hold = hold_time
        self._hold_times = dict(hold_times)
        self._held: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Held] = {}

    def hold_for(self, kind: str) -> timedelta | None:
        """How long an "on" of `kind` is believed without confirmation."""
        return self._hold_times.get(kind, self._default_hold)

    def observe(self, signal: EventSignal, now: datetime) -> list[DeviceEvent]:
        """Events caused by one signal at `now` (zero or one)."""
        if signal.pulse:
            # A one-off happening has no "off"; a mapped pulse's false value is not news.
            return [to_device_event(self.device_id, signal, now)] if signal.state else []
        key = signal.state_key
        held = self._held.get(key)
        operation = signal.message.property_operation
        if operation == "Deleted":
            self._held.pop(key, None)
            if held is not None and held.state:
                return [to_device_event(self.device_id, signal, now, state=False, reason="deleted")]
            return []
        initialized = operation == "Initialized"
        if held is None:
            self._held[key] = _Held(signal.state, now, now, signal)
            if initialized and not signal.state:
                # "All quiet" at subscription start is not an event.
                return []
            return [to_device_event(self.device_id, signal, now, initialized=initialized)]
        held.last_seen = now
        if held.state == signal.state:
            return []
        held.state = signal.state
        held.since = now
        held.signal = signal
        return [to_device_event(self.device_id, signal, now, initialized=initialized)]

    def expire(self, now: datetime) -> list[DeviceEvent]:
        """Turn off every "on" whose hold time has passed without confirmation."""
        events = []
        for held in self._held.values():
            hold = self.hold_for(held.signal.kind)
            if held.state and hold is not None and now - held.last_seen >= hold:
                held.state = False
                held.since = now
                events.append(
                    to_device_event(self.device_id, held.signal, now, state=False, reason="expired")
                )
        return events

    def holds_any(self) -> bool:
        """True while some property is on (so `expire` may have work to do)."""
        return any(held.state for held in self._held.values())

    def next_expiry(self) -> datetime | None:
        """When `expire` will next have something to do, if ever."""
        deadlines = []
        for held in self._held.values():
            hold = self.hold_for(held.signal.kind)
            if held.state and hold is not None:
                deadlines.append(held.last_seen + hold)
        return min(deadlines, default=None)

    def active(self) -> list[EventSignal]:
        """Signals whose property is currently on."""
        return [held.signal for held in self._held.values() if held.state]


class UnknownTopicCounter:
    """Counts notifications on topics no parser knows, per device and topic."""

    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = {}

    def record(self, device_id: str, topic: str) -> bool:
        """Count one; True the first time this device sends this topic (log it then)."""
        counts = self._counts.setdefault(device_id, Counter())
        counts[topic] += 1
        return counts[topic] == 1

    def counts(self, device_id: str) -> dict[str, int]:
        """Unknown topic → count for one device."""
        return dict(self._counts.get(device_id, {}))

    def total(self, device_id: str) -> int:
        """All unknown notifications from one device."""
        return sum(self._counts.get(device_id, Counter()).values())


class NotificationInterpreter:
    """Turns one device's notifications into events, with per-topic statistics."""

    def __init__(
        self,
        device_id: str,
        *,
        registry: TopicRegistry = PARSERS,
        tracker: PropertyStateTracker | None = None,
        unknown_topics: UnknownTopicCounter | None = None,
    ) -> None:
        self.device_id = device_id
        self.registry = registry
        self.tracker = tracker or PropertyStateTracker(device_id)
        self.unknown_topics = unknown_topics or UnknownTopicCounter()
        self.messages_per_topic: Counter[str] = Counter()
        self.malformed = 0

    def interpret(
        self, messages: PullMessagesResult | Iterable[NotificationMessage], now: datetime
    ) -> list[DeviceEvent]:
        """Events for a batch of notifications received at `now` (expiries included)."""
        if isinstance(messages, PullMessagesResult):
            for reason in messages.malformed:
                self._reject(reason)
            batch: Iterable[NotificationMessage] = messages.messages
        else:
            batch = messages
        events = self.tracker.expire(now)
        for message in batch:
            self.messages_per_topic[message.topic] += 1
            parser = self.registry.lookup(message.topic)
            if parser is None:
                if self.unknown_topics.record(self.device_id, message.topic):
                    logger.info(
                        "camera %s sends unknown event topic %r (counted, logged once)",
                        self.device_id,
                        message.raw_topic,
                    )
                continue
            try:
                signal = parser(message)
            except NotificationRejected as exc:
                self._reject(str(exc))
                continue
            events.extend(self.tracker.observe(signal, now))
        return events

    def _reject(self, reason: str) -> None:
        self.malformed += 1
        logger.warning("camera %s sent a malformed notification: %s", self.device_id, reason)
