"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
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


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Write `benchmarks/results/<name>.json` with the figures and the machine's description."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu_count": _cpus()},
        "figures": figures,
    }
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _cpus() -> int:
    import os

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
