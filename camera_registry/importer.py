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
import zipfile
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from typing import Any

import openpyxl

from camera_registry.exporter import (
    Lang,
    export_csv,
    export_xlsx,
    neutralize_cell,
    template_csv,
    template_xlsx,
)
from camera_registry.sheet_cells import (
    _ESCAPED_BYTE,
    _NON_ASCII,
    ImportReport,
    RowError,
    _cell_from_value,
    _Converter,
)
from camera_registry.sheet_columns import (
    _HEADER_LOOKUP,
    _IGNORED_HEADERS,
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
_PROGRESS_EVERY = 1000

_XLSX_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class _FileRejected(Exception):
    """The whole file is unusable; carries the one error that says why."""

    def __init__(self, error: RowError) -> None:
        super().__init__(error.reason)
        self.error = error


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
