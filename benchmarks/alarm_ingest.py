"""Alarm ingest: panic presses fed straight into the hub's event writer, with and without
the alarm engine's hook in the writer's transaction.

A real `Hub` (SQLite, then PostgreSQL) with one webhook sink configured (so repeats
queue outbox rows as they would in the field; the sink is disabled at run time so
delivery attempts do not share the CPU). `--presses` presses from `--buttons` registered
buttons are submitted to `hub.writer` as fast as it takes them; rate = presses /
(first submit → last committed-callback). The figures show what the engine costs per
event, apart from MQTT.
Usage: python -m benchmarks.alarm_ingest [--presses 3000] [--buttons 78] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import scratch_database, write_result
from camera_registry.events import DeviceEvent, Severity
from hub.alarms.outbox_storage import set_sink_disabled
from hub.config import load_settings
from hub.runtime import Hub
from tests.integration.hub_mqtt_support import register_device

_NOWHERE = "http://127.0.0.1:9/hook"
KEY = "whsec_" + base64.b64encode(bytes(32)).decode()


def presses(count: int, buttons: int) -> list[DeviceEvent]:
    """`count` presses spread over `buttons` buttons, as the MQTT adapter makes them."""
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    return [
        DeviceEvent(
            time=now,
            device_id=f"bench-btn-{i % buttons:03d}",
            kind="panic.press",
            severity=Severity.CRITICAL,
            source="mqtt",
            payload={"msg_id": f"{run}-{i}", "device_time": now.isoformat()},
            dedup_key=f"mqtt:bench-btn-{i % buttons:03d}:{run}-{i}",
        )
        for i in range(count)
    ]


async def feed(url: str | None, data_dir: Path, count: int, buttons: int, engine: bool) -> float:
    """Events per second through the writer of a fresh hub."""
    settings = load_settings(
        None,
        data_dir=data_dir,
        storage={"url": url},
        logging={"level": "WARNING"},
        alarms={
            "sinks": [{"name": "center", "type": "webhook", "url": _NOWHERE, "secrets": [KEY]}]
        },
    )
    async with Hub(settings) as hub:
        if not engine:
            hub._commit_hooks[:] = [hub.mqtt.in_transaction]
        for n in range(buttons):
            await register_device(hub.store, f"bench-btn-{n:03d}", "alarm_point")
        # Rows queue for the sink as in the field; nobody delivers them during the run.
        await set_sink_disabled(hub.store, "center", True, "benchmark", datetime.now(UTC))
        events = presses(count, buttons)
        done = asyncio.Event()
        committed = 0

        def on_committed() -> None:
            nonlocal committed
            committed += 1
            if committed == count:
                done.set()

        started = time.perf_counter()
        for event in events:
            await hub.writer.submit(event, on_committed)
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - started
    return count / elapsed


async def runs(count: int, buttons: int, rounds: int) -> dict[str, Any]:
    """Median events/s per backend, hook on and off."""
    out: dict[str, Any] = {}
    for backend in ("sqlite", "postgresql"):
        for engine in (True, False):
            rates = []
            for _ in range(rounds):
                with tempfile.TemporaryDirectory() as tmp:
                    if backend == "sqlite":
                        rates.append(await feed(None, Path(tmp), count, buttons, engine))
                        continue
                    with scratch_database() as url:
                        rates.append(await feed(url, Path(tmp), count, buttons, engine))
            name = backend + ("" if engine else "_without_alarm_engine")
            out[name] = {
                "events_per_s": round(statistics.median(rates)),
                "rounds": [round(rate) for rate in rates],
            }
    return out


def main() -> None:
    """Run, print and write benchmarks/results/alarm_ingest.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presses", type=int, default=3_000)
    parser.add_argument("--buttons", type=int, default=78)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    figures: dict[str, Any] = {"presses": args.presses, "buttons": args.buttons}
    figures.update(asyncio.run(runs(args.presses, args.buttons, args.rounds)))
    figures["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    print(json.dumps(figures, indent=2))
    if not args.no_write:
        path = write_result("alarm_ingest", figures)
        print(f"written to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
