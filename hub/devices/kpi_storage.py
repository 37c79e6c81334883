"""What the KPI report reads from the health tables: each device's state changes over a
period (with the state it started the period in) and its probe counts.

Both are restricted to the caller's devices by the device storage's id subquery
(`device_ids_sql`), so each stays one statement over the health tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from hub.devices import storage as devices_repo
from hub.devices.health_rows import ProbeCounts, StateChangeRow
from hub.storage.base import SqlStore, from_ts, to_db_time

__all__ = ["probe_counts", "state_changes"]

_EPOCH = datetime.min.replace(tzinfo=UTC)


async def state_changes(
    store: SqlStore,
    scope_paths: Sequence[str] | None,
    subtree_path: str | None,
    start: datetime,
    end: datetime,
) -> list[StateChangeRow]:
    """State changes in [start, end) plus each device's last change before `start`.

    In time order per device (ties broken by insertion order).
    """
    members, base = devices_repo.device_ids_sql(scope_paths, subtree_path)
    where = f"h.device_id IN ({members})"
    async with store.reading() as tx:
        inside = await tx.fetchall(
            "SELECT h.device_id, h.at, h.to_state, h.id FROM device_health_history h"  # noqa: S608
            f" WHERE {where} AND h.at >= %s AND h.at < %s",
            (*base, to_db_time(start), to_db_time(end)),
        )
        before = await tx.fetchall(
            "SELECT device_id, at, to_state, id FROM ("  # noqa: S608
            " SELECT h.device_id, h.at, h.to_state, h.id, ROW_NUMBER() OVER ("
            "  PARTITION BY h.device_id ORDER BY h.at DESC, h.id DESC) AS rn"
            " FROM device_health_history h"
            f" WHERE {where} AND h.at < %s) AS latest WHERE rn = 1",
            (*base, to_db_time(start)),
        )
    rows = sorted(
        ((str(r[0]), from_ts(r[1]) or _EPOCH, int(r[3]), str(r[2])) for r in [*before, *inside]),
        key=lambda item: (item[0], item[1], item[2]),
    )
    return [StateChangeRow(device_id, at, state) for device_id, at, _, state in rows]


async def probe_counts(
    store: SqlStore,
    scope_paths: Sequence[str] | None,
    subtree_path: str | None,
    start: datetime,
    end: datetime,
) -> dict[str, ProbeCounts]:
    """Per device, probes in [start, end) (reporting-day aligned on TimescaleDB)."""
    members, params = devices_repo.device_ids_sql(scope_paths, subtree_path)
    if store.backend == "timescaledb":
        # The continuous aggregate's buckets are reporting days, so a period
        # made of whole reporting days sums them exactly.
        source = (
            "SELECT a.device_id, SUM(a.probes), SUM(a.ok_probes), SUM(a.clean_probes)"  # noqa: S608
            f" FROM health_samples_daily a WHERE a.device_id IN ({members})"
            " AND a.day >= %s AND a.day < %s GROUP BY a.device_id"
        )
    else:
        source = (
            "SELECT s.device_id, COUNT(*),"  # noqa: S608
            " SUM(CASE WHEN s.ok THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN s.observed = 'online' THEN 1 ELSE 0 END)"
            f" FROM health_samples s WHERE s.device_id IN ({members})"
            " AND s.time >= %s AND s.time < %s GROUP BY s.device_id"
        )
    async with store.reading() as tx:
        rows = await tx.fetchall(source, (*params, to_db_time(start), to_db_time(end)))
    return {str(r[0]): ProbeCounts(int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows}
