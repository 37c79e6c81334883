"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def machine_load() -> dict[str, float]:
    """The machine's 1/5/15-minute load averages now (other work competes for the cores)."""
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2)}


def write_result(
    name: str, figures: dict[str, Any], *, load_at_start: dict[str, float] | None = None
) -> Path:
    """Write `benchmarks/results/<name>.json` with the figures and the machine's description.

    With `load_at_start` (from `machine_load()` when the run began), the file
    records the load at the start and at the end of the run beside the figures.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    machine: dict[str, Any] = {"python": platform.python_version(), "cpu_count": _cpus()}
    if load_at_start is not None:
        machine["load_at_start"] = load_at_start
        machine["load_at_end"] = machine_load()
    body = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "figures": figures,
    }
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


@contextmanager
def scratch_database(admin: str = PG_ADMIN) -> Iterator[str]:
    """A throw-away PostgreSQL database; yields its URL."""
    name = f"gw_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
