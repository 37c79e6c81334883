"""Pure parsing of ONVIF event traffic into `DeviceEvent`s (no I/O, time passed in).

A camera's PullMessages answer is parsed with the hardened XML parser into
`NotificationMessage`s; a registry of small per-topic functions turns each one
into an `EventSignal` (kind, on/off state); `PropertyStateTracker` decides which
signals are news (an `Initialized` repeat of a known state is not) and turns an
"on" that never got its "off" into an "off" after a hold time; the
`NotificationInterpreter` ties these together per device, counting unknown
topics and malformed notifications without dropping the rest of a batch.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from lxml import etree

from adapters.onvif.models import Candidate
from adapters.safexml import XmlRefused, parse_untrusted_xml, parse_xs_datetime
from camera_registry.events import DeviceEvent, Severity

__all__ = [
    "DEFAULT_HOLD_TIME",
    "DEFAULT_HOLD_TIMES",
    "PARSERS",
    "EventSignal",
    "NotificationInterpreter",
    "NotificationMessage",
    "NotificationRejected",
    "PropertyStateTracker",
    "PullMessagesResult",
    "SoapFault",
    "SubscriptionTimes",
    "TopicRegistry",
    "UnknownTopicCounter",
    "XmlRefused",
    "normalize_topic",
    "parse_bool",
    "parse_create_pull_point_response",
    "parse_events_xaddr",
    "parse_probe_matches",
    "parse_pull_messages_response",
    "parse_renew_response",
    "parse_soap_fault",
    "parse_subscription_times",
    "parse_system_date_and_time",
    "to_device_event",
]

logger = logging.getLogger(__name__)

EVENT_SOURCE = "onvif"

# ---------------------------------------------------------------------------
# XML helpers: match on local names so a camera's choice of namespace prefix
# (or an older namespace URI for the same element) does not matter.


def _local(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str):  # comments / processing instructions
        return ""
    return str(etree.QName(tag).localname)


def _first(element: Any, *path: str) -> Any | None:
    current = element
    for name in path:
        current = next((c for c in current if _local(c) == name), None)
        if current is None:
            return None
    return current


def _text(element: Any | None) -> str | None:
    if element is None or element.text is None:
        return None
    value = str(element.text).strip()
    return value or None


def _body(root: Any) -> Any:
    if _local(root) != "Envelope":
        raise XmlRefused(f"not a SOAP envelope (root element {_local(root)!r})")
    body = _first(root, "Body")
    if body is None:
        raise XmlRefused("SOAP envelope without a Body")
    return body


# ---------------------------------------------------------------------------
# Faults


@dataclass(frozen=True, slots=True)
class SoapFault(Exception):
    """A SOAP fault a camera answered with."""

    code: str
    subcodes: tuple[str, ...] = ()
    reason: str = ""

    def __str__(self) -> str:
        sub = f" ({', '.join(self.subcodes)})" if self.subcodes else ""
        return f"SOAP fault {self.code}{sub}: {self.reason or 'no reason given'}"

    @property
    def is_auth_failure(self) -> bool:
        """True when the fault says the credentials were not accepted."""
        names = (self.code, *self.subcodes)
        if any(n.split(":")[-1] in ("NotAuthorized", "FailedAuthentication") for n in names):
            return True
        reason = self.reason.lower()
        return "not authorized" in reason or "authentication" in reason

    @property
    def is_unknown_subscription(self) -> bool:
        """True when the camera no longer knows the subscription (expired / deleted)."""
        text = " ".join((self.code, *self.subcodes, self.reason)).lower()
        return any(
            marker in text
            for marker in (
                "resourceunknown",
                "unknown subscription",
                "invalidsubscription",
                "no such subscription",
                "expired",
            )
        )


def _fault_from_body(body: Any) -> SoapFault | None:
    fault = _first(body, "Fault")
    if fault is None:
        return None
    code = _first(fault, "Code")
    if code is not None:  # SOAP 1.2
        value = _text(_first(code, "Value")) or "env:Receiver"
        subcodes: list[str] = []
        sub = _first(code, "Subcode")
        while sub is not None and len(subcodes) < 8:
            sub_value = _text(_first(sub, "Value"))
            if sub_value:
                subcodes.append(sub_value)
            sub = _first(sub, "Subcode")
        reason_el = _first(fault, "Reason")
        reason = _text(_first(reason_el, "Text")) if reason_el is not None else None
        return SoapFault(value, tuple(subcodes), (reason or "")[:500])
    # SOAP 1.1
    return SoapFault(
        _text(_first(fault, "faultcode")) or "Server",
        (),
        (_text(_first(fault, "faultstring")) or "")[:500],
    )


def parse_soap_fault(data: bytes) -> SoapFault | None:
    """The fault in a SOAP answer, or None if it is not a fault."""
    return _fault_from_body(_body(parse_untrusted_xml(data)))


def _checked_body(data: bytes) -> Any:
    body = _body(parse_untrusted_xml(data))
    fault = _fault_from_body(body)
    if fault is not None:
        raise fault
    return body


# ---------------------------------------------------------------------------
# Topics and notification messages


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
        if _local(element) != "SimpleItem":
            continue
        name = element.get("Name")
        value = element.get("Value")
        if name and value is not None and len(items) < _MAX_ITEMS:
            items[name[:_MAX_VALUE]] = value[:_MAX_VALUE]
    return items


def _parse_notification(element: Any) -> NotificationMessage:
    topic_el = _first(element, "Topic")
    raw_topic = _text(topic_el)
    if not raw_topic:
        raise ValueError("notification without a topic")
    topic = normalize_topic(raw_topic)
    if not topic:
        raise ValueError(f"unreadable topic {raw_topic[:100]!r}")
    message_wrapper = _first(element, "Message")
    if message_wrapper is None:
        raise ValueError(f"notification {topic!r} without a Message")
    # wsnt:Message wraps tt:Message; tolerate cameras that put the items directly in it.
    inner = _first(message_wrapper, "Message")
    message = inner if inner is not None else message_wrapper
    operation_text = message.get("PropertyOperation")
    operation = None
    if operation_text is not None:
        operation = _OPERATIONS.get(operation_text.strip().lower())
        if operation is None:
            raise ValueError(f"unknown PropertyOperation {operation_text[:40]!r}")
    producer_el = _first(element, "ProducerReference", "Address")
    return NotificationMessage(
        topic=topic,
        raw_topic=raw_topic[:_MAX_VALUE],
        utc_time=parse_xs_datetime(message.get("UtcTime")),
        property_operation=operation,
        source=_simple_items(_first(message, "Source")),
        key=_simple_items(_first(message, "Key")),
        data=_simple_items(_first(message, "Data")),
        producer=_text(producer_el),
    )


def parse_pull_messages_response(data: bytes) -> PullMessagesResult:
    """Parse the raw SOAP of a PullMessagesResponse; a fault raises `SoapFault`."""
    body = _checked_body(data)
    response = _first(body, "PullMessagesResponse")
    if response is None:
        raise XmlRefused("answer is not a PullMessagesResponse")
    messages: list[NotificationMessage] = []
    malformed: list[str] = []
    for child in response:
        if _local(child) != "NotificationMessage":
            continue
        try:
            messages.append(_parse_notification(child))
        except ValueError as exc:
            # One bad notification must not cost the others in the batch.
            malformed.append(str(exc))
    return PullMessagesResult(
        current_time=parse_xs_datetime(_text(_first(response, "CurrentTime"))),
        termination_time=parse_xs_datetime(_text(_first(response, "TerminationTime"))),
        messages=tuple(messages),
        malformed=tuple(malformed),
    )


# ---------------------------------------------------------------------------
# Subscription answers


@dataclass(frozen=True, slots=True)
class SubscriptionTimes:
    """CurrentTime / TerminationTime as the camera reported them."""

    current_time: datetime | None
    termination_time: datetime | None

    def remaining(self) -> timedelta | None:
        """Subscription lifetime left, measured on the camera's own clock."""
        if self.current_time is None or self.termination_time is None:
            return None
        return self.termination_time - self.current_time


def parse_subscription_times(element: Any) -> SubscriptionTimes:
    """Read CurrentTime/TerminationTime children of a subscription answer element."""
    return SubscriptionTimes(
        current_time=parse_xs_datetime(_text(_first(element, "CurrentTime"))),
        termination_time=parse_xs_datetime(_text(_first(element, "TerminationTime"))),
    )


def parse_create_pull_point_response(
    data: bytes,
) -> tuple[str, tuple[bytes, ...], SubscriptionTimes]:
    """Subscription address, reference parameters (raw XML to echo) and times."""
    body = _checked_body(data)
    response = _first(body, "CreatePullPointSubscriptionResponse")
    if response is None:
        raise XmlRefused("answer is not a CreatePullPointSubscriptionResponse")
    reference = _first(response, "SubscriptionReference")
    address = _text(_first(reference, "Address")) if reference is not None else None
    if not address:
        raise XmlRefused("subscription answer without an address")
    parameters: list[bytes] = []
    params_el = _first(reference, "ReferenceParameters") if reference is not None else None
    if params_el is not None:
        for child in params_el:
            if isinstance(child.tag, str) and len(parameters) < 8:
                parameters.append(etree.tostring(child))
    return address, tuple(parameters), parse_subscription_times(response)


def parse_renew_response(data: bytes) -> SubscriptionTimes:
    """Parse a RenewResponse; a fault raises `SoapFault`."""
    body = _checked_body(data)
    response = _first(body, "RenewResponse")
    if response is None:
        raise XmlRefused("answer is not a RenewResponse")
    return parse_subscription_times(response)


def parse_system_date_and_time(data: bytes) -> datetime | None:
    """The camera's UTC clock from a GetSystemDateAndTimeResponse (None if absent)."""
    body = _checked_body(data)
    utc = _first(body, "GetSystemDateAndTimeResponse", "SystemDateAndTime", "UTCDateTime")
    if utc is None:
        return None
    parts: dict[str, int] = {}
    for group, names in (
        ("Date", ("Year", "Month", "Day")),
        ("Time", ("Hour", "Minute", "Second")),
    ):
        for name in names:
            text = _text(_first(utc, group, name))
            if text is None or not text.isdigit():
                return None
            parts[name] = int(text)
    try:
        return datetime(
            parts["Year"],
            parts["Month"],
            parts["Day"],
            parts["Hour"],
            parts["Minute"],
            parts["Second"],
            tzinfo=UTC,
        )
    except ValueError:
        return None


def parse_events_xaddr(data: bytes) -> str | None:
    """The event service XAddr from a GetCapabilities or GetServices answer."""
    body = _checked_body(data)
    capabilities = _first(body, "GetCapabilitiesResponse", "Capabilities")
    if capabilities is not None:
        return _text(_first(capabilities, "Events", "XAddr"))
    services = _first(body, "GetServicesResponse")
    if services is not None:
        for service in services:
            if _text(_first(service, "Namespace")) == "http://www.onvif.org/ver10/events/wsdl":
                return _text(_first(service, "XAddr"))
    return None


# ---------------------------------------------------------------------------
# WS-Discovery answers


def parse_probe_matches(data: bytes, responder: str | None = None) -> list[Candidate]:
    """Candidates from a WS-Discovery ProbeMatches message."""
    body = _body(parse_untrusted_xml(data, max_bytes=256 * 1024))
    matches = _first(body, "ProbeMatches")
    candidates: list[Candidate] = []
    if matches is None:
        return candidates
    for match in matches:
        if _local(match) != "ProbeMatch":
            continue
        endpoint = _text(_first(match, "EndpointReference", "Address"))
        if not endpoint:
            continue
        candidates.append(
            Candidate(
                endpoint=endpoint,
                xaddrs=tuple((_text(_first(match, "XAddrs")) or "").split()),
                scopes=tuple((_text(_first(match, "Scopes")) or "").split()),
                types=tuple((_text(_first(match, "Types")) or "").split()),
                responder=responder,
            )
        )
    return candidates


# ---------------------------------------------------------------------------
# The topic registry


class NotificationRejected(ValueError):
    """A notification on a known topic that does not carry what the topic requires."""


@dataclass(frozen=True, slots=True)
class EventSignal:
    """What one notification means: an event kind with an on/off state."""

    kind: str
    state: bool
    message: NotificationMessage
    severity: Severity = Severity.WARNING  # severity of the "on" edge; "off" is INFO
    pulse: bool = False  # a one-off event (line crossed), never held on
    detail: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", MappingProxyType(dict(self.detail)))

    @property
    def state_key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """Identifies one property: topic plus its source items."""
        return (self.kind, self.message.topic, tuple(sorted(self.message.source.items())))


TopicParser = Callable[[NotificationMessage], EventSignal]


class TopicRegistry:
    """Topic → parser function; `X/*` registers a whole subtree (and `X` itself)."""

    def __init__(self) -> None:
        self._exact: dict[str, TopicParser] = {}
        self._subtrees: dict[str, TopicParser] = {}

    def register(self, *topics: str) -> Callable[[TopicParser], TopicParser]:
        """Decorator: register a parser for one or more topics."""

        def decorate(parser: TopicParser) -> TopicParser:
            for topic in topics:
                if topic.endswith("/*"):
                    key = normalize_topic(topic[:-2]).lower()
                    table = self._subtrees
                else:
                    key = normalize_topic(topic).lower()
                    table = self._exact
                if not key:
                    raise ValueError(f"empty topic {topic!r}")
                if key in table:
                    raise ValueError(f"topic {topic!r} registered twice")
                table[key] = parser
            return parser

        return decorate

    def lookup(self, topic: str) -> TopicParser | None:
        """The parser for a (normalized or prefixed) topic; None if unknown."""
        key = normalize_topic(topic).lower()
        if key in self._exact:
            return self._exact[key]
        # The longest registered subtree wins.
        while key:
            if key in self._subtrees:
                return self._subtrees[key]
            key = key.rpartition("/")[0]
        return None

    def topics(self) -> list[str]:
        """Registered topics (subtrees end in `/*`), for documentation and tests."""
        return sorted([*self._exact, *(f"{t}/*" for t in self._subtrees)])


PARSERS = TopicRegistry()


def _state(message: NotificationMessage, *names: str) -> bool:
    value = message.item(*names)
    state = parse_bool(value)
    if state is None:
        raise NotificationRejected(
            f"{message.topic}: expected a boolean {'/'.join(names)}, got {value!r}"
        )
    return state


@PARSERS.register("tns1:VideoSource/MotionAlarm", "tns1:RuleEngine/MotionRegionDetector/Motion")
def _motion_alarm(message: NotificationMessage) -> EventSignal:
    return EventSignal("onvif.motion", _state(message, "State", "IsMotion"), message)


@PARSERS.register("tns1:RuleEngine/CellMotionDetector/Motion")
def _cell_motion(message: NotificationMessage) -> EventSignal:
    return EventSignal("onvif.motion", _state(message, "IsMotion", "State"), message)


@PARSERS.register("tns1:VideoSource/GlobalSceneChange/*")
def _scene_change(message: NotificationMessage) -> EventSignal:
    return EventSignal("onvif.tamper", _state(message, "State"), message, Severity.MAJOR)


@PARSERS.register("tns1:RuleEngine/TamperDetector/Tamper")
def _tamper_detector(message: NotificationMessage) -> EventSignal:
    return EventSignal(
        "onvif.tamper", _state(message, "IsTamper", "State"), message, Severity.MAJOR
    )


@PARSERS.register("tns1:RuleEngine/FieldDetector/ObjectsInside", "tns1:RuleEngine/FieldDetector/*")
def _field_detector(message: NotificationMessage) -> EventSignal:
    return EventSignal("onvif.intrusion", _state(message, "IsInside", "State"), message)


@PARSERS.register("tns1:RuleEngine/LineDetector/Crossed")
def _line_crossed(message: NotificationMessage) -> EventSignal:
    detail = {}
    object_id = message.item("ObjectId")
    if object_id is not None:
        detail["object_id"] = object_id
    return EventSignal("onvif.line_crossing", True, message, pulse=True, detail=detail)


def _image_quality(kind: str) -> TopicParser:
    def parse(message: NotificationMessage) -> EventSignal:
        return EventSignal(kind, _state(message, "State"), message)

    return parse


for _topic, _kind in (
    ("ImageTooBlurry", "onvif.image_too_blurry"),
    ("ImageTooDark", "onvif.image_too_dark"),
    ("ImageTooBright", "onvif.image_too_bright"),
):
    PARSERS.register(f"tns1:VideoSource/{_topic}/*")(_image_quality(_kind))


@PARSERS.register("tns1:Device/Trigger/DigitalInput")
def _digital_input(message: NotificationMessage) -> EventSignal:
    return EventSignal("onvif.digital_input", _state(message, "LogicalState", "State"), message)


@PARSERS.register("tns1:Device/HardwareFailure/StorageFailure")
def _storage_failure(message: NotificationMessage) -> EventSignal:
    return EventSignal(
        "onvif.storage_failure", _state(message, "Failed", "State"), message, Severity.MAJOR
    )


@PARSERS.register("tns1:Device/HardwareFailure/*")
def _hardware_failure(message: NotificationMessage) -> EventSignal:
    component = message.topic.rsplit("/", 1)[-1]
    state = _state(message, "Failed", "Critical", "State")
    return EventSignal(
        "onvif.hardware_failure", state, message, Severity.MAJOR, detail={"component": component}
    )


@PARSERS.register("tns1:VideoSource/SignalLoss")
def _signal_loss(message: NotificationMessage) -> EventSignal:
    return EventSignal("onvif.video_loss", _state(message, "State"), message, Severity.MAJOR)


# ---------------------------------------------------------------------------
# From signals to DeviceEvents


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
            return [to_device_event(self.device_id, signal, now)]
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
