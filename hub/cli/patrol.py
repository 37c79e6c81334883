"""`gridwatch patrol`: probe every enabled camera now (or keep patrolling) with a progress bar."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from tqdm import tqdm

from hub.config import Settings
from hub.devices.patrol import PatrolProgress

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the `patrol` command."""
    parser = subparsers.add_parser(
        "patrol",
        help="probe every enabled camera's stream and judge its health",
        description=(
            "Probe every enabled camera (the longest unprobed first), store the samples "
            "and health transitions, and emit fault events. Run it while the hub is "
            "stopped, or use POST /api/patrol/run on a running hub."
        ),
    )
    parser.add_argument(
        "--once", action="store_true", help="one pass over every camera, then a summary"
    )
    parser.set_defaults(func=_cmd_patrol)


def _cmd_patrol(args: argparse.Namespace) -> int:
    from hub.cli import settings_from

    settings = settings_from(args)
    if args.once:
        return asyncio.run(_once(settings))
    return asyncio.run(_forever(settings))


def _without_schedule(settings: Settings) -> Settings:
    patrol = settings.patrol.model_copy(update={"enabled": False})
    return settings.model_copy(update={"patrol": patrol})


async def _once(settings: Settings) -> int:
    from hub.runtime import Hub

    bar: tqdm[Any] | None = None

    def show(progress: PatrolProgress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=progress.total, unit="cam", file=sys.stderr, desc="patrol")
        bar.update(progress.done - bar.n)

    started = time.perf_counter()
    async with Hub(_without_schedule(settings)) as hub:
        progress = await hub.patrol.run_once(trigger="cli", on_progress=show)
        states = await hub.patrol.repository.summary(None, None, "camera")
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - started
    _summary(progress, states, wall)
    return 0


def _summary(progress: PatrolProgress, states: dict[str, int], wall: float) -> None:
    online = progress.done - progress.failed - progress.degraded
    rate = progress.done / wall if wall > 0 else 0.0
    out = sys.stdout
    out.write(
        f"patrol: {progress.done} of {progress.total} cameras probed in {wall:.1f} s"
        f" ({rate:.1f}/s): {online} picture ok, {progress.degraded} picture fault or no"
        f" picture, {progress.failed} unreachable\n"
    )
    out.write(
        f"health now: {states.get('online', 0)} online, {states.get('degraded', 0)} degraded,"
        f" {states.get('offline', 0)} offline, {states.get('unknown', 0)} unknown;"
        f" {progress.transitions} transitions, {progress.events} events\n"
    )
    if progress.failed:
        out.write(
            "(an unreachable camera goes offline only after the configured number of "
            "failed probes in a row; until then it keeps its state)\n"
        )
    for device_id, observed, reason in progress.problems:
        out.write(f"  {device_id}  {observed}: {reason}\n")


async def _forever(settings: Settings) -> int:
    from hub.runtime import Hub

    forced = settings.patrol.model_copy(update={"enabled": True})
    async with Hub(settings.model_copy(update={"patrol": forced})):
        sys.stderr.write(f"patrolling every {settings.patrol.interval_s:g} s; Ctrl-C to stop\n")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    return 0
