"""`gridwatch demo` (a simulated district, no servers needed) and `gridwatch drill`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

__all__ = ["register"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from hub.cli import settings_from
    from hub.demo.run import DemoOptions, run_demo
    from hub.logging import configure_logging

    base = settings_from(args)
    # The terminal is for the banner and the scenario's lines; the hub's log goes to a file.
    configure_logging(
        "INFO" if args.verbose else "WARNING",
        json_lines=base.logging.json_lines,
        http_client_level=base.logging.http_client_level,
        log_file=args.data_dir / "gridwatch.log",
        file_level=base.logging.level,
    )
    options = DemoOptions(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        seed=args.seed,
        full=args.full,
        broker=args.broker,
        first_press_s=args.first_press,
        press_every_s=(args.press_every[0], args.press_every[1]),
        patrol_interval_s=args.patrol_interval,
        scenario=not args.quiet_district,
    )
    return asyncio.run(run_demo(options, base))


def _render(report: dict[str, Any]) -> str:
    """The drill report as a table."""
    verdict = "PASS" if report["passed"] else "FAIL"
    lines = [
        f"drill {report['started_at']}: {report['presses']} presses, SLO {report['slo_s']:g} s"
        f" — {verdict}",
        f"{'stage':<30}{'n':>4}{'miss':>6}{'p50 s':>9}{'p99 s':>9}{'max s':>9}  result",
    ]

    def fmt(value: float | None) -> str:
        return f"{value:9.3f}" if value is not None else f"{'-':>9}"

    for stage in report["stages"]:
        lines.append(
            f"{'publish → ' + stage['stage']:<30}{stage['count']:>4}{stage['missing']:>6}"
            f"{fmt(stage['p50_s'])}{fmt(stage['p99_s'])}{fmt(stage['max_s'])}  "
            f"{'ok' if stage['passed'] else 'FAIL'}"
        )
    if report["sinks_not_for_drills"]:
        skipped = ", ".join(report["sinks_not_for_drills"])
        lines.append(f"sinks not configured for drills (sent nothing): {skipped}")
    return "\n".join(lines)


def _cmd_drill(args: argparse.Namespace) -> int:
    token = args.api_key or os.environ.get("GRIDWATCH_API_KEY")
    if not token:
        print("drill: give --api-key or GRIDWATCH_API_KEY (an admin API key)", file=sys.stderr)
        return 2
    body = {
        "presses": args.presses,
        "devices": args.device or [],
        "slo_s": args.slo,
        "interval_s": args.interval,
    }
    try:
        response = httpx.post(
            args.url.rstrip("/") + "/api/drills",
            json=body,
            headers={"authorization": f"Bearer {token}"},
            timeout=60 + args.presses * (args.interval + 12),
        )
    except httpx.HTTPError as exc:
        print(f"drill: cannot reach the hub at {args.url}: {exc}", file=sys.stderr)
        return 3
    if response.status_code != 200:
        print(f"drill: the hub refused ({response.status_code}): {response.text}", file=sys.stderr)
        return 3
    report = response.json()
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else _render(report))
    return 0 if report["passed"] else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` and `drill` commands."""
    demo = subparsers.add_parser(
        "demo",
        help="run the hub with a simulated district (no servers needed)",
        description=(
            "Start GridWatch on SQLite with a simulated 包头市九原区 (150207, its 8 "
            "苏木镇/街道): cameras with synthetic video, 78 school panic buttons in 35 "
            "schools, 18 broadcast units, occasional presses and faults. Prints the console "
            "URL, the demo logins and the scenario's events; the hub's log goes to "
            "DATA_DIR/gridwatch.log."
        ),
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("demo-data"),
        help="where the demo keeps its SQLite database (default: ./demo-data)",
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="address of the console (default: %(default)s)"
    )
    demo.add_argument("--port", type=int, default=8080, help="console port (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=2024, help="district and scenario seed")
    demo.add_argument(
        "--full",
        action="store_true",
        help="the real counts: 6,314 cameras (4,437 雪亮工程 + 1,877 云眼), 624 grids, "
        "1,758 micro-grids (default: 300 cameras, 48 grids, starts in seconds)",
    )
    demo.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "none"),
        default="auto",
        help="auto: start mosquitto when installed; none: inject device messages via the writer",
    )
    demo.add_argument(
        "--first-press", type=float, default=5.0, help="seconds until the first panic press"
    )
    demo.add_argument(
        "--press-every",
        type=float,
        nargs=2,
        default=(30.0, 60.0),
        metavar=("MIN", "MAX"),
        help="seconds between presses (random within MIN..MAX)",
    )
    demo.add_argument(
        "--patrol-interval", type=float, default=60.0, help="seconds between camera probes"
    )
    demo.add_argument(
        "--quiet-district", action="store_true", help="no simulated presses or faults"
    )
    demo.add_argument(
        "--verbose", action="store_true", help="also show the hub's INFO log lines here"
    )
    demo.set_defaults(func=_cmd_demo)

    drill = subparsers.add_parser(
        "drill",
        help="run a latency drill: drill presses over MQTT, timed to the console and sinks",
        description=(
            "Ask a running hub (POST /api/drills) to publish drill presses for registered "
            "panic buttons over MQTT and report publish → committed → alarm stream → each "
            "drill sink latency (p50/p99/max) against the SLO. Exit 0 pass, 1 fail."
        ),
    )
    drill.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the hub (default: %(default)s)"
    )
    drill.add_argument("--api-key", default=None, help="admin API key (or GRIDWATCH_API_KEY)")
    drill.add_argument("--presses", type=int, default=10, help="presses (default: %(default)s)")
    drill.add_argument(
        "--device", action="append", help="a panic button to press (repeatable; default: all)"
    )
    drill.add_argument("--slo", type=float, default=2.0, help="seconds (default: %(default)s)")
    drill.add_argument("--interval", type=float, default=0.5, help="seconds between presses")
    drill.add_argument("--json", action="store_true", help="print the full report as JSON")
    drill.set_defaults(func=_cmd_drill)
