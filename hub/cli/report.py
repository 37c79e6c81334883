"""`gridwatch report kpi` (online and intact rates) and `gridwatch report dispatch`
(department tasks)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.devices.health_storage import HealthRepository
from hub.devices.kpi_report import (
    ScopeError,
    build_kpi_report,
    kpi_csv,
    kpi_table,
    kpi_xlsx,
    parse_period,
)
from hub.storage import open_store

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the `report` command group."""
    report = subparsers.add_parser("report", help="KPI and dispatch reports")
    sub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    kpi = sub.add_parser(
        "kpi",
        help="online rate and intact rate per jurisdiction (time-weighted, Asia/Shanghai days)",
    )
    period = kpi.add_mutually_exclusive_group(required=True)
    period.add_argument("--month", help="reporting month, e.g. 2026-11")
    period.add_argument("--day", help="reporting day, e.g. 2026-11-20")
    kpi.add_argument(
        "--jurisdiction", default=None, help="jurisdiction code (default: the whole tree)"
    )
    kpi.add_argument("--format", choices=("table", "csv", "xlsx"), default="table")
    kpi.add_argument("--output", type=Path, default=None, help="write to this file")
    kpi.set_defaults(func=_cmd_kpi)
    dispatch = sub.add_parser(
        "dispatch",
        help="department tasks per department and per town: received, report-in p50/p90, "
        "on-time and sent-back rates (Asia/Shanghai weeks and months)",
    )
    when = dispatch.add_mutually_exclusive_group(required=True)
    when.add_argument("--month", help="reporting month, e.g. 2026-11")
    when.add_argument("--week", help="reporting ISO week, e.g. 2026-W47")
    dispatch.add_argument("--format", choices=("table", "csv", "xlsx"), default="table")
    dispatch.add_argument("--output", type=Path, default=None, help="write to this file")
    dispatch.set_defaults(func=_cmd_dispatch)


def _cmd_kpi(args: argparse.Namespace) -> int:
    from hub.cli import settings_from

    try:
        period = parse_period(month=args.month, day=args.day)
    except ValueError as exc:
        sys.stderr.write(f"report kpi: {exc}\n")
        return 2
    if args.format == "xlsx" and args.output is None:
        sys.stderr.write("report kpi: --format xlsx needs --output FILE\n")
        return 2
    settings = settings_from(args)

    async def build() -> Any:
        store = open_store(
            settings.storage_url(),
            pool_size=1,
            retention_days=settings.storage.retention_days,
            compress_after_days=settings.storage.compress_after_days,
        )
        async with store:
            return await build_kpi_report(
                HealthRepository(store),
                period=period,
                until=datetime.now(UTC),
                code=args.jurisdiction,
                scope_paths=None,
            )

    try:
        report = asyncio.run(build())
    except ScopeError:
        sys.stderr.write(f"report kpi: no jurisdiction {args.jurisdiction!r}\n")
        return 1
    if args.format == "xlsx":
        args.output.write_bytes(kpi_xlsx(report))
        return 0
    text = kpi_table(report) if args.format == "table" else kpi_csv(report)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_dispatch(args: argparse.Namespace) -> int:
    from hub.cli import settings_from
    from hub.departments.report import (
        build_dispatch_report,
        dispatch_csv,
        dispatch_table,
        dispatch_xlsx,
        parse_dispatch_period,
    )
    from hub.departments.storage import DepartmentRepository

    try:
        period = parse_dispatch_period(month=args.month, week=args.week)
    except ValueError as exc:
        sys.stderr.write(f"report dispatch: {exc}\n")
        return 2
    if args.format == "xlsx" and args.output is None:
        sys.stderr.write("report dispatch: --format xlsx needs --output FILE\n")
        return 2
    settings = settings_from(args)

    async def build() -> Any:
        store = open_store(
            settings.storage_url(),
            pool_size=1,
            retention_days=settings.storage.retention_days,
            compress_after_days=settings.storage.compress_after_days,
        )
        async with store:
            return await build_dispatch_report(
                DepartmentRepository(store), period, now=datetime.now(UTC)
            )

    report = asyncio.run(build())
    if args.format == "xlsx":
        args.output.write_bytes(dispatch_xlsx(report))
        return 0
    text = dispatch_table(report) if args.format == "table" else dispatch_csv(report)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
