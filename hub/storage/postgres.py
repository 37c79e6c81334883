"""The PostgreSQL backend (psycopg 3, async pool), with TimescaleDB when present.

At start-up the store looks for the `timescaledb` extension. Where it can be
created, `events` becomes a compressed hypertable with a retention policy;
otherwise the same schema runs on plain PostgreSQL and retention deletes rows.
Events are written with binary COPY, never one round trip per event. JSON goes
to the server serialized by orjson (about ten times cheaper than the standard
library per payload, which a 10k-event COPY pays 10k times); a value orjson
refuses (an integer beyond 64 bits) falls back to the standard library.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps
from psycopg_pool import AsyncConnectionPool

from camera_registry.events import DeviceEvent
from hub.storage.base import (
    Backend,
    Json,
    Row,
    SqlStore,
    Statement,
    StatementResult,
    StorageError,
    Tx,
    first_per_key,
)
from hub.storage.dialect import POSTGRESQL

__all__ = ["TOUCH_DEVICES", "PostgresStore", "dump_json", "touched_devices"]

log = logging.getLogger(__name__)

# One session-level lock id for "migrating GridWatch's schema" across hub nodes.
_MIGRATION_LOCK = 0x6772_6964  # "grid"
_COPY_EVENTS = (
    "COPY events (time, event_id, device_id, kind, severity, source, dedup_key, payload)"
    " FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ["timestamptz", "uuid", "text", "text", "text", "text", "text", "jsonb"]
#: Move the last-seen times of a batch's devices (the argument: `touched_devices`).
#: The devices and times travel as one JSON object (orjson, in C) that the server
#: takes apart, each time cast once: dumping two arrays of thousands of elements
#: costs the event loop several milliseconds per batch in Python. Only devices
#: whose times move are written: a replayed batch writes no row versions.
TOUCH_DEVICES = (
    "UPDATE device_state AS s SET"
    " last_event_at = GREATEST(s.last_event_at, v.at),"
    " last_seen_at = GREATEST(s.last_seen_at, v.at)"
    " FROM (SELECT key AS device_id, value::timestamptz AS at"
    " FROM jsonb_each_text(%s::jsonb)) AS v"
    " WHERE s.device_id = v.device_id"
    " AND (s.last_event_at IS NULL OR s.last_event_at < v.at"
    " OR s.last_seen_at IS NULL OR s.last_seen_at < v.at)"
)
_COPY_KEYS = "COPY event_keys (dedup_key, time, event_id) FROM STDIN (FORMAT BINARY)"
_COPY_KEY_TYPES = ["text", "timestamptz", "uuid"]
_CLAIM_KEYS = (
    "INSERT INTO event_keys (dedup_key, time, event_id)"
    " SELECT * FROM unnest(%b::text[], %b::timestamptz[], %b::uuid[])"
    " ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key"
)
#: Above this many events a batch goes by COPY (fastest in bulk); below it, claiming
#: the keys, storing the new events and touching their devices is one statement:
#: one round trip instead of three, which is most of a small batch's commit time.
_COPY_FROM = 200
_STORE_EVENTS = (
    "WITH e AS (SELECT * FROM unnest(%b::timestamptz[], %b::uuid[], %b::text[], %b::text[],"
    " %b::text[], %b::text[], %b::text[], %b::jsonb[], %b::boolean[])"
    " AS e(time, event_id, device_id, kind, severity, source, dedup_key, payload, claim)),"
    " claimed AS (INSERT INTO event_keys (dedup_key, time, event_id)"
    " SELECT dedup_key, time, event_id FROM e WHERE claim"
    " ON CONFLICT (dedup_key) DO NOTHING RETURNING event_id),"
    " stored AS (INSERT INTO events"
    " (time, event_id, device_id, kind, severity, source, dedup_key, payload)"
    " SELECT time, event_id, device_id, kind, severity, source, dedup_key, payload FROM e"
    " WHERE dedup_key IS NULL OR event_id IN (SELECT event_id FROM claimed)"
    " RETURNING event_id, device_id, time),"
    " touched AS (UPDATE device_state AS s SET"
    " last_event_at = GREATEST(s.last_event_at, v.at),"
    " last_seen_at = GREATEST(s.last_seen_at, v.at)"
    " FROM (SELECT device_id, max(time) AS at FROM stored GROUP BY device_id) AS v"
    " WHERE s.device_id = v.device_id AND (s.last_event_at IS NULL OR s.last_event_at < v.at"
    " OR s.last_seen_at IS NULL OR s.last_seen_at < v.at))"
    " SELECT event_id FROM stored"
)


def _adapt(value: Any) -> Any:
    if isinstance(value, Json):
        return Jsonb(value.value)
    return Jsonb(value) if isinstance(value, dict) else value


class _PgTx:
    """A psycopg connection seen through the backend-neutral `Tx` interface."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the affected row count."""
        cursor = await self.conn.execute(sql, [_adapt(p) for p in params])
        return cursor.rowcount

    async def run_all(self, statements: Sequence[Statement]) -> list[StatementResult]:
        """Run `statements` in order in one pipeline: one round trip for the group."""
        cursors = []
        async with self.conn.pipeline():
            for statement in statements:
                cursor = self.conn.cursor()
                await cursor.execute(statement.sql, [_adapt(p) for p in statement.params])
                cursors.append(cursor)
        results: list[StatementResult] = []
        for statement, cursor in zip(statements, cursors, strict=True):
            results.append(list(await cursor.fetchall()) if statement.rows else cursor.rowcount)
            await cursor.close()
        return results

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row (pipelined by psycopg)."""
        if not rows:
            return
        async with self.conn.cursor() as cursor:
            await cursor.executemany(sql, [[_adapt(p) for p in row] for row in rows])

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return all rows."""
        cursor = await self.conn.execute(sql, [_adapt(p) for p in params])
        return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a query and return its first row, if any."""
        cursor = await self.conn.execute(sql, [_adapt(p) for p in params])
        row: Row | None = await cursor.fetchone()
        return row


async def _copy_keys(conn: psycopg.AsyncConnection[Any], events: Sequence[DeviceEvent]) -> None:
    """Binary COPY of the events' dedup keys into `event_keys` (fails on a stored key)."""
    async with conn.cursor() as cursor, cursor.copy(_COPY_KEYS) as copy:
        copy.set_types(_COPY_KEY_TYPES)
        for e in events:
            await copy.write_row((e.dedup_key, e.time, e.event_id))


def touched_devices(latest: Mapping[str, datetime]) -> str:
    """The argument of `TOUCH_DEVICES`: each device's newest time, as JSON."""
    return orjson.dumps(latest, option=orjson.OPT_NAIVE_UTC).decode()


def dump_json(value: Any) -> bytes | str:
    """JSON text for the server: orjson, or the standard library for what orjson refuses."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_dumps(dump_json, context=conn)
    await conn.execute("SET TIME ZONE 'UTC'")
    await conn.commit()


class PostgresStore(SqlStore):
    """PostgreSQL or TimescaleDB through a psycopg connection pool."""

    dialect = POSTGRESQL

    def __init__(
        self,
        conninfo: str,
        *,
        pool_size: int = 8,
        retention_days: int = 180,
        compress_after_days: int = 7,
        use_timescale: bool | None = None,
    ) -> None:
        self._conninfo = conninfo
        self.retention_days = retention_days
        self.compress_after_days = compress_after_days
        self._use_timescale = use_timescale
        self._timescale = False
        # The last keyed batch met a stored key: claim by ON CONFLICT until one does not.
        self._keys_conflicted = False
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            configure=_configure,
            name="gridwatch",
            timeout=30,
        )

    @property
    def backend(self) -> Backend:
        """`timescaledb` when events are a hypertable, else `postgresql`."""
        return "timescaledb" if self._timescale else "postgresql"

    async def open(self) -> None:
        """Open the pool, detect TimescaleDB, apply migrations and policies."""
        try:
            await self._pool.open(wait=True, timeout=30)
        except Exception as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc
        async with self.transaction() as tx:
            assert isinstance(tx, _PgTx)  # noqa: S101 - only this backend's transactions
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self._timescale = await self._enable_timescale(tx)
            applied = await self._migrate(tx, timescale=self._timescale, now=datetime.now(UTC))
            if self._timescale:
                await self._apply_policies(tx)
        if applied:
            log.info("applied schema migrations %s", applied)
        if self._timescale:
            log.info(
                "storage: TimescaleDB — events are a hypertable, compressed after %d days, "
                "kept %d days",
                self.compress_after_days,
                self.retention_days,
            )
        else:
            log.info(
                "storage: plain PostgreSQL (no timescaledb extension) — retention by delete "
                "after %d days",
                self.retention_days,
            )

    async def _enable_timescale(self, tx: _PgTx) -> bool:
        if self._use_timescale is False:
            return False
        available = await tx.fetchone(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
        if available is None:
            if self._use_timescale:
                raise StorageError("timescaledb was requested but is not available")
            return False
        await tx.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        existing = await tx.fetchone("SELECT to_regclass('events') IS NOT NULL")
        if not (existing and existing[0]):
            return True
        # A database first created without TimescaleDB keeps its plain tables.
        hyper = await tx.fetchone(
            "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'events'"
        )
        return hyper is not None

    async def _apply_policies(self, tx: _PgTx) -> None:
        await tx.execute("SELECT remove_retention_policy('events', if_exists => true)")
        await tx.execute(
            "SELECT add_retention_policy('events', make_interval(days => %s))",
            (self.retention_days,),
        )
        await tx.execute("SELECT remove_compression_policy('events', if_exists => true)")
        await tx.execute(
            "SELECT add_compression_policy('events', make_interval(days => %s))",
            (self.compress_after_days,),
        )

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A pooled connection inside BEGIN … COMMIT."""
        async with self._pool.connection() as conn, conn.transaction():
            yield _PgTx(conn)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Tx]:
        """A pooled connection for queries."""
        async with self._pool.connection() as conn:
            yield _PgTx(conn)

    async def _store_events(
        self, tx: Tx, events: Sequence[DeviceEvent]
    ) -> tuple[list[DeviceEvent], int]:
        """Small batches in one statement (see `_STORE_EVENTS`), large ones by COPY."""
        if len(events) >= _COPY_FROM:
            return await super()._store_events(tx, events)
        firsts = {id(event) for event in first_per_key(events)}
        rows = await tx.fetchall(
            _STORE_EVENTS,
            (
                [e.time for e in events],
                [e.event_id for e in events],
                [e.device_id for e in events],
                [e.kind for e in events],
                [e.severity.value for e in events],
                [e.source for e in events],
                [e.dedup_key for e in events],
                [Jsonb(dict(e.payload)) for e in events],
                [id(e) in firsts for e in events],
            ),
        )
        ids = {row[0] for row in rows}
        stored = [event for event in events if event.event_id in ids]
        return stored, len(events) - len(stored)

    async def _insert_events(self, tx: Tx, events: Sequence[DeviceEvent]) -> None:
        assert isinstance(tx, _PgTx)  # noqa: S101 - only this backend's transactions
        async with tx.conn.cursor() as cursor, cursor.copy(_COPY_EVENTS) as copy:
            copy.set_types(_COPY_TYPES)
            for e in events:
                await copy.write_row(
                    (
                        e.time,
                        e.event_id,
                        e.device_id,
                        e.kind,
                        e.severity,  # a StrEnum: dumped as its text
                        e.source,
                        e.dedup_key,
                        dict(e.payload),
                    )
                )

    async def _touch_devices(self, tx: Tx, latest: Mapping[str, datetime]) -> None:
        # One statement for the whole batch instead of one UPDATE per device.
        await tx.execute(TOUCH_DEVICES, (touched_devices(latest),))

    async def _claim_keys(self, tx: Tx, events: Sequence[DeviceEvent]) -> set[str]:
        """Claim the batch's dedup keys; the keys that were new.

        A large batch first copies its keys in under a savepoint: a plain COPY into
        the keys' unique index costs about a third of `INSERT … ON CONFLICT`
        (no speculative insertion, no RETURNING). A key stored before (a QoS 1
        redelivery, a replay, another node's batch) fails the COPY; the savepoint
        is rolled back and the batch claims by ON CONFLICT, as do the batches
        after it until one comes through without a duplicate.
        """
        assert isinstance(tx, _PgTx)  # noqa: S101 - only this backend's transactions
        if len(events) >= _COPY_FROM and not self._keys_conflicted:
            try:
                async with tx.conn.transaction():
                    await _copy_keys(tx.conn, events)
            except psycopg.errors.UniqueViolation:
                log.debug("a stored dedup key in a batch of %d: ON CONFLICT", len(events))
                self._keys_conflicted = True
            else:
                return {e.dedup_key for e in events if e.dedup_key is not None}
        rows = await tx.fetchall(
            _CLAIM_KEYS,
            (
                [e.dedup_key for e in events],
                [e.time for e in events],
                [e.event_id for e in events],
            ),
        )
        fresh = {row[0] for row in rows}
        self._keys_conflicted = len(fresh) < len(events)
        return fresh

    async def apply_retention(self, now: datetime) -> int:
        """Run the TimescaleDB retention job, or delete old rows on plain PostgreSQL."""
        cutoff = now - timedelta(days=self.retention_days)
        async with self.transaction() as tx:
            if not self._timescale:
                return await self._delete_expired_events(tx, cutoff)
            dropped = await tx.fetchall("SELECT drop_chunks('events', older_than => %s)", (cutoff,))
            await tx.execute("DELETE FROM event_keys WHERE time < %s", (cutoff,))
            return len(dropped)

    async def run_timescale_jobs(self) -> list[str]:
        """Run the events table's TimescaleDB policy jobs now; return their names.

        TimescaleDB's background workers normally run them; this is for servers
        without workers and for operators who want the effect at once.
        `run_job` commits internally, so it cannot run inside a transaction.
        """
        if not self._timescale:
            return []
        async with self._pool.connection() as conn:
            await conn.set_autocommit(True)
            try:
                cursor = await conn.execute(
                    "SELECT job_id, proc_name FROM timescaledb_information.jobs"
                    " WHERE hypertable_name = 'events' ORDER BY job_id"
                )
                jobs = await cursor.fetchall()
                for job_id, _ in jobs:
                    await conn.execute("CALL run_job(%s)", (job_id,))
            finally:
                await conn.set_autocommit(False)
        return [str(name) for _, name in jobs]
