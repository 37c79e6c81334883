"""OASIS Common Alerting Protocol (CAP) 1.2 encoding of alarms, and a checker.

Pure: builds an `xml.etree` tree from an alarm revision and serialises it.
One alarm is one CAP incident: revision 1 is an `Alert`, later revisions are
`Update`s referencing it, and a closed or false alarm is a `Cancel`.

`validate_alert` checks the structural rules of the CAP 1.2 schema and
specification (element order and multiplicity, enumerations, date-time
format, identifier characters, scope-dependent elements, circle syntax), so a
receiver's schema validation will not reject what we send.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from alarms.models import Alarm, AlarmCategory, AlarmState, HistoryEntry, Location

__all__ = [
    "CAP_NS",
    "AlarmTexts",
    "CapOptions",
    "CapResource",
    "build_alert",
    "cap_identifier",
    "encode_alert",
    "format_cap_time",
    "validate_alert",
]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
_HEADLINE_MAX = 160

_CATEGORY = {
    AlarmCategory.SECURITY: "Security",
    AlarmCategory.EMERGENCY: "Safety",
    AlarmCategory.MAINTENANCE: "Infra",
}
#: priority level -> (urgency, severity)
_URGENCY_SEVERITY = {
    1: ("Immediate", "Extreme"),
    2: ("Immediate", "Severe"),
    3: ("Expected", "Moderate"),
    4: ("Future", "Minor"),
}

_STATUS = {"Actual", "Exercise", "System", "Test", "Draft"}
_MSG_TYPE = {"Alert", "Update", "Cancel", "Ack", "Error"}
_SCOPE = {"Public", "Restricted", "Private"}
_CATEGORIES = {
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
}
_RESPONSE_TYPES = {
    "Shelter",
    "Evacuate",
    "Prepare",
    "Execute",
    "Avoid",
    "Monitor",
    "Assess",
    "AllClear",
    "None",
}
_URGENCIES = {"Immediate", "Expected", "Future", "Past", "Unknown"}
_SEVERITIES = {"Extreme", "Severe", "Moderate", "Minor", "Unknown"}
_CERTAINTIES = {"Observed", "Likely", "Possible", "Unlikely", "Unknown"}
_CAP_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[-+]\d{2}:\d{2}")
_NUMBER = r"-?\d+(?:\.\d+)?"
_CIRCLE = re.compile(rf"({_NUMBER}),\s*({_NUMBER})\s+(\d+(?:\.\d+)?)")

# (element, min occurrences, max occurrences or None for unbounded), in schema order.
_Spec = tuple[tuple[str, int, int | None], ...]
_ALERT_SPEC: _Spec = (
    ("identifier", 1, 1),
    ("sender", 1, 1),
    ("sent", 1, 1),
    ("status", 1, 1),
    ("msgType", 1, 1),
    ("source", 0, 1),
    ("scope", 1, 1),
    ("restriction", 0, 1),
    ("addresses", 0, 1),
    ("code", 0, None),
    ("note", 0, 1),
    ("references", 0, 1),
    ("incidents", 0, 1),
    ("info", 0, None),
)
_INFO_SPEC: _Spec = (
    ("language", 0, 1),
    ("category", 1, None),
    ("event", 1, 1),
    ("responseType", 0, None),
    ("urgency", 1, 1),
    ("severity", 1, 1),
    ("certainty", 1, 1),
    ("audience", 0, 1),
    ("eventCode", 0, None),
    ("effective", 0, 1),
    ("onset", 0, 1),
    ("expires", 0, 1),
    ("senderName", 0, 1),
    ("headline", 0, 1),
    ("description", 0, 1),
    ("instruction", 0, 1),
    ("web", 0, 1),
    ("contact", 0, 1),
    ("parameter", 0, None),
    ("resource", 0, None),
    ("area", 0, None),
)
_RESOURCE_SPEC: _Spec = (
    ("resourceDesc", 1, 1),
    ("mimeType", 1, 1),
    ("size", 0, 1),
    ("uri", 0, 1),
    ("derefUri", 0, 1),
    ("digest", 0, 1),
)
_AREA_SPEC: _Spec = (
    ("areaDesc", 1, 1),
    ("polygon", 0, None),
    ("circle", 0, None),
    ("geocode", 0, None),
    ("altitude", 0, 1),
    ("ceiling", 0, 1),
)
_VALUE_PAIR_SPEC: _Spec = (("valueName", 1, 1), ("value", 1, 1))
_ENUMS = {
    "status": _STATUS,
    "msgType": _MSG_TYPE,
    "scope": _SCOPE,
    "category": _CATEGORIES,
    "responseType": _RESPONSE_TYPES,
    "urgency": _URGENCIES,
    "severity": _SEVERITIES,
    "certainty": _CERTAINTIES,
}
_TIMES = {"sent", "effective", "onset", "expires"}
#: An RFC 3066 language tag, as CAP's <language> takes (zh-CN, en-US, en).
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_STATE_ZH = {
    "new": "新告警",
    "acknowledged": "已确认",
    "dispatched": "已派警",
    "resolved": "已处置",
    "closed": "已关闭",
    "false_alarm": "误报",
}
_DESCRIPTION_EN = {
    "title": "{title}.",
    "device": "Device {device}, priority {priority}, state {state}.",
    "times": "Opened {opened}, last seen {last}, triggered {count} time(s).",
    "and": ", ",
    "handler": "Handled by {handler}.",
    "closed": "Closed: {reason}.",
}
_DESCRIPTION_ZH = {
    "title": "{title}。",
    "device": "设备 {device}，优先级 {priority}，状态：{state}。",
    "times": "首次告警 {opened}，最近一次 {last}，共触发 {count} 次。",
    "and": "，",
    "handler": "处置单位/人员：{handler}。",
    "closed": "关闭原因：{reason}。",
}
#: language → {"title": ..., "sop": ...}, as the rules render them when an alarm opens.
AlarmTexts = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class CapOptions:
    """Per-sink CAP settings (from the sink's config)."""

    sender: str
    sender_name: str = "GridWatch"
    scope: str = "Restricted"
    restriction: str | None = "For public-safety dispatch and governance-center use only"
    addresses: str | None = None
    language: str = "en-US"
    timezone: tzinfo = UTC
    contact: str | None = None
    #: One <info> block per language, in this order (empty: just `language`).
    languages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.sender or re.search(r"[\s,<&]", self.sender):
            raise ValueError("CAP sender must be non-empty, without spaces, commas, < or &")
        if self.scope not in _SCOPE:
            raise ValueError(f"CAP scope must be one of {sorted(_SCOPE)}, got {self.scope!r}")
        if self.scope == "Restricted" and not self.restriction:
            raise ValueError("CAP scope Restricted needs a restriction text")
        if self.scope == "Private" and not self.addresses:
            raise ValueError("CAP scope Private needs addresses")
        for language in self.languages or (self.language,):
            if not _LANGUAGE.fullmatch(language):
                raise ValueError(f"CAP language {language!r} is not a tag such as zh-CN or en-US")

    @property
    def info_languages(self) -> tuple[str, ...]:
        """The languages of the <info> blocks, in document order."""
        return self.languages or (self.language,)


@dataclass(frozen=True, slots=True)
class CapResource:
    """A file that goes with an alert (an evidence clip): CAP `<resource>`.

    `digest` is the hex SHA-1 of the file, as CAP 1.2 defines `<digest>`
    (SHA-1 per FIPS 180-2); the hub's own APIs carry SHA-256 as well.
    """

    description: str
    mime_type: str
    size: int | None = None
    uri: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        if not self.description or not self.mime_type:
            raise ValueError("a CAP resource needs a description and a MIME type")
        if self.size is not None and self.size < 0:
            raise ValueError("a CAP resource size cannot be negative")
        if self.digest is not None and not re.fullmatch(r"[0-9a-f]{40}", self.digest):
            raise ValueError("a CAP resource digest is a hex SHA-1 (40 hex digits)")


def format_cap_time(value: datetime, tz: tzinfo = UTC) -> str:
    """CAP date-time: local offset, whole seconds, UTC written as -00:00 (never Z)."""
    if value.tzinfo is None:
        raise ValueError("CAP times need a timezone-aware datetime")
    local = value.astimezone(tz).replace(microsecond=0)
    text = local.isoformat()
    if local.utcoffset() == timedelta(0):
        # CAP 1.2 3.3.2: UTC is represented as "-00:00".
        text = text[:-6] + "-00:00"
    return text


def cap_identifier(alarm: Alarm, revision: int | None = None) -> str:
    """The CAP identifier of one alarm revision (unique per sender)."""
    return f"gridwatch-{alarm.id}-{alarm.revision if revision is None else revision}"


def _msg_type(alarm: Alarm) -> str:
    if alarm.revision == 1:
        return "Alert"
    if alarm.state in (AlarmState.CLOSED, AlarmState.FALSE_ALARM):
        return "Cancel"
    return "Update"


def _response_type(alarm: Alarm) -> str:
    if alarm.state is AlarmState.FALSE_ALARM:
        return "None"
    if alarm.state in (AlarmState.RESOLVED, AlarmState.CLOSED):
        return "AllClear"
    if alarm.category is AlarmCategory.MAINTENANCE or alarm.priority.level > 2:
        return "Assess"
    # The SOP in <instruction> is the pre-planned activity "Execute" refers to.
    return "Execute"


def _sub(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NS}}}{name}")
    if text is not None:
        element.text = text
    return element


def _pair(parent: ET.Element, name: str, value_name: str, value: str) -> None:
    element = _sub(parent, name)
    _sub(element, "valueName", value_name)
    _sub(element, "value", value)


def _description(
    alarm: Alarm, options: CapOptions, language: str = "en-US", title: str | None = None
) -> str:
    chinese = language.lower().startswith("zh")
    words = _DESCRIPTION_ZH if chinese else _DESCRIPTION_EN
    tz = options.timezone
    state = _STATE_ZH.get(alarm.state.value, alarm.state.value) if chinese else alarm.state.value
    lines = [
        words["title"].format(title=(title or alarm.title) if chinese else alarm.title),
        words["device"].format(device=alarm.device_id, priority=alarm.priority, state=state),
        words["times"].format(
            opened=format_cap_time(alarm.opened_at, tz),
            last=format_cap_time(alarm.last_seen_at, tz),
            count=alarm.count,
        ),
    ]
    if alarm.department or alarm.assignee:
        handler = words["and"].join(part for part in (alarm.department, alarm.assignee) if part)
        lines.append(words["handler"].format(handler=handler))
    if alarm.closed_reason:
        lines.append(words["closed"].format(reason=alarm.closed_reason))
    return "\n".join(lines)


def _text_for(texts: AlarmTexts, language: str) -> Mapping[str, str]:
    """The alarm's texts in `language` (exact tag, else its primary language), else none."""
    if language in texts:
        return texts[language]
    primary = language.split("-")[0].lower()
    for tag, text in texts.items():
        if tag.split("-")[0].lower() == primary:
            return text
    return {}


def _circle(location: Location) -> str:
    # CAP circle: "lat,lon radius" in WGS 84 degrees and kilometres.
    radius_km = location.radius_m / 1000.0
    return f"{location.latitude:.6f},{location.longitude:.6f} {radius_km:g}"


def build_alert(
    alarm: Alarm,
    change: HistoryEntry,
    options: CapOptions,
    *,
    location: Location | None = None,
    area_desc: str | None = None,
    texts: AlarmTexts | None = None,
    resources: tuple[CapResource, ...] = (),
) -> ET.Element:
    """The CAP `<alert>` element for `alarm` at the revision `change` produced.

    One `<info>` block per language of `options`; `texts` (language → title, sop, as
    the rules rendered them when the alarm opened) give each block its headline and
    instruction, the alarm's own title and SOP standing in for a language without.
    """
    if change.alarm_id != alarm.id or change.revision != alarm.revision:
        raise ValueError("the history entry must be the one that produced this alarm revision")
    tz = options.timezone
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", cap_identifier(alarm))
    _sub(alert, "sender", options.sender)
    _sub(alert, "sent", format_cap_time(change.at, tz))
    _sub(alert, "status", "Exercise" if alarm.is_drill else "Actual")
    msg_type = _msg_type(alarm)
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", options.scope)
    if options.scope == "Restricted":
        _sub(alert, "restriction", options.restriction)
    if options.addresses:
        _sub(alert, "addresses", options.addresses)
    note = alarm.closed_reason if msg_type == "Cancel" else change.note
    if note:
        _sub(alert, "note", note)
    if msg_type != "Alert":
        # The first revision's `sent` is the alarm's opening time, so it can be rebuilt.
        original = (
            f"{options.sender},{cap_identifier(alarm, 1)},{format_cap_time(alarm.opened_at, tz)}"
        )
        _sub(alert, "references", original)
    _sub(alert, "incidents", str(alarm.id))

    for language in options.info_languages:
        _info(
            alert,
            alarm,
            options,
            language,
            _text_for(texts or {}, language),
            location,
            area_desc,
            resources,
        )
    return alert


def _info(
    alert: ET.Element,
    alarm: Alarm,
    options: CapOptions,
    language: str,
    text: Mapping[str, str],
    location: Location | None,
    area_desc: str | None,
    resources: tuple[CapResource, ...] = (),
) -> None:
    """One <info> block in `language` (each block lists the same resources)."""
    tz = options.timezone
    info = _sub(alert, "info")
    _sub(info, "language", language)
    _sub(info, "category", _CATEGORY[alarm.category])
    _sub(info, "event", alarm.type)
    _sub(info, "responseType", _response_type(alarm))
    urgency, severity = _URGENCY_SEVERITY[alarm.priority.level]
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", "Unlikely" if alarm.state is AlarmState.FALSE_ALARM else "Observed")
    _pair(info, "eventCode", "gridwatch:type", alarm.type)
    _pair(info, "eventCode", "gridwatch:priority", str(alarm.priority))
    _sub(info, "onset", format_cap_time(alarm.opened_at, tz))
    _sub(info, "senderName", options.sender_name)
    title = text.get("title") or alarm.title
    _sub(info, "headline", title[:_HEADLINE_MAX])
    _sub(info, "description", _description(alarm, options, language, title))
    sop = text.get("sop") or alarm.sop
    if sop:
        _sub(info, "instruction", sop)
    if options.contact:
        _sub(info, "contact", options.contact)
    _pair(info, "parameter", "gridwatch:state", alarm.state.value)
    _pair(info, "parameter", "gridwatch:revision", str(alarm.revision))
    _pair(info, "parameter", "gridwatch:device_id", alarm.device_id)
    _pair(info, "parameter", "gridwatch:count", str(alarm.count))
    _pair(info, "parameter", "gridwatch:escalation_level", str(alarm.escalation_level))
    if alarm.department:
        _pair(info, "parameter", "gridwatch:department", alarm.department)
    if alarm.assignee:
        _pair(info, "parameter", "gridwatch:assignee", alarm.assignee)

    for resource in resources:
        element = _sub(info, "resource")
        _sub(element, "resourceDesc", resource.description)
        _sub(element, "mimeType", resource.mime_type)
        if resource.size is not None:
            _sub(element, "size", str(resource.size))
        if resource.uri is not None:
            _sub(element, "uri", resource.uri)
        if resource.digest is not None:
            _sub(element, "digest", resource.digest)

    area = _sub(info, "area")
    described = (location.description if location else None) or area_desc
    _sub(area, "areaDesc", described or alarm.jurisdiction or f"device {alarm.device_id}")
    if location is not None:
        _sub(area, "circle", _circle(location))
    if alarm.jurisdiction:
        _pair(area, "geocode", "gridwatch:jurisdiction", alarm.jurisdiction)


def encode_alert(
    alarm: Alarm,
    change: HistoryEntry,
    options: CapOptions,
    *,
    location: Location | None = None,
    area_desc: str | None = None,
    texts: AlarmTexts | None = None,
    resources: tuple[CapResource, ...] = (),
) -> bytes:
    """CAP 1.2 XML document (UTF-8, with declaration) for one alarm revision."""
    alert = build_alert(
        alarm,
        change,
        options,
        location=location,
        area_desc=area_desc,
        texts=texts,
        resources=resources,
    )
    document: bytes = ET.tostring(
        alert, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS
    )
    return document


def _local(element: ET.Element, path: str, errors: list[str]) -> str | None:
    tag = element.tag
    if not isinstance(tag, str) or not tag.startswith(f"{{{CAP_NS}}}"):
        errors.append(f"{path}: element {tag!r} is not in the CAP 1.2 namespace")
        return None
    return tag[len(CAP_NS) + 2 :]


def _check_sequence(parent: ET.Element, spec: _Spec, path: str, errors: list[str]) -> None:
    order = {name: index for index, (name, _, _) in enumerate(spec)}
    counts = dict.fromkeys(order, 0)
    position = 0
    for child in parent:
        name = _local(child, path, errors)
        if name is None:
            continue
        if name not in order:
            errors.append(f"{path}: unexpected element <{name}>")
            continue
        if order[name] < position:
            errors.append(f"{path}: <{name}> is out of order (schema order: {list(order)})")
        position = max(position, order[name])
        counts[name] += 1
    for name, low, high in spec:
        if counts[name] < low:
            errors.append(f"{path}: required element <{name}> is missing")
        if high is not None and counts[name] > high:
            errors.append(f"{path}: <{name}> appears {counts[name]} times, at most {high}")


def _children(parent: ET.Element, name: str) -> list[ET.Element]:
    return parent.findall(f"{{{CAP_NS}}}{name}")


def _check_values(element: ET.Element, path: str, errors: list[str]) -> None:
    for child in element:
        name = _local(child, path, errors)
        if name is None or len(child):
            continue
        text = (child.text or "").strip()
        if not text:
            errors.append(f"{path}/{name}: empty value")
        elif name in _ENUMS and text not in _ENUMS[name]:
            errors.append(f"{path}/{name}: {text!r} is not one of {sorted(_ENUMS[name])}")
        elif name in _TIMES and not _CAP_TIME.fullmatch(text):
            errors.append(f"{path}/{name}: {text!r} is not a CAP date-time (no Z, no fraction)")
        elif name in ("identifier", "sender") and re.search(r"[\s,<&]", text):
            errors.append(f"{path}/{name}: must not contain spaces, commas, < or &")
        elif name == "circle":
            _check_circle(text, f"{path}/circle", errors)
        elif name == "size" and not re.fullmatch(r"[0-9]+", text):
            errors.append(f"{path}/size: {text!r} is not a whole number of bytes")


def _check_circle(text: str, path: str, errors: list[str]) -> None:
    match = _CIRCLE.fullmatch(text)
    if match is None:
        errors.append(f"{path}: {text!r} is not 'lat,lon radius'")
        return
    latitude, longitude = float(match.group(1)), float(match.group(2))
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        errors.append(f"{path}: coordinates out of range in {text!r}")


def validate_alert(alert: ET.Element) -> list[str]:
    """Problems that make `alert` invalid CAP 1.2; an empty list means valid."""
    errors: list[str] = []
    if alert.tag != f"{{{CAP_NS}}}alert":
        return [f"root element is {alert.tag!r}, expected {{{CAP_NS}}}alert"]
    _check_sequence(alert, _ALERT_SPEC, "alert", errors)
    _check_values(alert, "alert", errors)
    scope = alert.findtext(f"{{{CAP_NS}}}scope")
    if scope == "Restricted" and not _children(alert, "restriction"):
        errors.append("alert: scope Restricted requires <restriction>")
    if scope == "Private" and not _children(alert, "addresses"):
        errors.append("alert: scope Private requires <addresses>")
    for info in _children(alert, "info"):
        _check_sequence(info, _INFO_SPEC, "alert/info", errors)
        _check_values(info, "alert/info", errors)
        for name in ("eventCode", "parameter"):
            for pair in _children(info, name):
                _check_sequence(pair, _VALUE_PAIR_SPEC, f"alert/info/{name}", errors)
                _check_values(pair, f"alert/info/{name}", errors)
        for resource in _children(info, "resource"):
            _check_sequence(resource, _RESOURCE_SPEC, "alert/info/resource", errors)
            _check_values(resource, "alert/info/resource", errors)
        for area in _children(info, "area"):
            _check_sequence(area, _AREA_SPEC, "alert/info/area", errors)
            _check_values(area, "alert/info/area", errors)
            for pair in _children(area, "geocode"):
                _check_sequence(pair, _VALUE_PAIR_SPEC, "alert/info/area/geocode", errors)
                _check_values(pair, "alert/info/area/geocode", errors)
    return errors
