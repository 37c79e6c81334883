"""What the patrol keeps between passes: its runs and their progress, the cameras'
learned picture baselines, and when each camera's newest evidence snapshot was taken.

A pass's probe results themselves are written by `HealthRepository.record` in one
transaction with the transitions they cause.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hub.devices.health_rows import BaselineRow, PatrolRunRow
from hub.storage.base import SqlStore, from_ts, to_db_time

__all__ = ["baselines", "last_evidence_times", "recent_runs", "start_run", "update_run"]

_EPOCH = datetime.min.replace(tzinfo=UTC)


async def baselines(store: SqlStore) -> dict[str, BaselineRow]:
    """Every camera's learned baseline."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT device_id, sharpness, samples, reference_png FROM vqd_baselines"
        )
    return {
        str(r[0]): BaselineRow(
            str(r[0]), r[1], int(r[2]), bytes(r[3]) if r[3] is not None else None
        )
        for r in rows
    }


async def last_evidence_times(store: SqlStore) -> dict[str, datetime]:
    """Per device, when its newest evidence snapshot was taken."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT device_id, MAX(taken_at) FROM evidence_media GROUP BY device_id"
        )
    return {str(r[0]): from_ts(r[1]) or _EPOCH for r in rows}


async def start_run(
    store: SqlStore, at: datetime, total: int, trigger: str, node: str | None
) -> int:
    """Record the start of a patrol pass; returns its id."""
    async with store.transaction() as tx:
        row = await tx.fetchone(
            "INSERT INTO patrol_runs (started_at, total, trigger, node)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (to_db_time(at), total, trigger, node),
        )
    if row is None:  # pragma: no cover - RETURNING always answers
        raise RuntimeError("patrol run id not returned")
    return int(row[0])


async def update_run(
    store: SqlStore,
    run_id: int,
    *,
    done: int,
    failed: int,
    degraded: int,
    finished_at: datetime | None,
) -> None:
    """Record a patrol pass's progress (and its end, when `finished_at` is given)."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE patrol_runs SET done = %s, failed = %s, degraded = %s,"
            " finished_at = %s WHERE id = %s",
            (done, failed, degraded, to_db_time(finished_at) if finished_at else None, run_id),
        )


async def recent_runs(store: SqlStore, limit: int = 5) -> list[PatrolRunRow]:
    """The newest patrol passes."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT id, started_at, finished_at, total, done, failed, degraded, trigger"
            " FROM patrol_runs ORDER BY started_at DESC, id DESC LIMIT %s",
            (limit,),
        )
    return [
        PatrolRunRow(
            id=int(r[0]),
            started_at=from_ts(r[1]) or _EPOCH,
            finished_at=from_ts(r[2]),
            total=int(r[3]),
            done=int(r[4]),
            failed=int(r[5]),
            degraded=int(r[6]),
            trigger=str(r[7]),
        )
        for r in rows
    ]
