"""Device sheets in and out: CSV and XLSX import, templates, and export. Bytes only.

**Import.** `import_devices` (or `parse_csv` / `parse_xlsx`) turns a file's bytes
into `DeviceIn` rows and a list of `RowError` saying, for every bad cell, the row
as a spreadsheet shows it (the header is row 1), the column as written in the
file, the offending value, and why. Nothing is stored here: the caller decides
between all-or-nothing and partial. Row 0 means the whole file.

* CSV: UTF-8 with or without BOM, UTF-16 with BOM, or GBK (decoded as GB18030,
  its superset). Bytes valid in neither are reported on the row and column they
  sit in. Comma, tab or semicolon separated.
* XLSX: the first worksheet, read with openpyxl in read-only mode.
* Headers: Chinese or English, any order, see `COLUMNS`; unknown headers are
  errors (a column the user thinks is imported but is not is worse than a stop).
* A cell that starts like a spreadsheet formula (``=``, ``@``, ``+cmd(``) is
  refused; a leading apostrophe marks a cell as literal text and is removed.
* Password values never appear in an error, and URLs in errors are shown
  without their ``user:password@``.

**Export.** `export_csv` / `export_xlsx` write the importable columns (never
credentials), so an export re-imports to the same devices. Text cells starting
with ``= + - @``, tab, CR or an apostrophe get a leading apostrophe so no
spreadsheet runs them as formulas.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import re
import zipfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Any, Literal

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from pydantic import ValidationError

from camera_registry._kinds import DeviceKind
from camera_registry.gb28181 import GbId, looks_like_gb_id
from camera_registry.jurisdiction import validate_jurisdiction_code
from camera_registry.models import DeviceFields, DeviceIn, Project, strip_credentials

__all__ = [
    "COLUMNS",
    "MAX_IMPORT_BYTES",
    "MAX_IMPORT_ROWS",
    "Column",
    "ImportReport",
    "Lang",
    "RowError",
    "export_csv",
    "export_xlsx",
    "import_devices",
    "neutralize_cell",
    "parse_csv",
    "parse_xlsx",
    "template_csv",
    "template_xlsx",
]

logger = logging.getLogger(__name__)

Lang = Literal["zh", "en"]

#: Files of this many bytes or more are refused (50 MB).
MAX_IMPORT_BYTES = 50_000_000
#: Data rows beyond this many are refused.
MAX_IMPORT_ROWS = 200_000
# An XLSX is a zip: refuse ones that inflate far beyond the byte cap.
_MAX_INFLATION = 20
_MAX_ERROR_VALUE = 200
_PROGRESS_EVERY = 1000

_XLSX_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True, slots=True)
class Column:
    """One importable column: its key, its template headers, and accepted aliases."""

    key: str
    zh: str
    en: str
    required: bool
    note_zh: str
    note_en: str
    aliases: tuple[str, ...] = ()

    def header(self, lang: Lang) -> str:
        """The template header in `lang`."""
        return self.zh if lang == "zh" else self.en


#: The columns, in template order. English headers equal `DeviceIn` field names,
#: except ``username`` / ``password`` which fill ``credentials``.
COLUMNS: tuple[Column, ...] = (
    Column(
        "id",
        "设备编码",
        "id",
        True,
        "20位国标编码或自定义编码（字母、数字、_.-，最长64）",
        "GB/T 28181 20-digit code or a free id [A-Za-z0-9_.-]{1,64}",
        ("设备ID", "国标编码", "国标ID", "编码", "device_id", "code"),
    ),
    Column(
        "name",
        "设备名称",
        "name",
        True,
        "例：新华大街与中山路口东北角",
        "e.g. Xinhua Street / Zhongshan Road NE corner",
        ("名称", "点位名称", "device_name"),
    ),
    Column(
        "kind",
        "设备类型",
        "kind",
        False,
        "摄像机/报警点/广播终端/录像机/平台；国标编码可推断时可留空",
        "camera, alarm_point, broadcast_unit, nvr or platform; may be empty for GB ids",
        ("类型", "type", "device_type"),
    ),
    Column(
        "project",
        "所属项目",
        "project",
        False,
        "雪亮工程/云眼/校园一键报警/云广播/智慧安防小区或其他",
        "sharp_eyes, cloud_eye, school_alarm, broadcast, smart_community or free text",
        ("项目",),
    ),
    Column(
        "jurisdiction",
        "所属辖区",
        "jurisdiction",
        False,
        "辖区节点编码，例：150102001",
        "jurisdiction node code, e.g. 150102001",
        ("辖区", "辖区编码", "所属网格", "网格编码", "jurisdiction_code"),
    ),
    Column(
        "longitude",
        "经度",
        "longitude",
        False,
        "WGS-84，-180~180",
        "WGS-84, -180..180",
        ("lon", "lng"),
    ),
    Column("latitude", "纬度", "latitude", False, "WGS-84，-90~90", "WGS-84, -90..90", ("lat",)),
    Column("address", "安装地址", "address", False, "", "", ("地址", "安装位置", "location")),
    Column(
        "vendor",
        "厂商",
        "vendor",
        False,
        "例：海康威视",
        "e.g. Hikvision",
        ("生产厂商", "品牌", "manufacturer"),
    ),
    Column("model", "型号", "model", False, "", "", ("设备型号",)),
    Column("firmware", "固件版本", "firmware", False, "", "", ("固件", "firmware_version")),
    Column("serial", "序列号", "serial", False, "", "", ("设备序列号", "serial_number")),
    Column(
        "onvif_url",
        "ONVIF地址",
        "onvif_url",
        False,
        "例：http://10.1.2.3/onvif/device_service（不含用户名密码）",
        "e.g. http://10.1.2.3/onvif/device_service (no user:password@)",
        ("onvif",),
    ),
    Column(
        "rtsp_urls",
        "RTSP地址",
        "rtsp_urls",
        False,
        "多个用;分隔，不含用户名密码",
        "several separated by ';', no user:password@",
        ("视频流地址", "取流地址", "rtsp", "rtsp_url"),
    ),
    Column("mqtt_device_id", "MQTT设备ID", "mqtt_device_id", False, "", "", ("mqtt_id",)),
    Column(
        "username",
        "用户名",
        "username",
        False,
        "设备登录用户名",
        "device login name",
        ("登录用户名", "user"),
    ),
    Column(
        "password",
        "密码",
        "password",
        False,
        "设备登录密码，加密保存，不会导出",
        "device login password; stored encrypted, never exported",
        ("登录密码",),
    ),
    Column("tags", "标签", "tags", False, "多个用;分隔", "several separated by ';'", ()),
    Column(
        "enabled",
        "启用",
        "enabled",
        False,
        "是/否，留空为是",
        "true/false, empty means true",
        ("是否启用",),
    ),
    Column(
        "linked_cameras",
        "关联摄像机",
        "linked_cameras",
        False,
        "报警点、广播终端联动的摄像机编码，多个用;分隔",
        "camera ids for alarm points and broadcast units, separated by ';'",
        ("联动摄像机",),
    ),
)

_COLUMNS_BY_KEY: Mapping[str, Column] = MappingProxyType({c.key: c for c in COLUMNS})
_EXPORT_COLUMNS = tuple(c for c in COLUMNS if c.key not in ("username", "password"))
_URL_COLUMNS = frozenset({"onvif_url", "rtsp_urls"})
_SECRET_COLUMNS = frozenset({"password"})
_TEXT_ID_COLUMNS = frozenset({"id", "jurisdiction", "linked_cameras", "serial", "mqtt_device_id"})


def _header_key(text: str) -> str:
    """Fold a header so that 'ONVIF 地址（必填）', 'onvif_url' and 'Onvif-URL' compare."""
    folded = text.replace("\ufeff", "").strip().casefold()
    folded = re.sub(r"[（(【\[].*?[）)】\]]", "", folded)  # drop notes such as （必填）
    return re.sub(r"[\s_\-*：:]", "", folded)


_HEADER_LOOKUP: Mapping[str, str] = MappingProxyType(
    {
        _header_key(alias): column.key
        for column in COLUMNS
        for alias in (column.zh, column.en, column.key, *column.aliases)
    }
)
# Row-number or remark columns that sheets often carry; ignored.
_IGNORED_HEADERS = frozenset(
    _header_key(h) for h in ("序号", "编号序号", "no", "#", "备注", "remark")
)

_KIND_LABELS_ZH: Mapping[DeviceKind, str] = MappingProxyType(
    {
        DeviceKind.CAMERA: "摄像机",
        DeviceKind.ALARM_POINT: "报警点",
        DeviceKind.BROADCAST_UNIT: "广播终端",
        DeviceKind.NVR: "录像机",
        DeviceKind.PLATFORM: "平台",
    }
)
_KIND_VALUES: Mapping[str, DeviceKind] = MappingProxyType(
    {
        **{_header_key(kind.value): kind for kind in DeviceKind},
        **{_header_key(label): kind for kind, label in _KIND_LABELS_ZH.items()},
        **{
            _header_key(label): kind
            for kind, labels in {
                DeviceKind.CAMERA: ("摄像头", "网络摄像机", "枪机", "球机", "半球", "ipc"),
                DeviceKind.ALARM_POINT: (
                    "一键报警",
                    "报警按钮",
                    "一键报警按钮",
                    "报警输入",
                    "alarm",
                ),
                DeviceKind.BROADCAST_UNIT: ("广播", "音柱", "云广播", "ip音柱", "broadcast"),
                DeviceKind.NVR: ("dvr", "硬盘录像机", "网络硬盘录像机", "网络录像机"),
                DeviceKind.PLATFORM: ("下级平台", "上级平台", "视频平台"),
            }.items()
            for label in labels
        },
    }
)
_PROJECT_LABELS_ZH: Mapping[str, str] = MappingProxyType(
    {
        Project.SHARP_EYES: "雪亮工程",
        Project.CLOUD_EYE: "云眼",
        Project.SCHOOL_ALARM: "校园一键报警",
        Project.BROADCAST: "云广播",
        Project.SMART_COMMUNITY: "智慧安防小区",
    }
)
_PROJECT_VALUES: Mapping[str, str] = MappingProxyType(
    {
        **{_header_key(label): str(project) for project, label in _PROJECT_LABELS_ZH.items()},
        _header_key("云眼工程"): Project.CLOUD_EYE.value,
        _header_key("天网工程"): Project.SHARP_EYES.value,
        _header_key("一键报警"): Project.SCHOOL_ALARM.value,
        _header_key("智慧小区"): Project.SMART_COMMUNITY.value,
    }
)
_TRUE = frozenset({"是", "启用", "true", "yes", "y", "1", "t", "on", "√"})
_FALSE = frozenset({"否", "停用", "禁用", "false", "no", "n", "0", "f", "off", "×"})
_URL_SPLIT = re.compile(r"[;；\s]+")
_LIST_SPLIT = re.compile(r"[;；,，、\s]+")
_LINE_BREAKS = re.compile(r"[ \t]*[\r\n]+[ \t]*")
# Formula starts that a spreadsheet would evaluate. '+'/'-' alone are common in
# real data (negative numbers, "+86 ..."), so they count only before a function
# call, a DDE pipe or a sheet reference.
_FORMULA = re.compile(r"[=@]|[+\-]\s*[A-Za-z_][A-Za-z0-9_.]*\s*[(|!]")
_NEUTRALIZE_FIRST = frozenset("=+-@\t\r'")


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem: spreadsheet row (header = 1, 0 = whole file), column, value, reason.

    `value` is None for passwords and where there is no single value.
    """

    row: int
    column: str | None
    value: str | None
    reason: str


@dataclass(slots=True)
class ImportReport:
    """What an import would do: the good rows with their row numbers, and every error."""

    rows: list[tuple[int, DeviceIn]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    format: str = ""
    encoding: str | None = None

    @property
    def ok(self) -> bool:
        """True if the file had no error at all."""
        return not self.errors

    @property
    def bad_rows(self) -> list[int]:
        """The distinct data rows that have errors, in order."""
        return sorted({e.row for e in self.errors if e.row > 1})


class _FileRejected(Exception):
    """The whole file is unusable; carries the one error that says why."""

    def __init__(self, error: RowError) -> None:
        super().__init__(error.reason)
        self.error = error


# ---------------------------------------------------------------------------
# Cells


@dataclass(frozen=True, slots=True)
class _Cell:
    header: str
    text: str | None
    literal: bool  # written with a leading apostrophe: never a formula
    number: float | int | None = None


def _cell_from_value(header: str, value: object) -> _Cell:
    if value is None:
        return _Cell(header, None, False)
    if isinstance(value, bool):
        return _Cell(header, "true" if value else "false", False)
    if isinstance(value, int):
        return _Cell(header, str(value), False, value)
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
        return _Cell(header, text, False, value)
    if isinstance(value, datetime | date | time):
        return _Cell(header, value.isoformat(), False)
    # Line breaks inside a cell (Alt+Enter in Excel) become spaces: stored values are
    # single-line, and lists are split on whitespace as well as on separators.
    text = _LINE_BREAKS.sub(" ", str(value)).strip()
    if text.startswith("'"):
        return _Cell(header, text[1:].strip() or None, True)
    return _Cell(header, text or None, False)


def _shown(column: str, text: str | None) -> str | None:
    """The value as it may appear in an error: no passwords, no URL credentials."""
    if text is None or column in _SECRET_COLUMNS:
        return None
    if column in _URL_COLUMNS:
        text = ";".join(strip_credentials(part) for part in _URL_SPLIT.split(text))
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text if len(text) <= _MAX_ERROR_VALUE else text[: _MAX_ERROR_VALUE - 1] + "…"


# Lone surrogates U+DC80..U+DCFF are what "surrogateescape" puts for undecodable bytes.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def _has_undecodable(text: str) -> bool:
    return _ESCAPED_BYTE.search(text) is not None


# ---------------------------------------------------------------------------
# Rows


@dataclass(slots=True)
class _Converter:
    """Turns header + cell rows into devices and errors, across one file."""

    known_jurisdictions: Container[str] | None
    encoding: str
    report: ImportReport
    seen_ids: dict[str, int] = field(default_factory=dict)

    def convert(self, row: int, cells: Mapping[str, _Cell]) -> None:
        errors: list[RowError] = []
        bad: set[str] = set()

        def fail(key: str, reason: str, text: str | None = None) -> None:
            cell = cells.get(key)
            header = cell.header if cell else _COLUMNS_BY_KEY[key].header("en")
            value = text if text is not None else (cell.text if cell else None)
            errors.append(RowError(row, header, _shown(key, value), reason))
            bad.add(key)

        text: dict[str, str] = {}
        for key, cell in cells.items():
            if cell.text is None:
                continue
            if _has_undecodable(cell.text):
                fail(key, f"contains bytes that are not valid {self.encoding} text")
            # A password is never exported, and "@dmin+1" is a plausible one.
            elif not cell.literal and key not in _SECRET_COLUMNS and _FORMULA.match(cell.text):
                fail(key, "looks like a spreadsheet formula; write ' before it if it is text")
            elif (
                key in _TEXT_ID_COLUMNS
                and isinstance(cell.number, float)
                and not (cell.number.is_integer() and abs(cell.number) < 2**53)
            ):
                fail(key, "stored as a number, which loses digits; format the column as text")
            else:
                text[key] = cell.text

        data: dict[str, Any] = {}
        for key in (
            "id",
            "name",
            "address",
            "vendor",
            "model",
            "firmware",
            "serial",
            "onvif_url",
            "mqtt_device_id",
            "jurisdiction",
        ):
            if key in text:
                data[key] = text[key]
        device_id = text.get("id")

        kind_text = text.get("kind")
        if kind_text is not None:
            kind = _KIND_VALUES.get(_header_key(kind_text))
            if kind is None:
                fail(
                    "kind",
                    "unknown device kind; use camera, alarm_point, broadcast_unit, "
                    "nvr or platform (摄像机/报警点/广播终端/录像机/平台)",
                )
            else:
                data["kind"] = kind
        elif "kind" not in bad:
            implied = _implied_kind(device_id)
            if implied is None:
                fail("kind", "kind is required (it cannot be inferred from the id)")
            else:
                data["kind"] = implied

        implied_kind = _implied_kind(device_id)
        if "kind" in data and implied_kind is not None and data["kind"] != implied_kind:
            fail("kind", f"the GB/T 28181 id's type code means {implied_kind}, not {data['kind']}")

        if "project" in text:
            data["project"] = _PROJECT_VALUES.get(_header_key(text["project"]), text["project"])

        for key in ("longitude", "latitude"):
            if key in text:
                number = _parse_float(text[key])
                if number is None:
                    fail(key, "not a number (decimal degrees expected, e.g. 111.749)")
                else:
                    data[key] = number

        for key, other in (("longitude", "latitude"), ("latitude", "longitude")):
            if key in text and other not in text and other not in bad:
                fail(other, f"{other} is required when {key} is given")

        if "rtsp_urls" in text:
            data["rtsp_urls"] = [
                u.strip() for u in _URL_SPLIT.split(text["rtsp_urls"]) if u.strip()
            ]
        for key in ("tags", "linked_cameras"):
            if key in text:
                data[key] = [v.strip() for v in _LIST_SPLIT.split(text[key]) if v.strip()]

        if "enabled" in text:
            flag = text["enabled"].strip().casefold()
            if flag in _TRUE:
                data["enabled"] = True
            elif flag in _FALSE:
                data["enabled"] = False
            else:
                fail("enabled", "use 是/否, true/false or 1/0")

        username, password = text.get("username"), text.get("password")
        if username is not None and password is not None:
            data["credentials"] = {"username": username, "password": password}
        elif username is not None and "password" not in bad:
            fail("password", "a username needs a password")
        elif password is not None and "username" not in bad:
            fail("username", "a password needs a username")

        if self.known_jurisdictions is not None and "jurisdiction" in text:
            code = _normalized_code(text["jurisdiction"])
            # A malformed code is left to the model's own, more precise error.
            if code is not None and code not in self.known_jurisdictions:
                fail("jurisdiction", "unknown jurisdiction code")

        if device_id is not None and "id" not in bad:
            first = self.seen_ids.get(device_id)
            if first is not None:
                fail("id", f"duplicate id: already used on row {first}")
            else:
                self.seen_ids[device_id] = row

        device: DeviceIn | None = None
        try:
            device = DeviceIn.model_validate(data)
        except ValidationError as exc:
            for item in exc.errors(include_input=False, include_url=False):
                error_key = _error_key(item["loc"])
                if error_key in bad:
                    continue  # already explained, more precisely
                reason = _error_reason(item)
                if error_key is None:
                    # Whole-row checks ran on a row missing its bad cells: only
                    # trust them when every cell was usable.
                    if not bad:
                        errors.append(RowError(row, None, None, reason))
                    continue
                loc = item["loc"]
                shown: str | None = None
                if error_key in ("rtsp_urls", "tags", "linked_cameras") and len(loc) > 1:
                    index = loc[1]
                    values = data.get(error_key, [])
                    if isinstance(index, int) and index < len(values):
                        shown = values[index]
                fail(error_key, reason, shown)
        if errors:
            self.report.errors.extend(errors)
        elif device is not None:
            self.report.rows.append((row, device))


def _normalized_code(text: str) -> str | None:
    try:
        return validate_jurisdiction_code(text)
    except ValueError:
        return None


def _implied_kind(device_id: str | None) -> DeviceKind | None:
    """The kind a GB/T 28181 id's type code implies; None for free or bad ids."""
    if device_id is None or not looks_like_gb_id(device_id):
        return None
    try:
        return GbId(device_id).device_kind
    except ValueError:
        return None


def _parse_float(text: str) -> float | None:
    try:
        number = float(text.strip().rstrip("°"))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _error_key(loc: tuple[int | str, ...]) -> str | None:
    if not loc:
        return None
    if loc[0] == "credentials":
        return "password" if "password" in loc else "username"
    return str(loc[0]) if str(loc[0]) in _COLUMNS_BY_KEY else None


_RANGE_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "longitude": "longitude out of range: must be between -180 and 180",
        "latitude": "latitude out of range: must be between -90 and 90",
    }
)


def _error_reason(item: Mapping[str, Any]) -> str:
    loc = item["loc"]
    if (
        loc
        and loc[0] in _RANGE_REASONS
        and item["type"] in ("less_than_equal", "greater_than_equal")
    ):
        return _RANGE_REASONS[str(loc[0])]
    return str(item["msg"]).removeprefix("Value error, ")


def _map_header(
    header: Sequence[object],
) -> tuple[dict[int, tuple[str, str]], list[RowError]]:
    """Map column positions to (key, header text); report unknown or missing columns."""
    positions: dict[int, tuple[str, str]] = {}
    errors: list[RowError] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(header):
        text = "" if raw is None else str(raw).strip()
        if not text:
            continue
        folded = _header_key(text)
        key = _HEADER_LOOKUP.get(folded)
        if key is None:
            if folded not in _IGNORED_HEADERS:
                errors.append(RowError(1, text, text, "unknown column; see the template's headers"))
            continue
        if key in seen:
            errors.append(RowError(1, text, text, f"same column as {seen[key]!r}"))
            continue
        seen[key] = text
        positions[index] = (key, text)
    for column in COLUMNS:
        if column.required and column.key not in seen:
            errors.append(
                RowError(1, None, None, f"missing required column {column.zh} / {column.en}")
            )
    return positions, errors


def _convert_rows(
    records: Iterable[Sequence[object]],
    *,
    report: ImportReport,
    known_jurisdictions: Container[str] | None,
    max_rows: int,
    progress: Callable[[int], None] | None,
) -> None:
    iterator = iter(records)
    header: Sequence[object] | None = None
    header_row = 0
    for candidate in iterator:
        header_row += 1
        if any(v is not None and str(v).strip() for v in candidate):
            header = candidate
            break
    if header is None:
        report.errors.append(RowError(0, None, None, "the file has no header row and no data"))
        return
    positions, header_errors = _map_header(header)
    # Header errors are reported on row 1 of the sheet even after leading blank lines.
    report.errors.extend(RowError(header_row, e.column, e.value, e.reason) for e in header_errors)
    if any(e.column is None for e in header_errors):
        return
    converter = _Converter(known_jurisdictions, report.encoding or "UTF-8", report)
    data_rows = 0
    for row, values in enumerate(iterator, start=header_row + 1):
        cells = {
            key: _cell_from_value(text, values[index] if index < len(values) else None)
            for index, (key, text) in positions.items()
        }
        if all(c.text is None for c in cells.values()):
            continue
        data_rows += 1
        if data_rows > max_rows:
            report.errors.append(
                RowError(row, None, None, f"too many rows: the limit is {max_rows} per file")
            )
            return
        converter.convert(row, cells)
        if progress is not None and data_rows % _PROGRESS_EVERY == 0:
            progress(data_rows)
    if progress is not None:
        progress(data_rows)


# ---------------------------------------------------------------------------
# Decoding and formats


def _check_size(data: bytes, max_bytes: int) -> None:
    if len(data) >= max_bytes:
        raise _FileRejected(
            RowError(
                0,
                None,
                None,
                f"file is {len(data) / 1e6:.1f} MB; imports must be smaller than "
                f"{max_bytes / 1e6:g} MB ({max_bytes} bytes): split the file",
            )
        )


def _decode(data: bytes) -> tuple[str, str]:
    """Return (text, encoding name); undecodable bytes become lone surrogates."""
    for bom, name, codec in (
        (codecs.BOM_UTF8, "UTF-8", "utf-8"),
        (codecs.BOM_UTF16_LE, "UTF-16", "utf-16"),
        (codecs.BOM_UTF16_BE, "UTF-16", "utf-16"),
    ):
        if not data.startswith(bom):
            continue
        if codec == "utf-8":
            return data[len(bom) :].decode(codec, "surrogateescape"), name
        try:
            return data.decode(codec), name
        except UnicodeDecodeError as exc:
            raise _FileRejected(
                RowError(0, None, None, f"the file starts as UTF-16 but is not valid UTF-16: {exc}")
            ) from exc
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "GBK"
    except UnicodeDecodeError:
        pass
    # Neither decodes cleanly; the rows holding the bad bytes are reported one by one.
    # GB18030 accepts most byte pairs, so UTF-8 text with a few bad bytes would
    # "decode" as GBK gibberish: judge by UTF-8 instead. Real UTF-8 text has far more
    # good multi-byte characters than bad bytes; GBK text read as UTF-8 has almost none.
    utf8 = data.decode("utf-8", "surrogateescape")
    bad = len(_ESCAPED_BYTE.findall(utf8))
    good = len(_NON_ASCII.findall(utf8)) - bad
    if good >= bad:
        return utf8, "UTF-8"
    return data.decode("gb18030", "surrogateescape"), "GBK"


def _sniff_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_csv(
    data: bytes,
    *,
    known_jurisdictions: Container[str] | None = None,
    max_bytes: int = MAX_IMPORT_BYTES,
    max_rows: int = MAX_IMPORT_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Parse CSV bytes (UTF-8 ± BOM, UTF-16 with BOM, or GBK) into devices and errors."""
    report = ImportReport(format="csv")
    try:
        _check_size(data, max_bytes)
        text, report.encoding = _decode(data)
    except _FileRejected as rejected:
        report.errors.append(rejected.error)
        return report
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    try:
        _convert_rows(
            reader,
            report=report,
            known_jurisdictions=known_jurisdictions,
            max_rows=max_rows,
            progress=progress,
        )
    except csv.Error as exc:
        report.errors.append(
            RowError(reader.line_num, None, None, f"the CSV cannot be read from here on: {exc}")
        )
    return report


def _xlsx_rows(data: bytes, max_bytes: int) -> Iterator[Sequence[object]]:
    """Yield the first worksheet's rows as value tuples."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise _FileRejected(RowError(0, None, None, f"not a readable XLSX file: {exc}")) from exc
    if inflated > max_bytes * _MAX_INFLATION:
        raise _FileRejected(
            RowError(0, None, None, f"the XLSX unpacks to {inflated / 1e6:.0f} MB; too large")
        )
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises many types for a corrupt workbook
        logger.info("unreadable XLSX upload: %s", type(exc).__name__)
        raise _FileRejected(
            RowError(0, None, None, f"not a readable XLSX workbook ({type(exc).__name__})")
        ) from exc
    try:
        if not workbook.worksheets:
            raise _FileRejected(RowError(0, None, None, "the workbook has no worksheet"))
        yield from workbook.worksheets[0].iter_rows(values_only=True)
    finally:
        workbook.close()


def parse_xlsx(
    data: bytes,
    *,
    known_jurisdictions: Container[str] | None = None,
    max_bytes: int = MAX_IMPORT_BYTES,
    max_rows: int = MAX_IMPORT_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Parse the first worksheet of XLSX bytes into devices and errors."""
    report = ImportReport(format="xlsx")
    try:
        _check_size(data, max_bytes)
        _convert_rows(
            _xlsx_rows(data, max_bytes),
            report=report,
            known_jurisdictions=known_jurisdictions,
            max_rows=max_rows,
            progress=progress,
        )
    except _FileRejected as rejected:
        report.errors.append(rejected.error)
    return report


def import_devices(
    data: bytes,
    *,
    known_jurisdictions: Container[str] | None = None,
    max_bytes: int = MAX_IMPORT_BYTES,
    max_rows: int = MAX_IMPORT_ROWS,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Parse a CSV or XLSX file (told apart by content, not name)."""
    options: dict[str, Any] = {
        "known_jurisdictions": known_jurisdictions,
        "max_bytes": max_bytes,
        "max_rows": max_rows,
        "progress": progress,
    }
    if data.startswith(_OLE_MAGIC):
        return ImportReport(
            errors=[
                RowError(
                    0, None, None, "old .xls workbooks are not supported; save as .xlsx or CSV"
                )
            ],
            format="xls",
        )
    if data.startswith(_XLSX_MAGIC):
        return parse_xlsx(data, **options)
    return parse_csv(data, **options)


# ---------------------------------------------------------------------------
# Templates and export


def neutralize_cell(text: str) -> str:
    """Prefix an apostrophe to text a spreadsheet could run as a formula.

    Text starting with an apostrophe is prefixed too, so import (which removes one
    leading apostrophe) gives back exactly what was exported.
    """
    return "'" + text if text and text[0] in _NEUTRALIZE_FIRST else text


def _headers(lang: Lang, columns: Sequence[Column] = COLUMNS) -> list[str]:
    return [c.header(lang) for c in columns]


def _export_values(device: DeviceFields, lang: Lang) -> list[str | float | None]:
    """The export columns of one device: text neutralized, coordinates as numbers."""
    kind = _KIND_LABELS_ZH[device.kind] if lang == "zh" else device.kind.value
    project = device.project
    if project is not None and lang == "zh":
        project = _PROJECT_LABELS_ZH.get(project, project)
    if lang == "zh":
        enabled = "是" if device.enabled else "否"
    else:
        enabled = "true" if device.enabled else "false"
    by_key: dict[str, str | float | None] = {
        "id": device.id,
        "name": device.name,
        "kind": kind,
        "project": project,
        "jurisdiction": device.jurisdiction,
        "longitude": device.longitude,
        "latitude": device.latitude,
        "address": device.address,
        "vendor": device.vendor,
        "model": device.model,
        "firmware": device.firmware,
        "serial": device.serial,
        "onvif_url": strip_credentials(device.onvif_url) if device.onvif_url else None,
        "rtsp_urls": ";".join(strip_credentials(u) for u in device.rtsp_urls) or None,
        "mqtt_device_id": device.mqtt_device_id,
        "tags": ";".join(device.tags) or None,
        "enabled": enabled,
        "linked_cameras": ";".join(device.linked_cameras) or None,
    }
    values: list[str | float | None] = []
    for column in _EXPORT_COLUMNS:
        value = by_key[column.key]
        values.append(neutralize_cell(value) if isinstance(value, str) else value)
    return values


def _csv_bytes(rows: Iterable[Sequence[str | float | None]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    # The BOM makes Excel open Chinese text as UTF-8 instead of the ANSI code page.
    return codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")


def template_csv(lang: Lang = "zh") -> bytes:
    """The import template as CSV: the header row only (UTF-8 with BOM)."""
    return _csv_bytes([_headers(lang)])


def export_csv(devices: Iterable[DeviceFields], lang: Lang = "zh") -> bytes:
    """Export devices as CSV (UTF-8 with BOM) in the import format, without credentials."""
    return _csv_bytes(
        [_headers(lang, _EXPORT_COLUMNS), *(_export_values(d, lang) for d in devices)]
    )


def _workbook_bytes(workbook: openpyxl.Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _sheet_title(lang: Lang) -> str:
    return "设备" if lang == "zh" else "devices"


def _write_header(sheet: Any, headers: Sequence[str]) -> None:
    bold = Font(bold=True)
    cells = []
    for text in headers:
        cell = WriteOnlyCell(sheet, value=text)
        cell.font = bold
        cells.append(cell)
    for index, text in enumerate(headers):
        letter = get_column_letter(index + 1)
        sheet.column_dimensions[letter].width = max(12, min(48, 2 * len(text) + 4))
    sheet.append(cells)


def template_xlsx(lang: Lang = "zh") -> bytes:
    """The import template as XLSX: a header-only device sheet and an instructions sheet."""
    workbook = openpyxl.Workbook(write_only=True)
    devices = workbook.create_sheet(_sheet_title(lang))
    _write_header(devices, _headers(lang))
    notes = workbook.create_sheet("说明" if lang == "zh" else "instructions")
    if lang == "zh":
        _write_header(notes, ["列名", "必填", "说明"])
    else:
        _write_header(notes, ["column", "required", "notes"])
    for column in COLUMNS:
        required = ("是" if lang == "zh" else "yes") if column.required else ""
        note = column.note_zh if lang == "zh" else column.note_en
        notes.append([column.header(lang), required, note])
    return _workbook_bytes(workbook)


def export_xlsx(devices: Iterable[DeviceFields], lang: Lang = "zh") -> bytes:
    """Export devices as XLSX in the import format, without credentials."""
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet(_sheet_title(lang))
    _write_header(sheet, _headers(lang, _EXPORT_COLUMNS))
    for device in devices:
        sheet.append(_export_values(device, lang))
    return _workbook_bytes(workbook)
