"""Vendor event topics and site topic mappings: vendor-shaped payloads → events → alarms."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from adapters.onvif.mapping import TopicMapping
from adapters.onvif.parsers import (
    PARSERS,
    NotificationInterpreter,
    parse_pull_messages_response,
)
from alarms.models import AlarmCategory
from alarms.rules import DEFAULT_RULES, DeviceContext, OpenAlarm, evaluate
from camera_registry.events import DeviceEvent, Severity
from hub.onvif.config import OnvifSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "onvif"
T0 = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
CAMERA = DeviceContext(device_id="cam-1", kind="camera", name="Gate camera")


def events_of(name: str, interpreter: NotificationInterpreter | None = None) -> list[DeviceEvent]:
    interpreter = interpreter or NotificationInterpreter("cam-1")
    result = parse_pull_messages_response((FIXTURES / name).read_bytes())
    events = interpreter.interpret(result, T0)
    assert interpreter.unknown_topics.total("cam-1") == 0, "a vendor topic was not recognised"
    return events


@pytest.mark.parametrize(
    ("fixture", "kind", "detail"),
    [
        ("axis_tampering.xml", "onvif.tamper", {"vendor": "axis", "channel": "1"}),
        ("axis_vmd3.xml", "onvif.motion", {"vendor": "axis", "profile": "vmd3_video_1"}),
        ("hikvision_alarm_in.xml", "onvif.digital_input", {"alarmintoken": "AlarmIn_1"}),
        ("tplink_intrusion.xml", "onvif.intrusion", {}),
        ("imou_digital_input.xml", "onvif.digital_input", {}),
        ("profile_m_people.xml", "onvif.person", {}),
        ("reolink_people.xml", "onvif.person", {}),
    ],
)
def test_vendor_topics_become_events(fixture: str, kind: str, detail: dict[str, str]) -> None:
    (event,) = events_of(fixture)
    assert event.kind == kind and event.payload["state"] is True
    for name, value in detail.items():
        assert event.payload[name] == value


def test_axis_io_port_initial_quiet_state_then_input_on() -> None:
    events = events_of("axis_io_port.xml")
    # "All quiet" at subscription start is not news; the port closing is.
    assert [(e.kind, e.payload["state"], e.payload["port"]) for e in events] == [
        ("onvif.digital_input", True, "1")
    ]


def test_tplink_line_crossing_is_a_state_with_an_end() -> None:
    events = events_of("tplink_line_cross.xml")
    assert [(e.kind, e.payload["state"]) for e in events] == [
        ("onvif.line_crossing", True),
        ("onvif.line_crossing", False),
    ]


def test_every_listed_vendor_topic_is_registered() -> None:
    for topic in (
        "tns1:VideoSource/tnsaxis:Tampering",
        "tns1:Device/tnsaxis:IO/Port",
        "tns1:RuleEngine/tnsaxis:VMD3/vmd3_video_1",
        "tns1:Device/Trigger/tnshik:AlarmIn",
        "tns1:RuleEngine/LineCrossDetector/LineCross",
        "tns1:RuleEngine/CellMotionDetector/Intrusion",
        "tns1:VideoSource/tns1:Device/Trigger/DigitalInput",
        "tns1:RuleEngine/PeopleDetector/People",
        "tns1:RuleEngine/MyRuleDetector/PeopleDetect",
    ):
        assert PARSERS.lookup(topic) is not None, topic


def _open(event: DeviceEvent) -> OpenAlarm:
    (decision,) = evaluate(event, CAMERA, {}, DEFAULT_RULES, T0)
    assert isinstance(decision, OpenAlarm)
    return decision


@pytest.mark.parametrize(
    "fixture", ["hikvision_alarm_in.xml", "imou_digital_input.xml", "axis_io_port.xml"]
)
def test_a_camera_alarm_input_opens_a_p2_security_alarm(fixture: str) -> None:
    (event,) = events_of(fixture)
    opened = _open(event)
    assert opened.alarm.type == "alarm_input"
    assert opened.alarm.priority.level == 2
    assert opened.alarm.category is AlarmCategory.SECURITY
    assert opened.alarm.title == "Alarm input triggered: Gate camera"


def test_the_input_going_quiet_opens_nothing() -> None:
    interpreter = NotificationInterpreter("cam-1")
    events_of("digital_input.xml", interpreter)
    document = (FIXTURES / "digital_input.xml").read_bytes().replace(b'"true"', b'"false"')
    (off,) = interpreter.interpret(parse_pull_messages_response(document), T0)
    assert off.payload["state"] is False
    assert evaluate(off, CAMERA, {}, DEFAULT_RULES, T0) == []


def test_storage_and_hardware_failures_open_p3_maintenance_alarms() -> None:
    interpreter = NotificationInterpreter("cam-1")
    result = parse_pull_messages_response((FIXTURES / "multiple.xml").read_bytes())
    failures = [
        e
        for e in interpreter.interpret(result, T0)
        if e.kind in ("onvif.storage_failure", "onvif.hardware_failure")
    ]
    assert {e.kind for e in failures} == {"onvif.storage_failure", "onvif.hardware_failure"}
    for event in failures:
        opened = _open(event)
        assert opened.alarm.type == "hardware_fault"
        assert opened.alarm.priority.level == 3
        assert opened.alarm.category is AlarmCategory.MAINTENANCE
        assert event.kind in opened.alarm.title
    # One alarm per failed part: a storage fault and a fan fault are two alarms.
    keys = {_open(event).alarm.dedup_key for event in failures}
    assert len(keys) == 2


def test_person_detection_is_recorded_without_an_alarm() -> None:
    (event,) = events_of("reolink_people.xml")
    assert evaluate(event, CAMERA, {}, DEFAULT_RULES, T0) == []


FENCE = {
    "name": "acme_fence",
    "topic": "tns1:RuleEngine/tnsacme:Fence/*",
    "data_item": ["Triggered"],
    "true_values": ["yes"],
    "false_values": ["no"],
    "kind": "onvif.intrusion",
    "severity": "major",
}


def test_a_site_mapping_turns_an_unknown_topic_into_alarms() -> None:
    settings = OnvifSettings.model_validate({"topic_mappings": [FENCE]})
    registry = PARSERS.extended(settings.adapter_mappings())
    interpreter = NotificationInterpreter("cam-1", registry=registry)
    result = parse_pull_messages_response((FIXTURES / "acme_fence.xml").read_bytes())
    events = interpreter.interpret(result, T0)
    # YES → on, no → off, "maybe" is neither: refused as malformed, not guessed.
    assert [(e.kind, e.payload["state"], e.severity) for e in events] == [
        ("onvif.intrusion", True, Severity.MAJOR),
        ("onvif.intrusion", False, Severity.INFO),
    ]
    assert events[0].payload["mapping"] == "acme_fence"
    assert interpreter.malformed == 1 and interpreter.unknown_topics.total("cam-1") == 0
    assert _open(events[0]).alarm.type == "intrusion"
    # Without the mapping the same topic is counted as unknown.
    plain = NotificationInterpreter("cam-1")
    assert plain.interpret(result, T0) == []
    assert plain.unknown_topics.counts("cam-1") == {"RuleEngine/Fence/Zone3": 3}


def test_a_site_mapping_is_asked_before_the_built_in_parsers() -> None:
    mapping = TopicMapping(
        name="hik_door",
        topic="Device/Trigger/AlarmIn",
        items=("State",),
        kind="onvif.door_open",
    )
    interpreter = NotificationInterpreter("cam-1", registry=PARSERS.extended([mapping]))
    result = parse_pull_messages_response((FIXTURES / "hikvision_alarm_in.xml").read_bytes())
    (event,) = interpreter.interpret(result, T0)
    assert event.kind == "onvif.door_open"
    # The shared registry is untouched.
    assert PARSERS.lookup("Device/Trigger/AlarmIn") is not mapping


def test_a_pulse_mapping_reports_only_the_happening() -> None:
    mapping = TopicMapping(
        name="fence_pulse",
        topic="RuleEngine/Fence/*",
        items=("Triggered",),
        kind="onvif.line_crossing",
        true_values=frozenset({"yes"}),
        pulse=True,
    )
    interpreter = NotificationInterpreter("cam-1", registry=PARSERS.extended([mapping]))
    result = parse_pull_messages_response((FIXTURES / "acme_fence.xml").read_bytes())
    events = interpreter.interpret(result, T0)
    assert [(e.kind, e.payload["state"]) for e in events] == [("onvif.line_crossing", True)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "Intrusion"}, "kind"),
        ({"topic": "RuleEngine/<Fence>"}, "topic"),
        ({"data_item": []}, "data_item"),
        ({"data_item": [" "]}, "blank"),
        ({"false_values": ["YES"]}, "both true and false"),
        ({"name": "Acme Fence"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_mappings_are_refused_with_the_reason(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OnvifSettings.model_validate({"topic_mappings": [{**FENCE, **change}]})


def test_mapping_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="unique"):
        OnvifSettings.model_validate({"topic_mappings": [FENCE, FENCE]})


def test_the_documented_mapping_example_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "onvif.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    (example,) = [b["onvif"] for b in blocks if "topic_mappings" in b.get("onvif", {})]
    settings = OnvifSettings.model_validate(example)
    interpreter = NotificationInterpreter(
        "cam-1", registry=PARSERS.extended(settings.adapter_mappings())
    )
    result = parse_pull_messages_response((FIXTURES / "acme_fence.xml").read_bytes())
    assert [e.kind for e in interpreter.interpret(result, T0)] == ["onvif.intrusion"] * 2
