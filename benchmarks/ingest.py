"""Ingest throughput: the event writer against the raw limit of the same storage, same run.

PostgreSQL: writer (binary COPY + dedup keys + device state, one transaction per
batch) vs bare psycopg binary COPY of the same rows in 10k-row batches.
SQLite: writer vs bare executemany of the same rows in one transaction per batch.
Usage: python -m benchmarks.ingest [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import scratch_database, write_result
from camera_registry.events import DeviceEvent, Severity
from hub.storage import PostgresStore, SQLiteStore, SqlStore
from hub.writer import EventWriter

BATCH = 10_000


def make_events(n: int, *, keyed: bool) -> list[DeviceEvent]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        DeviceEvent(
            time=start + timedelta(milliseconds=i),
            device_id=f"cam-{i % 6300:05d}",
            kind="onvif.motion" if i % 5 else "panic.press",
            severity=Severity.INFO,
            source="bench",
            payload={"state": True, "rule": "MyMotionDetectorRule", "n": i},
            dedup_key=f"bench-{i}" if keyed else None,
        )
        for i in range(n)
    ]


def _rows(events: list[DeviceEvent]) -> list[tuple[Any, ...]]:
    return [
        (
            e.time,
            e.event_id,
            e.device_id,
            e.kind,
            e.severity.value,
            e.source,
            e.dedup_key,
            dict(e.payload),
        )
        for e in events
    ]


def raw_copy(url: str, events: list[DeviceEvent], *, claim_keys: bool = False) -> float:
    """Bare psycopg binary COPY into a copy of the events table; returns rows/s.

    With `claim_keys`, each batch first inserts its dedup keys into a keyed
    table with the same statement the store uses: the raw cost of deduplication.
    """
    rows = _rows(events)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
        conn.execute("CREATE TABLE raw_keys (LIKE event_keys INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            if claim_keys:
                batch = events[i : i + BATCH]
                conn.execute(
                    "INSERT INTO raw_keys (dedup_key, time, event_id)"
                    " SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::uuid[])"
                    " ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key",
                    (
                        [e.dedup_key for e in batch],
                        [e.time for e in batch],
                        [e.event_id for e in batch],
                    ),
                ).fetchall()
            with conn.cursor().copy(
                "COPY raw_events (time, event_id, device_id, kind, severity, source, dedup_key,"
                " payload) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(
                    ["timestamptz", "uuid", "text", "text", "text", "text", "text", "jsonb"]
                )
                for row in rows[i : i + BATCH]:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE raw_events")
        conn.execute("DROP TABLE raw_keys")
        conn.commit()
    return len(rows) / elapsed


def raw_sqlite(path: Path, events: list[DeviceEvent]) -> float:
    """Bare sqlite3 executemany of the same events, one transaction per batch; rows/s.

    Converting the events to SQLite values is part of the raw cost: a bare
    program storing these events would have to do it too.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE raw_events AS SELECT * FROM events WHERE 0")
    conn.execute("CREATE INDEX raw_t ON raw_events (time)")
    conn.execute("CREATE INDEX raw_dt ON raw_events (device_id, time)")
    started = time.perf_counter()
    for i in range(0, len(events), BATCH):
        rows = [
            (
                e.time.isoformat(),
                str(e.event_id),
                e.device_id,
                e.kind,
                e.severity.value,
                e.source,
                e.dedup_key,
                json.dumps(dict(e.payload)),
            )
            for e in events[i : i + BATCH]
        ]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO raw_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(events) / elapsed


async def through_writer(store: SqlStore, events: list[DeviceEvent]) -> float:
    """Events/s from first submit until the last committed callback."""
    done = asyncio.Event()
    remaining = len(events)

    def committed() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            done.set()

    writer = EventWriter(store, queue_size=50_000, batch_max=BATCH, batch_delay=0.005)
    await writer.start()
    started = time.perf_counter()
    for event in events:
        await writer.submit(event, committed)
    await done.wait()
    elapsed = time.perf_counter() - started
    await writer.stop()
    return len(events) / elapsed


async def bench_postgres(n: int, keyed: bool) -> dict[str, float]:
    with scratch_database() as url:
        async with PostgresStore(url, pool_size=2, use_timescale=False) as store:
            raw = raw_copy(url, make_events(n, keyed=keyed))
            raw_keyed = raw_copy(url, make_events(n, keyed=keyed), claim_keys=keyed)
            writer = await through_writer(store, make_events(n, keyed=keyed))
    figures = {
        "raw_copy_rows_per_s": round(raw),
        "writer_events_per_s": round(writer),
        "ratio": round(writer / raw, 3),
    }
    if keyed:
        # The same work done bare: the key claim and the COPY of each batch.
        figures["raw_copy_and_key_claim_rows_per_s"] = round(raw_keyed)
        figures["ratio_to_copy_and_key_claim"] = round(writer / raw_keyed, 3)
    return figures


async def bench_sqlite(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite3"
        async with SQLiteStore(path) as store:
            raw = raw_sqlite(path, make_events(n, keyed=True))
            writer = await through_writer(store, make_events(n, keyed=True))
    return {
        "raw_executemany_rows_per_s": round(raw),
        "writer_events_per_s": round(writer),
        "ratio": round(writer / raw, 3),
    }


async def main(n: int) -> None:
    figures: dict[str, Any] = {"events": n, "batch": BATCH}
    figures["postgresql_no_dedup_key"] = await bench_postgres(n, keyed=False)
    figures["postgresql_with_dedup_key"] = await bench_postgres(n, keyed=True)
    figures["sqlite_with_dedup_key"] = await bench_sqlite(n)
    figures["goal"] = "writer >= 70% of raw binary COPY"
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(f"wrote {write_result('ingest', figures)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.events))
