"""TimescaleDB specifics: hypertable, compression and retention jobs, data still readable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.storage import PostgresStore
from tests.helpers import make_event

pytestmark = [pytest.mark.timescale]


async def test_events_become_a_compressed_hypertable_with_policies(timescale_dsn: str) -> None:
    store = PostgresStore(timescale_dsn, pool_size=1, retention_days=30, compress_after_days=2)
    async with store:
        assert store.backend == "timescaledb"
        now = datetime.now(UTC)
        await store.ingest(
            [make_event(i, at=now - timedelta(days=i), key=f"k{i}") for i in range(10)]
        )
        async with store.reading() as tx:
            hyper = await tx.fetchone(
                "SELECT compression_enabled FROM timescaledb_information.hypertables"
                " WHERE hypertable_name = 'events'"
            )
            assert hyper == (True,)
            jobs = await tx.fetchall(
                "SELECT job_id, proc_name FROM timescaledb_information.jobs"
                " WHERE hypertable_name = 'events' ORDER BY proc_name"
            )
        assert [name for _, name in jobs] == ["policy_compression", "policy_retention"]
        # No background workers here: run the policies' jobs by hand, as an operator could.
        ran = await store.run_timescale_jobs()
        assert sorted(ran) == ["policy_compression", "policy_retention"]
        async with store.reading() as tx:
            compressed = await tx.fetchone(
                "SELECT COUNT(*) FROM timescaledb_information.chunks"
                " WHERE hypertable_name = 'events' AND is_compressed"
            )
        assert compressed is not None and compressed[0] > 0
        # Compressed rows are still read through the normal query path.
        assert await store.count_events() == 10
        assert {e.dedup_key for e in await store.events(limit=20)} == {f"k{i}" for i in range(10)}


async def test_reopening_keeps_the_hypertable(timescale_dsn: str) -> None:
    async with PostgresStore(timescale_dsn, pool_size=1) as store:
        await store.ingest([make_event(1)])
    async with PostgresStore(timescale_dsn, pool_size=1) as store:
        assert store.backend == "timescaledb"
        assert await store.count_events() == 1
