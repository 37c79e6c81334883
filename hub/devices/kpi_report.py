"""Online-rate and intact-rate reports per jurisdiction node, from the stored state history.

The rates are time-weighted (`camera_registry.kpi`): every device's state
history over the period is cut at the reporting-day boundaries of
Asia/Shanghai, `unknown` time is left out of the denominator, and a node's
figure adds the seconds of every device in its subtree. The same Python
arithmetic runs on every backend, so SQLite, PostgreSQL and TimescaleDB give
the same numbers. The probe-success column comes from the samples (on
TimescaleDB from their daily continuous aggregate).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from camera_registry.jurisdiction import JurisdictionNode
from camera_registry.kpi import (
    REPORTING_ZONE,
    PeriodKpi,
    StateChange,
    combine,
    day_bounds,
    month_bounds,
    period_kpi,
)
from camera_registry.models import HealthState
from hub.devices.health_storage import HealthRepository, ProbeCounts

__all__ = [
    "KpiPeriod",
    "KpiReport",
    "KpiRow",
    "ScopeError",
    "build_kpi_report",
    "kpi_csv",
    "kpi_table",
    "kpi_xlsx",
    "parse_period",
]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class ScopeError(LookupError):
    """The jurisdiction does not exist or lies outside the caller's scope."""


@dataclass(frozen=True, slots=True)
class KpiPeriod:
    """A reporting day or month: its label and [start, end) as UTC instants."""

    label: str
    start: datetime
    end: datetime


def parse_period(*, month: str | None = None, day: str | None = None) -> KpiPeriod:
    """The reporting period named `YYYY-MM` (month) or `YYYY-MM-DD` (day), Asia/Shanghai."""
    if (month is None) == (day is None):
        raise ValueError("give exactly one of month (YYYY-MM) or day (YYYY-MM-DD)")
    if month is not None:
        match = _MONTH.match(month)
        if match is None or not 1 <= int(match[2]) <= 12:
            raise ValueError(f"month must look like 2026-11, not {month!r}")
        start, end = month_bounds(int(match[1]), int(match[2]))
        return KpiPeriod(month, start, end)
    assert day is not None  # noqa: S101 - one of the two is set
    try:
        parsed = date.fromisoformat(day)
    except ValueError as exc:
        raise ValueError(f"day must look like 2026-11-20, not {day!r}") from exc
    start, end = day_bounds(parsed)
    return KpiPeriod(parsed.isoformat(), start, end)


@dataclass(frozen=True, slots=True)
class KpiRow:
    """One jurisdiction node's KPI over the period (its whole subtree)."""

    code: str | None
    name: str
    path: str | None
    devices: int
    kpi: PeriodKpi
    probes: int
    ok_probes: int

    @property
    def probe_success_rate(self) -> float | None:
        """Share of probes that got pictures; None without probes."""
        return self.ok_probes / self.probes if self.probes else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (rates as fractions 0..1)."""
        return {
            "code": self.code,
            "name": self.name,
            "path": self.path,
            "devices": self.devices,
            "online_rate": _round(self.kpi.online_rate),
            "intact_rate": _round(self.kpi.intact_rate),
            "online_s": round(self.kpi.online_s, 3),
            "intact_s": round(self.kpi.intact_s, 3),
            "degraded_s": round(self.kpi.degraded_s, 3),
            "offline_s": round(self.kpi.offline_s, 3),
            "unknown_s": round(self.kpi.unknown_s, 3),
            "known_s": round(self.kpi.known_s, 3),
            "probes": self.probes,
            "ok_probes": self.ok_probes,
            "probe_success_rate": _round(self.probe_success_rate),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(frozen=True, slots=True)
class KpiReport:
    """A node's KPI and its children's, for one period, as of `until`."""

    period: KpiPeriod
    until: datetime
    node: KpiRow
    children: tuple[KpiRow, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "period": self.period.label,
            "start": self.period.start,
            "end": self.period.end,
            "until": self.until,
            "zone": str(REPORTING_ZONE),
            "node": self.node.as_dict(),
            "children": [child.as_dict() for child in self.children],
        }


def _within(path: str, scope_paths: Sequence[str] | None) -> bool:
    if scope_paths is None or "/" in scope_paths:
        return True
    return any(path.startswith(prefix) for prefix in scope_paths)


async def build_kpi_report(
    repository: HealthRepository,
    *,
    period: KpiPeriod,
    until: datetime,
    code: str | None,
    scope_paths: Sequence[str] | None,
) -> KpiReport:
    """The KPI of node `code` (None: everything in scope) and of each of its children.

    Raises ScopeError when `code` is unknown or outside `scope_paths`.
    """
    top: JurisdictionNode | None = None
    subtree: str | None = None
    if code is not None:
        found = await repository.jurisdiction(code)
        if found is None or not _within(found[1], scope_paths):
            raise ScopeError(code)
        top, subtree = found
        children = await repository.jurisdiction_children(code)
    elif scope_paths is None or "/" in scope_paths:
        children = await repository.jurisdiction_children(None)
    else:
        children = await repository.jurisdictions_by_path(list(scope_paths))
    devices = await repository.devices_in(scope_paths, subtree)
    changes = await repository.state_changes(scope_paths, subtree, period.start, period.end)
    counts = await repository.probe_counts(scope_paths, subtree, period.start, period.end)

    histories: dict[str, list[StateChange]] = defaultdict(list)
    for change in changes:
        histories[change.device_id].append((change.at, HealthState(change.state)))
    per_device = {
        device_id: period_kpi(histories.get(device_id, []), period.start, period.end, until=until)
        for device_id in devices
    }

    def row(node_code: str | None, name: str, path: str | None, members: Sequence[str]) -> KpiRow:
        kpis = [per_device[d] for d in members]
        total = combine(kpis) if kpis else period_kpi([], period.start, period.end, until=until)
        probe_counts = [counts.get(d, ProbeCounts(0, 0, 0)) for d in members]
        return KpiRow(
            code=node_code,
            name=name,
            path=path,
            devices=len(members),
            kpi=total,
            probes=sum(c.probes for c in probe_counts),
            ok_probes=sum(c.ok for c in probe_counts),
        )

    node_row = row(
        top.code if top else None,
        top.name if top else "all",
        subtree,
        sorted(devices),
    )
    child_rows = []
    for child, child_path in children:
        members = sorted(d for d, path in devices.items() if path and path.startswith(child_path))
        child_rows.append(row(child.code, child.name, child_path, members))
    return KpiReport(period, until, node_row, tuple(child_rows))


_COLUMNS = (
    ("code", "code"),
    ("name", "name"),
    ("devices", "devices"),
    ("online_rate", "online rate"),
    ("intact_rate", "intact rate"),
    ("online_s", "online s"),
    ("intact_s", "intact s"),
    ("offline_s", "offline s"),
    ("unknown_s", "unknown s"),
    ("probes", "probes"),
    ("probe_success_rate", "probe success"),
)


def _rows(report: KpiReport) -> list[dict[str, Any]]:
    return [report.node.as_dict(), *(child.as_dict() for child in report.children)]


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def kpi_table(report: KpiReport) -> str:
    """A plain-text table for a terminal."""
    header = [title for _, title in _COLUMNS]
    lines = [header]
    for item in _rows(report):
        cells = []
        for key, _ in _COLUMNS:
            value = item[key]
            if key.endswith("_rate"):
                cells.append(_percent(value))
            elif isinstance(value, float):
                cells.append(f"{value:.0f}")
            else:
                cells.append("" if value is None else str(value))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    title = (
        f"Online and intact rate, {report.period.label} ({REPORTING_ZONE}),"
        f" as of {report.until.astimezone(REPORTING_ZONE):%Y-%m-%d %H:%M}"
    )
    body = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines
    ]
    return "\n".join([title, *body]) + "\n"


def kpi_csv(report: KpiReport) -> str:
    """CSV with a header row; rates as fractions 0..1."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["period", *(key for key, _ in _COLUMNS)])
    for item in _rows(report):
        writer.writerow([report.period.label, *(_csv_cell(item[key]) for key, _ in _COLUMNS)])
    return buffer.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # A cell starting with = + - @ would run as a formula in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def kpi_xlsx(report: KpiReport) -> bytes:
    """An XLSX workbook with one sheet; rates formatted as percentages."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # noqa: S101 - a new workbook has a sheet
    sheet.title = f"KPI {report.period.label}"[:31]
    sheet.append(["period", *(title for _, title in _COLUMNS)])
    for item in _rows(report):
        values = [item[key] for key, _ in _COLUMNS]
        sheet.append([report.period.label, *(_xlsx_cell(v) for v in values)])
    for column_index, (key, _) in enumerate(_COLUMNS, start=2):
        if key.endswith("_rate"):
            for cell in sheet.iter_rows(min_row=2, min_col=column_index, max_col=column_index):
                cell[0].number_format = "0.00%"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
