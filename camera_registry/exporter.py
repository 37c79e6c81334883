"""Device sheets out: CSV and XLSX templates and exports of the importable columns.

Exports never carry credentials, so an export re-imports to the same devices. Text
cells starting with ``= + - @``, tab, CR or an apostrophe get a leading apostrophe
so no spreadsheet runs them as formulas.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import openpyxl
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from camera_registry.models import DeviceFields, strip_credentials
from camera_registry.sheet_columns import (
    _EXPORT_COLUMNS,
    _KIND_LABELS_ZH,
    _NEUTRALIZE_FIRST,
    _PROJECT_LABELS_ZH,
    COLUMNS,
    Column,
    Lang,
)

__all__ = ["Lang", "export_csv", "export_xlsx", "neutralize_cell", "template_csv", "template_xlsx"]


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
