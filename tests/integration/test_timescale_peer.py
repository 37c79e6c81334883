"""The TimescaleDB peer (PGlite) runs the SQL the event store relies on.

Each test states one thing the storage code may count on when it talks to this
peer: hypertables, binary COPY of events, compression and retention run by
hand, continuous aggregates, outbox claims, and a pool that reconnects.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from tests.peers.timescale import timescale_peer

pytestmark = pytest.mark.timescale

EVENT_COLUMNS = "time, event_id, device_id, kind, severity, source, dedup_key, payload"
EVENT_TYPES = ["timestamptz", "uuid", "text", "text", "text", "text", "text", "jsonb"]
COPY_EVENTS = f"COPY {{table}} ({EVENT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
START = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def conninfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One TimescaleDB peer for the module; tests take turns on its one connection."""
    with timescale_peer(tmp_path_factory.mktemp("timescale")) as info:
        with psycopg.connect(info, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        yield info


@pytest.fixture
def db(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection, closed after the test so the next one can connect."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        yield connection


def create_events_table(db: psycopg.Connection[Any], table: str) -> None:
    """The event table shape of the product's store, made a hypertable on time."""
    db.execute(
        f"""CREATE TABLE {table} (
            time timestamptz NOT NULL, event_id uuid, device_id text, kind text,
            severity text, source text, dedup_key text, payload jsonb)"""
    )
    db.execute("SELECT * FROM create_hypertable(%s, by_range('time', INTERVAL '1 day'))", [table])


def event_row(index: int, payload: object, *, minutes_apart: int = 1) -> tuple[object, ...]:
    """The index-th event from START, spread over five cameras in turn."""
    return (
        START + timedelta(minutes=index * minutes_apart),
        uuid.uuid4(),
        f"cam-{index % 5}",
        "onvif.motion",
        "minor",
        "onvif",
        f"motion-{index}",
        payload,
    )


def copy_events(db: psycopg.Connection[Any], table: str, rows: list[tuple[object, ...]]) -> int:
    """Binary COPY of event rows; returns the row count the server reports."""
    with db.cursor() as cursor:
        with cursor.copy(COPY_EVENTS.format(table=table)) as copy:
            copy.set_types(EVENT_TYPES)
            for row in rows:
                copy.write_row(row)
        return cursor.rowcount


def test_both_create_hypertable_forms_work(db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE ht_new (time timestamptz NOT NULL, value int)")
    db.execute("CREATE TABLE ht_classic (time timestamptz NOT NULL, value int)")

    created = db.execute("SELECT * FROM create_hypertable('ht_new', by_range('time'))").fetchone()
    classic = db.execute(
        "SELECT create_hypertable('ht_classic', 'time', chunk_time_interval => INTERVAL '1 day')"
    ).fetchone()
    again = db.execute(
        "SELECT * FROM create_hypertable('ht_new', by_range('time'), if_not_exists => true)"
    ).fetchone()

    assert created is not None and created[1] is True  # (hypertable_id, created)
    assert classic is not None and "ht_classic" in str(classic[0])
    assert again is not None and again[1] is False
    names = db.execute(
        "SELECT hypertable_schema, hypertable_name FROM timescaledb_information.hypertables"
    ).fetchall()
    assert {("public", "ht_new"), ("public", "ht_classic")} <= set(names)


def test_binary_copy_stores_events_and_jsonb_objects(db: psycopg.Connection[Any]) -> None:
    create_events_table(db, "ev_copy")
    rows = [event_row(i, Jsonb({"zone": i})) for i in range(3)]
    rows.append(event_row(3, {"zone": 3}))  # a plain dict is dumped as JSON too
    rows.append(event_row(4, '{"zone": 4}'))  # a str becomes a JSON *string*

    assert copy_events(db, "ev_copy", rows) == 5

    stored = db.execute(
        "SELECT dedup_key, jsonb_typeof(payload), payload FROM ev_copy ORDER BY time"
    ).fetchall()
    assert stored[:4] == [(f"motion-{i}", "object", {"zone": i}) for i in range(4)]
    assert stored[4] == ("motion-4", "string", '{"zone": 4}')


def test_binary_copy_of_a_large_batch_arrives_whole(db: psycopg.Connection[Any]) -> None:
    create_events_table(db, "ev_bulk")
    rows = [event_row(i, Jsonb({"detail": "x" * 100, "n": i})) for i in range(10_000)]

    assert copy_events(db, "ev_bulk", rows) == 10_000

    count, chunks = db.execute(
        "SELECT count(*), (SELECT count(*) FROM show_chunks('ev_bulk')) FROM ev_bulk"
    ).fetchone() or (0, 0)
    assert count == 10_000
    assert chunks == 7  # 10 000 minutes at one chunk per day


def test_compression_and_retention_run_by_hand(db: psycopg.Connection[Any]) -> None:
    create_events_table(db, "ev_policy")
    hourly = [event_row(i, Jsonb({"n": i}), minutes_apart=60) for i in range(72)]
    copy_events(db, "ev_policy", hourly)
    db.execute(
        "ALTER TABLE ev_policy SET (timescaledb.compress,"
        " timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'time')"
    )
    compress_job = db.execute(
        "SELECT add_compression_policy('ev_policy', compress_after => INTERVAL '7 days')"
    ).fetchone()
    assert compress_job is not None and compress_job[0] >= 1000

    db.execute("CALL run_job(%s)", [compress_job[0]])

    compressed = db.execute(
        "SELECT bool_and(is_compressed), count(*) FROM timescaledb_information.chunks"
        " WHERE hypertable_name = 'ev_policy'"
    ).fetchone()
    assert compressed == (True, 3)
    per_camera = db.execute(
        "SELECT device_id, count(*), max((payload->>'n')::int) FROM ev_policy"
        " WHERE time >= %s GROUP BY device_id ORDER BY device_id",
        [START + timedelta(days=1)],
    ).fetchall()
    assert per_camera == [
        ("cam-0", 10, 70), ("cam-1", 10, 71), ("cam-2", 9, 67), ("cam-3", 9, 68), ("cam-4", 10, 69)
    ]  # fmt: skip

    # Data older than the window: the first day's chunk is dropped, the rest stay.
    window = datetime.now(UTC) - (START + timedelta(days=1, hours=12))
    retention_job = db.execute(
        "SELECT add_retention_policy('ev_policy', drop_after => %s)", [window]
    ).fetchone()
    assert retention_job is not None
    db.execute("CALL run_job(%s)", [retention_job[0]])
    assert db.execute("SELECT count(*), min(time) FROM ev_policy").fetchone() == (
        48,
        START + timedelta(days=1),
    )

    for _ in range(2):  # removing is idempotent with if_exists
        db.execute("SELECT remove_retention_policy('ev_policy', if_exists => true)")
    jobs = db.execute(
        "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name = 'ev_policy'"
    ).fetchall()
    assert jobs == [("policy_compression",)]


def test_continuous_aggregate_counts_after_manual_refresh(db: psycopg.Connection[Any]) -> None:
    create_events_table(db, "ev_kpi")
    copy_events(db, "ev_kpi", [event_row(i, Jsonb({})) for i in range(150)])
    db.execute(
        """CREATE MATERIALIZED VIEW ev_kpi_hourly WITH (timescaledb.continuous) AS
           SELECT time_bucket(INTERVAL '1 hour', time) AS bucket, count(*) AS events
           FROM ev_kpi GROUP BY bucket WITH NO DATA"""
    )
    assert db.execute("SELECT count(*) FROM ev_kpi_hourly").fetchone() == (0,)

    db.execute(
        "CALL refresh_continuous_aggregate('ev_kpi_hourly', %s, %s)",
        [START, START + timedelta(days=1)],
    )

    buckets = db.execute("SELECT bucket, events FROM ev_kpi_hourly ORDER BY bucket").fetchall()
    assert buckets == [
        (START, 60),
        (START + timedelta(hours=1), 60),
        (START + timedelta(hours=2), 30),
    ]


def test_outbox_insert_returns_only_new_rows_and_claims_skip_locked(
    db: psycopg.Connection[Any],
) -> None:
    db.execute("CREATE TABLE outbox (dedup_key text PRIMARY KEY, due timestamptz NOT NULL)")
    insert = (
        "INSERT INTO outbox (dedup_key, due)"
        " SELECT * FROM unnest(%s::text[], %s::timestamptz[])"
        " ON CONFLICT DO NOTHING RETURNING dedup_key"
    )
    first = db.execute(insert, (["a", "b", "c"], [START] * 3)).fetchall()
    second = db.execute(insert, (["b", "d"], [START] * 2)).fetchall()
    assert first == [("a",), ("b",), ("c",)]
    assert second == [("d",)]

    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(hashtext('outbox-claim'))")
        claimed = db.execute(
            "SELECT dedup_key FROM outbox ORDER BY dedup_key LIMIT 2 FOR UPDATE SKIP LOCKED"
        ).fetchall()
        held = db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
    assert claimed == [("a",), ("b",)]
    assert held == (1,)
    # The transaction-scoped lock ends with the transaction.
    assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (
        0,
    )


def test_a_new_connection_does_not_inherit_the_last_one(conninfo: str) -> None:
    query = "SELECT %s::int + 1"
    leaver = psycopg.connect(conninfo)  # not autocommit: leaves a transaction open
    leaver.execute("CREATE TABLE never_committed (x int)")
    leaver.execute("SELECT pg_advisory_lock(7)")
    for value in range(10):  # past prepare_threshold: psycopg prepares it as _pg3_0
        leaver.execute(query, [value])
    leaver.close()

    with psycopg.connect(conninfo, autocommit=True) as fresh:
        assert fresh.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert fresh.execute("SELECT to_regclass('never_committed')").fetchone() == (None,)
        advisory = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        assert fresh.execute(advisory).fetchone() == (0,)
        assert fresh.execute("SHOW search_path").fetchone() == ("public",)
        # Same statement name again: no "prepared statement already exists".
        for value in range(10):
            assert fresh.execute(query, [value]).fetchone() == (value + 1,)


def test_default_sslmode_is_refused_politely(conninfo: str) -> None:
    settings = conninfo_to_dict(conninfo)
    del settings["sslmode"]  # libpq's default, prefer, asks for SSL first
    with psycopg.connect(make_conninfo("", **settings)) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_a_second_connection_waits_for_the_first(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as first:
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(conninfo, connect_timeout=2)
        assert time.monotonic() - started >= 1.5
        assert first.execute("SELECT 1").fetchone() == (1,)
    # The abandoned attempt gets the next turn; the server drops it when it
    # does not authenticate (5 s), then serves the next client.
    with psycopg.connect(conninfo, connect_timeout=15) as after:
        assert after.execute("SELECT 1").fetchone() == (1,)


async def test_async_pool_of_one_reconnects_and_copies(conninfo: str) -> None:
    pool = AsyncConnectionPool(
        conninfo, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )
    async with pool:
        async with pool.connection() as connection:
            await connection.execute(
                "CREATE TABLE pool_events (time timestamptz NOT NULL, payload jsonb)"
            )
            await connection.execute("SELECT create_hypertable('pool_events', 'time')")
            # The client drops its connection (a broken socket, a restart of the hub).
            await connection.close()

        async with pool.connection() as connection:
            cursor = connection.cursor()
            async with cursor.copy(
                "COPY pool_events (time, payload) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["timestamptz", "jsonb"])
                for minute in range(3):
                    await copy.write_row((START + timedelta(minutes=minute), Jsonb({"m": minute})))
            result = await connection.execute("SELECT count(*) FROM pool_events")
            assert await result.fetchone() == (3,)

        stats = pool.get_stats()
    assert stats["connections_num"] == 2  # the dropped connection was replaced
