"""`gridwatch demo`: the hub with a simulated district, on SQLite, with no servers needed."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

__all__ = ["register"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from hub.cli import settings_from
    from hub.demo import DemoOptions, run_demo

    base = settings_from(args)
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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo` command."""
    demo = subparsers.add_parser(
        "demo",
        help="run the hub with a simulated district (no servers needed)",
        description=(
            "Start GridWatch on SQLite with a simulated district modelled on Hohhot 新城区: "
            "cameras with synthetic video, 78 school panic buttons, 18 broadcast units, "
            "occasional presses and faults. Prints the console URL and demo logins."
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
        "--full", action="store_true", help="the full tree: 624 grids, 1,758 micro-grids"
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
    demo.set_defaults(func=_cmd_demo)
