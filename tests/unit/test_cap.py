"""CAP 1.2 output parsed back and checked field by field; the validator catches bad alerts."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters.sinks import (
    CAP_NS,
    CapOptions,
    build_alert,
    encode_alert,
    format_cap_time,
    validate_alert,
)
from alarms import Alarm, AlarmCategory, HistoryEntry, Location, apply
from tests.unit.alarm_factories import ALARM_ID, T0, new_alarm

NS = {"cap": CAP_NS}
OPTIONS = CapOptions(sender="gridwatch.pudong", contact="District command center 021-5555")
GATE = Location(31.230416, 121.473701, 250, "No.3 Primary School, main gate")


def parse(document: bytes) -> ET.Element:
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(document)  # noqa: S314 - our own output, not untrusted input


def text(root: ET.Element, path: str) -> str | None:
    return root.findtext(path, namespaces=NS)


def pairs(parent: ET.Element, name: str) -> dict[str, str]:
    return {
        el.findtext("cap:valueName", namespaces=NS) or "": el.findtext("cap:value", namespaces=NS)
        or ""
        for el in parent.findall(f"cap:{name}", NS)
    }


def panic() -> tuple[Alarm, HistoryEntry]:
    return new_alarm(
        priority=1,
        category=AlarmCategory.EMERGENCY,
        type="panic",
        title="Panic alarm: No.3 Primary School main gate",
        sop="Call the school security desk; dispatch the nearest police unit.",
        at=T0 + timedelta(microseconds=123456),
    )


def test_new_panic_alarm_is_a_cap_alert_with_every_field_mapped() -> None:
    alarm, entry = panic()
    root = parse(encode_alert(alarm, entry, OPTIONS, location=GATE))
    assert root.tag == f"{{{CAP_NS}}}alert"
    assert validate_alert(root) == []
    assert text(root, "cap:identifier") == f"gridwatch-{ALARM_ID}-1"
    assert text(root, "cap:sender") == "gridwatch.pudong"
    assert text(root, "cap:sent") == "2024-05-01T08:00:00-00:00"  # UTC as -00:00, no fraction
    assert text(root, "cap:status") == "Actual"
    assert text(root, "cap:msgType") == "Alert"
    assert text(root, "cap:scope") == "Restricted"
    assert text(root, "cap:restriction")
    assert root.find("cap:references", NS) is None
    assert text(root, "cap:incidents") == str(ALARM_ID)

    [info] = root.findall("cap:info", NS)
    assert text(info, "cap:language") == "en-US"
    assert text(info, "cap:category") == "Safety"
    assert text(info, "cap:event") == "panic"
    assert text(info, "cap:responseType") == "Execute"
    assert text(info, "cap:urgency") == "Immediate"
    assert text(info, "cap:severity") == "Extreme"
    assert text(info, "cap:certainty") == "Observed"
    assert pairs(info, "eventCode") == {"gridwatch:type": "panic", "gridwatch:priority": "P1"}
    assert text(info, "cap:onset") == "2024-05-01T08:00:00-00:00"
    assert text(info, "cap:senderName") == "GridWatch"
    assert text(info, "cap:headline") == "Panic alarm: No.3 Primary School main gate"
    description = text(info, "cap:description") or ""
    assert "Device cam-001, priority P1, state new." in description
    assert text(info, "cap:instruction") == alarm.sop
    assert text(info, "cap:contact") == "District command center 021-5555"
    assert pairs(info, "parameter") == {
        "gridwatch:state": "new",
        "gridwatch:revision": "1",
        "gridwatch:device_id": "cam-001",
        "gridwatch:count": "1",
        "gridwatch:escalation_level": "0",
    }
    [area] = info.findall("cap:area", NS)
    assert text(area, "cap:areaDesc") == "No.3 Primary School, main gate"
    assert text(area, "cap:circle") == "31.230416,121.473701 0.25"
    assert pairs(area, "geocode") == {"gridwatch:jurisdiction": "310101001"}


@pytest.mark.parametrize(
    ("priority", "category", "urgency", "severity", "cap_category", "response"),
    [
        (2, AlarmCategory.SECURITY, "Immediate", "Severe", "Security", "Execute"),
        (3, AlarmCategory.MAINTENANCE, "Expected", "Moderate", "Infra", "Assess"),
        (4, AlarmCategory.MAINTENANCE, "Future", "Minor", "Infra", "Assess"),
    ],
)
def test_priority_and_category_mapping(
    priority: int,
    category: AlarmCategory,
    urgency: str,
    severity: str,
    cap_category: str,
    response: str,
) -> None:
    alarm, entry = new_alarm(priority=priority, category=category)
    root = build_alert(alarm, entry, OPTIONS)
    assert validate_alert(root) == []
    info = root.find("cap:info", NS)
    assert info is not None
    assert (
        text(info, "cap:urgency"),
        text(info, "cap:severity"),
        text(info, "cap:category"),
        text(info, "cap:responseType"),
    ) == (urgency, severity, cap_category, response)


def test_later_revisions_are_updates_referencing_the_original_alert() -> None:
    alarm, _ = panic()
    acked, entry = apply(alarm, "acknowledge", "op", T0 + timedelta(seconds=30), note="on it")
    root = parse(encode_alert(acked, entry, OPTIONS))
    assert validate_alert(root) == []
    assert text(root, "cap:msgType") == "Update"
    assert text(root, "cap:identifier") == f"gridwatch-{ALARM_ID}-2"
    assert text(root, "cap:sent") == "2024-05-01T08:00:30-00:00"
    assert text(root, "cap:note") == "on it"
    assert text(root, "cap:references") == (
        f"gridwatch.pudong,gridwatch-{ALARM_ID}-1,2024-05-01T08:00:00-00:00"
    )
    assert text(root, "cap:incidents") == str(ALARM_ID)


def test_resolved_is_all_clear_and_closed_is_a_cancel() -> None:
    alarm, _ = panic()
    alarm, _ = apply(alarm, "acknowledge", "op", T0)
    resolved, entry = apply(alarm, "resolve", "op", T0 + timedelta(minutes=9))
    root = build_alert(resolved, entry, OPTIONS)
    assert text(root, "cap:msgType") == "Update"
    assert text(root, "cap:info/cap:responseType") == "AllClear"
    closed, entry = apply(resolved, "close", "op", T0 + timedelta(minutes=10), note="handled")
    root = build_alert(closed, entry, OPTIONS)
    assert validate_alert(root) == []
    assert text(root, "cap:msgType") == "Cancel"
    assert text(root, "cap:note") == "handled"


def test_false_alarm_is_a_cancel_with_unlikely_certainty() -> None:
    alarm, _ = panic()
    marked, entry = apply(alarm, "false_alarm", "op", T0, note="child pressed it")
    root = build_alert(marked, entry, OPTIONS)
    assert validate_alert(root) == []
    assert text(root, "cap:msgType") == "Cancel"
    assert text(root, "cap:note") == "child pressed it"
    assert text(root, "cap:info/cap:certainty") == "Unlikely"
    assert text(root, "cap:info/cap:responseType") == "None"


def test_drill_is_an_exercise() -> None:
    alarm, entry = new_alarm(is_drill=True)
    assert text(build_alert(alarm, entry, OPTIONS), "cap:status") == "Exercise"


def test_local_time_zone_and_language_from_the_sink_config() -> None:
    alarm, entry = panic()
    options = CapOptions(sender="gw", timezone=ZoneInfo("Asia/Shanghai"), language="zh-CN")
    root = build_alert(alarm, entry, options)
    assert text(root, "cap:sent") == "2024-05-01T16:00:00+08:00"
    assert text(root, "cap:info/cap:language") == "zh-CN"


def test_area_falls_back_to_jurisdiction_then_device() -> None:
    alarm, entry = new_alarm()
    root = build_alert(alarm, entry, OPTIONS)
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "310101001"
    assert root.find("cap:info/cap:area/cap:circle", NS) is None
    bare, entry = new_alarm(jurisdiction=None)
    root = build_alert(bare, entry, OPTIONS, area_desc=None)
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "device cam-001"
    assert validate_alert(root) == []


def test_public_and_private_scopes() -> None:
    alarm, entry = new_alarm()
    public = build_alert(alarm, entry, CapOptions(sender="gw", scope="Public"))
    assert public.find("cap:restriction", NS) is None
    assert validate_alert(public) == []
    private = build_alert(
        alarm, entry, CapOptions(sender="gw", scope="Private", addresses="police-dispatch-01")
    )
    assert text(private, "cap:addresses") == "police-dispatch-01"
    assert validate_alert(private) == []
    with pytest.raises(ValueError, match="Private needs addresses"):
        CapOptions(sender="gw", scope="Private")
    with pytest.raises(ValueError, match="without spaces, commas"):
        CapOptions(sender="grid watch")


def test_format_cap_time() -> None:
    assert format_cap_time(T0 + timedelta(microseconds=999_999)) == "2024-05-01T08:00:00-00:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_cap_time(T0.replace(tzinfo=None))


# --- the validator itself catches what a CAP schema validator would ---------------


def _valid_root() -> ET.Element:
    alarm, entry = panic()
    return build_alert(alarm, entry, OPTIONS, location=GATE)


def _q(name: str) -> str:
    return f"{{{CAP_NS}}}{name}"


def test_validator_flags_missing_required_elements() -> None:
    root = _valid_root()
    root.remove(root.find("cap:sender", NS))  # type: ignore[arg-type]
    info = root.find("cap:info", NS)
    assert info is not None
    info.remove(info.find("cap:urgency", NS))  # type: ignore[arg-type]
    errors = validate_alert(root)
    assert "alert: required element <sender> is missing" in errors
    assert "alert/info: required element <urgency> is missing" in errors


def test_validator_flags_wrong_order_and_unknown_elements() -> None:
    root = _valid_root()
    status = root.find("cap:status", NS)
    assert status is not None
    root.remove(status)
    root.insert(0, status)
    ET.SubElement(root, _q("priority")).text = "1"
    errors = validate_alert(root)
    assert any("<identifier> is out of order" in e for e in errors)
    assert "alert: unexpected element <priority>" in errors


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("cap:status", "Real", "'Real' is not one of"),
        ("cap:msgType", "Alarm", "'Alarm' is not one of"),
        ("cap:info/cap:category", "Police", "'Police' is not one of"),
        ("cap:info/cap:severity", "High", "'High' is not one of"),
        ("cap:sent", "2024-05-01T08:00:00Z", "not a CAP date-time"),
        ("cap:sent", "2024-05-01T08:00:00.5-00:00", "not a CAP date-time"),
        ("cap:identifier", "a,b", "must not contain spaces, commas"),
        ("cap:info/cap:area/cap:circle", "31.2 121.4 5", "is not 'lat,lon radius'"),
        ("cap:info/cap:area/cap:circle", "95.0,121.4 5", "coordinates out of range"),
        ("cap:info/cap:event", "", "empty value"),
    ],
)
def test_validator_flags_bad_values(path: str, value: str, message: str) -> None:
    root = _valid_root()
    element = root.find(path, NS)
    assert element is not None
    element.text = value
    assert any(message in error for error in validate_alert(root)), validate_alert(root)


def test_validator_flags_scope_rules_and_foreign_roots() -> None:
    root = _valid_root()
    root.remove(root.find("cap:restriction", NS))  # type: ignore[arg-type]
    assert "alert: scope Restricted requires <restriction>" in validate_alert(root)
    private = copy.deepcopy(root)
    scope = private.find("cap:scope", NS)
    assert scope is not None
    scope.text = "Private"
    assert "alert: scope Private requires <addresses>" in validate_alert(private)
    assert validate_alert(ET.Element("alert"))[0].startswith("root element is 'alert'")


def test_validator_accepts_the_cap_1_2_specification_example() -> None:
    # Appendix A.1 of the CAP 1.2 specification (homeland security advisory).
    example = b"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>43b080713727</identifier>
  <sender>hsas@dhs.gov</sender>
  <sent>2003-04-02T14:39:01-05:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Security</category>
    <event>Homeland Security Advisory System Update</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <senderName>U.S. Government, Department of Homeland Security</senderName>
    <headline>Homeland Security Sets Code ORANGE</headline>
    <description>The Department of Homeland Security has elevated the Homeland
 Security Advisory System threat level to ORANGE / High in response to intelligence
 which may indicate a heightened threat of terrorism.</description>
    <instruction> A High Condition is declared when there is a high risk of terrorist
 attacks. In addition to the Protective Measures taken in the previous Threat
 Conditions, Federal departments and agencies should consider agency-specific
 Protective Measures in accordance with their existing plans.</instruction>
    <web>http://www.dhs.gov/dhspublic/display?theme=29</web>
    <parameter>
      <valueName>HSAS</valueName>
      <value>ORANGE</value>
    </parameter>
    <resource>
      <resourceDesc>Image file (GIF)</resourceDesc>
      <mimeType>image/gif</mimeType>
      <uri>http://www.dhs.gov/dhspublic/getAdvisoryImage</uri>
    </resource>
    <area>
      <areaDesc>U.S. nationwide and interests worldwide</areaDesc>
    </area>
  </info>
</alert>"""
    assert validate_alert(parse_any(example)) == []


def parse_any(document: bytes) -> ET.Element:
    return ET.fromstring(document)  # noqa: S314 - a fixed document in this file
