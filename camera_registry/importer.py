"""Device sheets in: CSV and XLSX import. Bytes only (export: `camera_registry.exporter`).

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
from typing import Any

import openpyxl
from pydantic import ValidationError

from camera_registry._kinds import DeviceKind
from camera_registry.exporter import (
    Lang,
    export_csv,
    export_xlsx,
    neutralize_cell,
    template_csv,
    template_xlsx,
)
from camera_registry.gb28181 import GbId, looks_like_gb_id
from camera_registry.jurisdiction import validate_jurisdiction_code
from camera_registry.models import DeviceIn, Project, strip_credentials
from camera_registry.sheet_columns import (
    _COLUMNS_BY_KEY,
    _FALSE,
    _FORMULA,
    _HEADER_LOOKUP,
    _IGNORED_HEADERS,
    _KIND_VALUES,
    _LINE_BREAKS,
    _LIST_SPLIT,
    _PROJECT_VALUES,
    _SECRET_COLUMNS,
    _TEXT_ID_COLUMNS,
    _TRUE,
    _URL_COLUMNS,
    _URL_SPLIT,
    COLUMNS,
    Column,
    _header_key,
)

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
        # DB15/T 3968: a school's one-touch alarm is pushed with its address and position.
        if (
            device is not None
            and not errors
            and device.kind == DeviceKind.ALARM_POINT
            and device.project == Project.SCHOOL_ALARM
        ):
            if not device.address:
                fail("address", "a school panic button needs its address (DB15/T 3968)")
            if device.latitude is None:
                fail("longitude", "a school panic button needs its coordinates (DB15/T 3968)")
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
