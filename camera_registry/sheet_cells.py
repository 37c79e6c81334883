"""Device sheet cells: one row of header + cell values in, a `DeviceIn` or `RowError`s out.

The per-row half of `camera_registry.importer`: `_Converter` checks and converts the
cells of each data row (formula refusal, literal apostrophes, undecodable bytes,
GB/T 28181 ids, jurisdiction codes, coordinates, lists and flags) and collects the
errors with the value as it may be shown (no passwords, no URL credentials).
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from camera_registry._kinds import DeviceKind
from camera_registry.gb28181 import GbId, looks_like_gb_id
from camera_registry.jurisdiction import validate_jurisdiction_code
from camera_registry.models import DeviceIn, Project, strip_credentials
from camera_registry.sheet_columns import (
    _COLUMNS_BY_KEY,
    _FALSE,
    _FORMULA,
    _KIND_VALUES,
    _LINE_BREAKS,
    _LIST_SPLIT,
    _PROJECT_VALUES,
    _SECRET_COLUMNS,
    _TEXT_ID_COLUMNS,
    _TRUE,
    _URL_COLUMNS,
    _URL_SPLIT,
    _header_key,
)

_MAX_ERROR_VALUE = 200


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
