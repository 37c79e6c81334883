"""The topic → parser registry: what one notification means (kind, on/off state).

Small functions, one per topic (or topic subtree), registered on `PARSERS`;
standard ONVIF topics first, then the vendor topics cameras in the field send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from adapters.onvif.notifications import NotificationMessage, normalize_topic, parse_bool
from camera_registry.events import Severity

__all__ = [
    "PARSERS",
    "EventSignal",
    "NotificationRejected",
    "SiteTopicParser",
    "TopicParser",
    "TopicRegistry",
]


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


class SiteTopicParser(Protocol):
    """A parser a site configures (see `mapping.TopicMapping`): it says which topics it takes."""

    def matches(self, topic: str) -> bool:
        """True when this parser takes the (normalized) topic."""
        ...

    def __call__(self, message: NotificationMessage) -> EventSignal:
        """The signal of one notification on a topic it matches."""
        ...


class TopicRegistry:
    """Topic → parser function; `X/*` registers a whole subtree (and `X` itself).

    A registry `extended` with site parsers asks them first, in order, so a
    site can map a topic no release knows, or read a known one its own way.
    """

    def __init__(self) -> None:
        self._exact: dict[str, TopicParser] = {}
        self._subtrees: dict[str, TopicParser] = {}
        self._site: tuple[SiteTopicParser, ...] = ()

    def extended(self, site_parsers: Iterable[SiteTopicParser]) -> TopicRegistry:
        """A copy of this registry that asks `site_parsers` first."""
        registry = TopicRegistry()
        registry._exact = dict(self._exact)
        registry._subtrees = dict(self._subtrees)
        registry._site = (*tuple(site_parsers), *self._site)
        return registry

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
        for site_parser in self._site:
            if site_parser.matches(key):
                return site_parser
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
# Vendor topics seen in the field. Vendors put their own namespaces into the
# standard tree; topics are matched without prefixes, so `tnsaxis:` or
# `tnshik:` segments need no special handling here.


def _source_detail(message: NotificationMessage, vendor: str, *names: str) -> dict[str, str]:
    detail = {"vendor": vendor}
    for name in names:
        value = message.item(name)
        if value is not None:
            detail[name.lower()] = value
    return detail


@PARSERS.register("tns1:VideoSource/tnsaxis:Tampering")
def _axis_tampering(message: NotificationMessage) -> EventSignal:
    return EventSignal(
        "onvif.tamper",
        _state(message, "tampering", "State"),
        message,
        Severity.MAJOR,
        detail=_source_detail(message, "axis", "channel"),
    )


@PARSERS.register("tns1:Device/tnsaxis:IO/Port")
def _axis_io_port(message: NotificationMessage) -> EventSignal:
    # Axis reports every I/O port here; a port set up as an input is an alarm input.
    return EventSignal(
        "onvif.digital_input",
        _state(message, "state", "State", "LogicalState"),
        message,
        detail=_source_detail(message, "axis", "port"),
    )


@PARSERS.register("tns1:RuleEngine/tnsaxis:VMD3/*", "tns1:RuleEngine/tnsaxis:VMD4/*")
def _axis_motion(message: NotificationMessage) -> EventSignal:
    detail = _source_detail(message, "axis", "areaid")
    detail["profile"] = message.topic.rsplit("/", 1)[-1]
    return EventSignal(
        "onvif.motion", _state(message, "active", "State", "IsMotion"), message, detail=detail
    )


@PARSERS.register("tns1:Device/Trigger/tnshik:AlarmIn")
def _hikvision_alarm_in(message: NotificationMessage) -> EventSignal:
    return EventSignal(
        "onvif.digital_input",
        _state(message, "State", "LogicalState", "AlarmInState"),
        message,
        detail=_source_detail(message, "hikvision", "AlarmInToken", "InputToken"),
    )


@PARSERS.register("tns1:RuleEngine/LineCrossDetector/LineCross")
def _line_cross_state(message: NotificationMessage) -> EventSignal:
    # TP-Link states line crossing as a property (true, then false), not a one-off.
    return EventSignal("onvif.line_crossing", _state(message, "IsLineCross", "State"), message)


@PARSERS.register("tns1:RuleEngine/CellMotionDetector/Intrusion")
def _cell_intrusion(message: NotificationMessage) -> EventSignal:
    return EventSignal(
        "onvif.intrusion", _state(message, "IsIntrusion", "IsInside", "State"), message
    )


@PARSERS.register("tns1:VideoSource/tns1:Device/Trigger/DigitalInput")
def _imou_digital_input(message: NotificationMessage) -> EventSignal:
    # imou (Dahua) nests the standard digital-input topic under VideoSource.
    return EventSignal("onvif.digital_input", _state(message, "LogicalState", "State"), message)


@PARSERS.register(
    "tns1:RuleEngine/PeopleDetector/People", "tns1:RuleEngine/MyRuleDetector/PeopleDetect"
)
def _people(message: NotificationMessage) -> EventSignal:
    # A person in view is not by itself an intrusion: its own kind, no built-in alarm.
    return EventSignal("onvif.person", _state(message, "IsPeople", "State", "IsPerson"), message)
