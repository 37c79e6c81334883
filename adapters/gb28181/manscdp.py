"""MANSCDP XML bodies (GB/T 28181 MESSAGE/NOTIFY content), decoded and encoded, sans I/O.

Devices send GB2312/GB18030 or UTF-8 bodies, and some declare one and send
the other: `decode_body` reads the declared encoding, falls back sensibly, and
parses with the shared hardened parser (no DTD, no entities, bounded size).
`decode` then gives a typed message: `Keepalive`, `CatalogPage`, `DeviceInfo`,
`DeviceStatus`, `AlarmNotify`, `ControlResult`, or `Unknown` for command types
this hub does not use. `CatalogAssembler` joins the many MESSAGEs an NVR answers
a catalog query with (`SumNum`). The `*_query`/`*_control` functions build what
the platform sends. Both the 2016 and the 2022 editions are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from adapters.gb28181.alarm_types import AlarmKind, classify_alarm
from adapters.safexml import XmlRefused, parse_untrusted_xml

__all__ = [
    "MAX_BODY_BYTES",
    "AlarmNotify",
    "CatalogAssembler",
    "CatalogItem",
    "CatalogPage",
    "ControlResult",
    "DeviceInfo",
    "DeviceStatus",
    "Keepalive",
    "ManscdpError",
    "Unknown",
    "alarm_response",
    "alarm_subscription",
    "catalog_query",
    "catalog_subscription",
    "decode",
    "decode_body",
    "device_info_query",
    "device_status_query",
    "keepalive",
    "set_guard",
]

#: Largest MANSCDP body accepted (an NVR's catalog page of tens of items is ~20 KiB).
MAX_BODY_BYTES = 60 * 1024
#: Devices write local (Beijing) time without a zone.
CHINA_TIME = timezone(timedelta(hours=8))

_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9_\-]+)[\"'][^>]*\?>")
_GB_NAMES = frozenset({"gb2312", "gbk", "gb18030", "cp936", "euc-cn"})


class ManscdpError(ValueError):
    """A MANSCDP body that cannot be used; the text says why."""


def _text_of(body: bytes) -> str:
    declared = _DECLARATION.match(body)
    encoding = declared.group(1).decode("ascii").lower() if declared else None
    order = ["gb18030", "utf-8"] if encoding in _GB_NAMES else ["utf-8", "gb18030"]
    for candidate in order:
        try:
            return body.decode(candidate)
        except UnicodeDecodeError:
            continue
    raise ManscdpError("body is neither UTF-8 nor GB18030 text")


def decode_body(body: bytes) -> Any:
    """Parse a MANSCDP body (any of the encodings devices use) into its root element."""
    if len(body) > MAX_BODY_BYTES:
        raise ManscdpError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    text = _text_of(body.strip(b"\x00 \r\n\t"))
    # Re-encoded as UTF-8, so the declaration must not claim anything else.
    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
    try:
        return parse_untrusted_xml(text.encode("utf-8"), max_bytes=MAX_BODY_BYTES * 2)
    except XmlRefused as exc:
        raise ManscdpError(str(exc)) from exc


def _child(element: Any, name: str) -> Any:
    for child in element:
        if isinstance(child.tag, str) and child.tag.rpartition("}")[2] == name:
            return child
    return None


def _text(element: Any, name: str) -> str | None:
    child = _child(element, name)
    if child is None or child.text is None:
        return None
    value = str(child.text).strip()
    return value or None


def _int(element: Any, name: str) -> int | None:
    value = _text(element, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise ManscdpError(f"<{name}> is not a number: {value[:20]!r}") from exc


def _float(element: Any, name: str) -> float | None:
    value = _text(element, name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _device_id(element: Any) -> str:
    value = _text(element, "DeviceID")
    if value is None or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", value):
        raise ManscdpError(f"missing or invalid <DeviceID>: {value!r}")
    return value


def parse_device_time(text: str | None) -> datetime | None:
    """A device's `2026-12-06T10:00:00` (Beijing time unless zoned) as aware UTC."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CHINA_TIME)
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Keepalive:
    """`Notify/Keepalive`: the device is alive; `status` is OK or ERROR."""

    device_id: str
    sn: int
    status: str
    faulty_channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """One entry of a device's catalog: a channel, an alarm input or a directory node."""

    device_id: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    civil_code: str | None = None
    parent_id: str | None = None
    parental: bool = False
    address: str | None = None
    status: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    ptz_type: int | None = None
    business_group_id: str | None = None
    event: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def online(self) -> bool | None:
        """True/False from `Status` (ON/ONLINE/OK vs OFF/OFFLINE), None if unstated."""
        if self.status is None:
            return None
        return self.status.upper() in ("ON", "ONLINE", "OK")


@dataclass(frozen=True, slots=True)
class CatalogPage:
    """One MESSAGE (or NOTIFY) of a catalog answer: `sum_num` items in all, these here."""

    device_id: str
    sn: int
    sum_num: int
    items: tuple[CatalogItem, ...]
    notify: bool = False


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """`Response/DeviceInfo`: what the device says it is."""

    device_id: str
    sn: int
    name: str | None
    manufacturer: str | None
    model: str | None
    firmware: str | None
    channels: int | None
    result: str | None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """`Response/DeviceStatus`: online, working, recording, and alarm input duty states."""

    device_id: str
    sn: int
    online: bool | None
    status_ok: bool | None
    recording: bool | None
    alarm_inputs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlarmNotify:
    """`Notify/Alarm`: an alarm from a device (or one of its channels/inputs)."""

    device_id: str
    sn: int
    priority: int
    method: int
    alarm_type: int | None
    kind: AlarmKind
    time: datetime | None
    description: str | None
    longitude: float | None
    latitude: float | None
    event_type: int | None = None


@dataclass(frozen=True, slots=True)
class ControlResult:
    """`Response/DeviceControl` (e.g. the answer to SetGuard): OK or ERROR."""

    device_id: str
    sn: int
    ok: bool


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed MANSCDP message of a type this hub does not act on."""

    root: str
    cmd_type: str
    device_id: str | None
    sn: int | None


Message = (
    Keepalive | CatalogPage | DeviceInfo | DeviceStatus | AlarmNotify | ControlResult | Unknown
)


def _keepalive(root: Any, device_id: str, sn: int) -> Keepalive:
    faulty: list[str] = []
    info = _child(root, "Info")
    if info is not None:
        faulty = [str(c.text).strip() for c in info if c.text and str(c.text).strip()]
    return Keepalive(device_id, sn, (_text(root, "Status") or "OK").upper(), tuple(faulty))


_ITEM_FIELDS = {
    "DeviceID",
    "Name",
    "Manufacturer",
    "Model",
    "CivilCode",
    "ParentID",
    "Parental",
    "Address",
    "Status",
    "Longitude",
    "Latitude",
    "Info",
    "PTZType",
    "BusinessGroupID",
    "Event",
}


def _catalog_item(item: Any) -> CatalogItem:
    info = _child(item, "Info")
    ptz: int | None = None
    for holder in (item, info):
        if holder is not None and _text(holder, "PTZType") is not None:
            try:
                ptz = int(_text(holder, "PTZType") or "")
            except ValueError:
                ptz = None
    extra: dict[str, str] = {}
    for child in list(item) + (list(info) if info is not None else []):
        name = child.tag.rpartition("}")[2] if isinstance(child.tag, str) else ""
        if name and name not in _ITEM_FIELDS and child.text and len(extra) < 32:
            extra[name] = str(child.text).strip()[:256]
    parent = _text(item, "ParentID")
    return CatalogItem(
        device_id=_device_id(item),
        name=_text(item, "Name"),
        manufacturer=_text(item, "Manufacturer"),
        model=_text(item, "Model"),
        civil_code=_text(item, "CivilCode"),
        # 2016 lets ParentID hold "a/b/c" paths; the nearest parent is the last one.
        parent_id=parent.split("/")[-1] if parent else None,
        parental=_text(item, "Parental") == "1",
        address=_text(item, "Address"),
        status=_text(item, "Status"),
        longitude=_float(item, "Longitude"),
        latitude=_float(item, "Latitude"),
        ptz_type=ptz,
        business_group_id=_text(item, "BusinessGroupID"),
        event=(_text(item, "Event") or "").upper() or None,
        extra=extra,
    )


def _catalog(root: Any, device_id: str, sn: int, notify: bool) -> CatalogPage:
    sum_num = _int(root, "SumNum")
    device_list = _child(root, "DeviceList")
    items = (
        tuple(_catalog_item(i) for i in device_list if isinstance(i.tag, str))
        if device_list is not None
        else ()
    )
    if sum_num is None:
        sum_num = len(items)
    if sum_num < 0 or sum_num > 100_000:
        raise ManscdpError(f"implausible <SumNum> {sum_num}")
    return CatalogPage(device_id, sn, sum_num, items, notify)


def _yes(value: str | None, *yes: str) -> bool | None:
    return None if value is None else value.upper() in yes


def _status(root: Any, device_id: str, sn: int) -> DeviceStatus:
    inputs: dict[str, str] = {}
    alarms = _child(root, "Alarmstatus")
    if alarms is not None:
        for item in alarms:
            if isinstance(item.tag, str) and _text(item, "DeviceID") and len(inputs) < 1024:
                inputs[_text(item, "DeviceID") or ""] = (_text(item, "DutyStatus") or "").upper()
    return DeviceStatus(
        device_id=device_id,
        sn=sn,
        online=_yes(_text(root, "Online"), "ONLINE", "ON"),
        status_ok=_yes(_text(root, "Status"), "OK", "ON"),
        recording=_yes(_text(root, "Record"), "ON", "OK"),
        alarm_inputs=inputs,
    )


def _alarm(root: Any, device_id: str, sn: int) -> AlarmNotify:
    priority = _int(root, "AlarmPriority") or 4
    method = _int(root, "AlarmMethod") or 7
    if not 1 <= priority <= 4:
        priority = 4
    info = _child(root, "Info")
    alarm_type: int | None = None
    event_type: int | None = None
    if info is not None:
        alarm_type = _int(info, "AlarmType")
        param = _child(info, "AlarmTypeParam")
        if param is not None:
            event_type = _int(param, "EventType")
    if alarm_type is None:
        alarm_type = _int(root, "AlarmType")  # some devices put it at the top level
    return AlarmNotify(
        device_id=device_id,
        sn=sn,
        priority=priority,
        method=method,
        alarm_type=alarm_type,
        kind=classify_alarm(method, alarm_type),
        time=parse_device_time(_text(root, "AlarmTime")),
        description=(_text(root, "AlarmDescription") or None),
        longitude=_float(root, "Longitude"),
        latitude=_float(root, "Latitude"),
        event_type=event_type,
    )


def decode(body: bytes) -> Message:
    """Decode a MANSCDP body into a typed message; raises ManscdpError."""
    root = decode_body(body)
    root_name = str(root.tag).rpartition("}")[2]
    cmd_type = _text(root, "CmdType")
    if root_name not in ("Notify", "Response", "Query", "Control") or cmd_type is None:
        raise ManscdpError(f"not a MANSCDP message: <{root_name}> without <CmdType>")
    sn_value = _int(root, "SN")
    if cmd_type == "Keepalive" and root_name == "Notify":
        return _keepalive(root, _device_id(root), sn_value or 0)
    if cmd_type == "Catalog" and root_name in ("Response", "Notify"):
        return _catalog(root, _device_id(root), sn_value or 0, root_name == "Notify")
    if cmd_type == "DeviceInfo" and root_name == "Response":
        return DeviceInfo(
            device_id=_device_id(root),
            sn=sn_value or 0,
            name=_text(root, "DeviceName"),
            manufacturer=_text(root, "Manufacturer"),
            model=_text(root, "Model"),
            firmware=_text(root, "Firmware"),
            channels=_int(root, "Channel"),
            result=_text(root, "Result"),
        )
    if cmd_type == "DeviceStatus" and root_name == "Response":
        return _status(root, _device_id(root), sn_value or 0)
    if cmd_type == "Alarm" and root_name == "Notify":
        return _alarm(root, _device_id(root), sn_value or 0)
    if cmd_type == "DeviceControl" and root_name == "Response":
        return ControlResult(_device_id(root), sn_value or 0, _text(root, "Result") == "OK")
    device = _text(root, "DeviceID")
    return Unknown(root_name, cmd_type, device, sn_value)


# --------------------------------------------------------------------------- encoding


def _document(root: str, fields: Iterable[tuple[str, str | int]], *, charset: str) -> bytes:
    lines = [f'<?xml version="1.0" encoding="{charset}"?>', f"<{root}>"]
    for name, value in fields:
        lines.append(f"<{name}>{escape(str(value))}</{name}>")
    lines.append(f"</{root}>")
    text = "\r\n".join(lines) + "\r\n"
    return text.encode("gb18030" if charset.lower() in _GB_NAMES else "utf-8")


def _query(
    cmd_type: str, sn: int, device_id: str, charset: str, *more: tuple[str, str | int]
) -> bytes:
    fields: list[tuple[str, str | int]] = [
        ("CmdType", cmd_type),
        ("SN", sn),
        ("DeviceID", device_id),
    ]
    return _document("Query", [*fields, *more], charset=charset)


def catalog_query(sn: int, device_id: str, *, charset: str = "GB2312") -> bytes:
    """`Query/Catalog`: ask a device for its channels."""
    return _query("Catalog", sn, device_id, charset)


def device_info_query(sn: int, device_id: str, *, charset: str = "GB2312") -> bytes:
    """`Query/DeviceInfo`."""
    return _query("DeviceInfo", sn, device_id, charset)


def device_status_query(sn: int, device_id: str, *, charset: str = "GB2312") -> bytes:
    """`Query/DeviceStatus`."""
    return _query("DeviceStatus", sn, device_id, charset)


def catalog_subscription(sn: int, device_id: str, *, charset: str = "GB2312") -> bytes:
    """The SUBSCRIBE body for catalog changes (`Event: Catalog`)."""
    return _query("Catalog", sn, device_id, charset)


def alarm_subscription(sn: int, device_id: str, *, charset: str = "GB2312") -> bytes:
    """The SUBSCRIBE body for every alarm of any priority and method (`Event: presence`)."""
    return _query(
        "Alarm",
        sn,
        device_id,
        charset,
        ("StartAlarmPriority", 0),
        ("EndAlarmPriority", 0),
        ("AlarmMethod", 0),
    )


def set_guard(sn: int, device_id: str, *, arm: bool = True, charset: str = "GB2312") -> bytes:
    """`Control/DeviceControl` with `GuardCmd` SetGuard (arm) or ResetGuard (disarm)."""
    fields: list[tuple[str, str | int]] = [
        ("CmdType", "DeviceControl"),
        ("SN", sn),
        ("DeviceID", device_id),
        ("GuardCmd", "SetGuard" if arm else "ResetGuard"),
    ]
    return _document("Control", fields, charset=charset)


def alarm_response(sn: int, device_id: str, *, charset: str = "GB2312") -> bytes:
    """`Response/Alarm` with Result OK: the platform took the alarm."""
    fields: list[tuple[str, str | int]] = [
        ("CmdType", "Alarm"),
        ("SN", sn),
        ("DeviceID", device_id),
        ("Result", "OK"),
    ]
    return _document("Response", fields, charset=charset)


def keepalive(sn: int, device_id: str, *, charset: str = "GB2312") -> bytes:
    """`Notify/Keepalive` (what a device sends; used by the simulator)."""
    fields: list[tuple[str, str | int]] = [
        ("CmdType", "Keepalive"),
        ("SN", sn),
        ("DeviceID", device_id),
        ("Status", "OK"),
    ]
    return _document("Notify", fields, charset=charset)


# --------------------------------------------------------------------------- assembly


@dataclass(slots=True)
class _Pending:
    sum_num: int
    started: datetime
    items: dict[str, CatalogItem]


@dataclass(frozen=True, slots=True)
class Catalog:
    """A device's whole catalog once every page of one answer has arrived."""

    device_id: str
    sn: int
    items: tuple[CatalogItem, ...]


class CatalogAssembler:
    """Joins catalog pages by (device, SN) until `SumNum` items have arrived.

    Bounded: at most `max_pending` answers are assembled at once (the oldest is
    dropped), an answer older than `max_age` is dropped, and `SumNum` above
    `max_items` is refused. Times are passed in.
    """

    def __init__(
        self,
        *,
        max_items: int = 20_000,
        max_pending: int = 256,
        max_age: timedelta = timedelta(seconds=60),
    ) -> None:
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._max_items = max_items
        self._max_pending = max_pending
        self._max_age = max_age

    def add(self, page: CatalogPage, now: datetime) -> Catalog | None:
        """Take one page; return the whole catalog when this page completes it."""
        if page.sum_num > self._max_items:
            raise ManscdpError(f"catalog of {page.sum_num} items exceeds {self._max_items}")
        self._expire(now)
        key = (page.device_id, page.sn)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k].started)
                del self._pending[oldest]
            pending = self._pending[key] = _Pending(page.sum_num, now, {})
        for item in page.items:
            if len(pending.items) < self._max_items:
                pending.items[item.device_id] = item
        if len(pending.items) >= pending.sum_num:
            del self._pending[key]
            return Catalog(page.device_id, page.sn, tuple(pending.items.values()))
        return None

    def _expire(self, now: datetime) -> None:
        for key in [k for k, p in self._pending.items() if now - p.started > self._max_age]:
            del self._pending[key]

    @property
    def pending(self) -> int:
        """Answers still being assembled."""
        return len(self._pending)
