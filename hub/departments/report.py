"""The dispatch report: per department and per 苏木镇/街道, weekly or monthly.

For the tasks dispatched in the period (Asia/Shanghai calendar): tasks
received, report-in time p50/p90 (seconds, nearest rank, over the tasks that
reported in), on-time rate (tasks with no stage done or escalated after its
deadline, and not overdue now), sent-back rate (tasks sent back at least once).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.departments.storage import DepartmentRepository, ReportRow

__all__ = [
    "DispatchPeriod",
    "DispatchReport",
    "DispatchRow",
    "build_dispatch_report",
    "dispatch_csv",
    "dispatch_table",
    "dispatch_xlsx",
    "parse_dispatch_period",
    "percentile",
]

LOCAL = ZoneInfo("Asia/Shanghai")
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
_OPEN = ("dispatched", "reported_in", "on_site")


@dataclass(frozen=True, slots=True)
class DispatchPeriod:
    """A reporting week or month, as local-time bounds."""

    label: str
    kind: str
    start: datetime
    end: datetime


def parse_dispatch_period(*, month: str | None = None, week: str | None = None) -> DispatchPeriod:
    """`--month 2026-11` or `--week 2026-W47` (ISO week) in Asia/Shanghai time."""
    if (month is None) == (week is None):
        raise ValueError("give exactly one of a month (2026-11) or an ISO week (2026-W47)")
    if month is not None:
        found = _MONTH.fullmatch(month.strip())
        if not found or not 1 <= int(found[2]) <= 12:
            raise ValueError(f"month must look like 2026-11, got {month!r}")
        year, number = int(found[1]), int(found[2])
        start = datetime(year, number, 1, tzinfo=LOCAL)
        end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=LOCAL)
        return DispatchPeriod(f"{year:04d}-{number:02d}", "month", start, end)
    found = _WEEK.fullmatch((week or "").strip())
    if not found:
        raise ValueError(f"week must look like 2026-W47, got {week!r}")
    try:
        monday = date.fromisocalendar(int(found[1]), int(found[2]), 1)
    except ValueError as exc:
        raise ValueError(f"no ISO week {week!r}") from exc
    start = datetime(monday.year, monday.month, monday.day, tzinfo=LOCAL)
    return DispatchPeriod(found[0], "week", start, start + timedelta(days=7))


@dataclass(frozen=True, slots=True)
class DispatchRow:
    """The figures of one department or one town."""

    group: str
    code: str
    name: str
    received: int
    reported_in: int
    report_in_p50_s: float | None
    report_in_p90_s: float | None
    on_time: int
    sent_back: int

    @property
    def on_time_rate(self) -> float | None:
        """Share of received tasks done on time."""
        return None if not self.received else self.on_time / self.received

    @property
    def sent_back_rate(self) -> float | None:
        """Share of received tasks sent back at least once."""
        return None if not self.received else self.sent_back / self.received

    def as_dict(self) -> dict[str, Any]:
        """JSON form (rates rounded to 4 places)."""
        return {
            "group": self.group,
            "code": self.code,
            "name": self.name,
            "received": self.received,
            "reported_in": self.reported_in,
            "report_in_p50_s": self.report_in_p50_s,
            "report_in_p90_s": self.report_in_p90_s,
            "on_time_rate": _round(self.on_time_rate),
            "sent_back_rate": _round(self.sent_back_rate),
        }


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` 0..1) of `values`; None when empty."""
    if not values:
        return None
    if not 0.0 < share <= 1.0:
        raise ValueError("share must be in (0, 1]")
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """Rows per department, then per town."""

    period: DispatchPeriod
    departments: list[DispatchRow]
    towns: list[DispatchRow]

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "period": self.period.label,
            "kind": self.period.kind,
            "start": self.period.start.isoformat(),
            "end": self.period.end.isoformat(),
            "departments": [row.as_dict() for row in self.departments],
            "towns": [row.as_dict() for row in self.towns],
        }


def _on_time(row: ReportRow, now: datetime) -> bool:
    if row.missed:
        return False
    due = {
        "dispatched": row.report_in_due,
        "reported_in": row.on_site_due,
        "on_site": row.feedback_due,
    }.get(row.state)
    return due is None or now <= due


def _figures(
    group: str, code: str, name: str, rows: Sequence[ReportRow], now: datetime
) -> DispatchRow:
    times = [
        (r.reported_in_at - r.dispatched_at).total_seconds()
        for r in rows
        if r.reported_in_at is not None
    ]
    return DispatchRow(
        group=group,
        code=code,
        name=name,
        received=len(rows),
        reported_in=len(times),
        report_in_p50_s=percentile(times, 0.5),
        report_in_p90_s=percentile(times, 0.9),
        on_time=sum(1 for r in rows if _on_time(r, now)),
        sent_back=sum(1 for r in rows if r.sent_back > 0),
    )


def _town(path: str | None) -> str:
    """The town (second level) code of a jurisdiction path; '' when above a town."""
    parts = [p for p in (path or "").split("/") if p]
    return parts[1] if len(parts) > 1 else ""


def _grouped(
    rows: Sequence[ReportRow], key: Callable[[ReportRow], str]
) -> dict[str, list[ReportRow]]:
    groups: dict[str, list[ReportRow]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


async def build_dispatch_report(
    repo: DepartmentRepository, period: DispatchPeriod, *, now: datetime
) -> DispatchReport:
    """The report of `period` from the stored tasks."""
    rows = await repo.report_rows(period.start, period.end)
    async with repo.store.reading() as tx:
        departments = {d.id: d.name for d in await repo.departments(tx)}
        towns = await repo.jurisdiction_names(tx)
    by_department = _grouped(rows, lambda r: r.department_id)
    by_town = _grouped(rows, lambda r: _town(r.jurisdiction_path))
    return DispatchReport(
        period=period,
        departments=[
            _figures("department", code, departments.get(code, code), members, now)
            for code, members in sorted(by_department.items())
        ],
        towns=[
            _figures("town", code, towns.get(code, code or "-"), members, now)
            for code, members in sorted(by_town.items())
        ],
    )


_HEADERS = (
    "group",
    "code",
    "name",
    "received",
    "reported_in",
    "report_in_p50_s",
    "report_in_p90_s",
    "on_time_rate",
    "sent_back_rate",
)


def _rows(report: DispatchReport) -> list[dict[str, Any]]:
    return [row.as_dict() for row in (*report.departments, *report.towns)]


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}"


def dispatch_table(report: DispatchReport) -> str:
    """A plain-text table for the terminal."""
    lines = [f"Dispatch report {report.period.label} ({report.period.kind}, Asia/Shanghai)"]
    lines.append(
        f"{'group':<11}{'code':<18}{'name':<20}{'received':>9}{'p50 s':>8}{'p90 s':>8}"
        f"{'on time':>9}{'sent back':>11}"
    )
    for row in _rows(report):
        lines.append(
            f"{row['group']:<11}{row['code']:<18}{row['name']:<20}{row['received']:>9}"
            f"{_seconds(row['report_in_p50_s']):>8}{_seconds(row['report_in_p90_s']):>8}"
            f"{_percent(row['on_time_rate']):>9}{_percent(row['sent_back_rate']):>11}"
        )
    return "\n".join(lines) + "\n"


def dispatch_csv(report: DispatchReport) -> str:
    """CSV with a header row; rates as fractions 0..1."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["period", *_HEADERS])
    for row in _rows(report):
        writer.writerow(
            [report.period.label, *("" if row[h] is None else row[h] for h in _HEADERS)]
        )
    return buffer.getvalue()


def dispatch_xlsx(report: DispatchReport) -> bytes:
    """An XLSX workbook with one sheet of the same columns as the CSV."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = f"dispatch {report.period.label}"[:31]
    sheet.append(["period", *_HEADERS])
    for row in _rows(report):
        sheet.append([report.period.label, *(row[h] for h in _HEADERS)])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
