"""What the KPI report reads from the health tables: each device's state changes over a
period (with the state it started the period in) and its probe counts.

Both are restricted to the caller's devices by the device storage's join
(`devices_join`), so each stays one statement over the health tables.
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
    members = devices_repo.devices_join("h.device_id", scope_paths, subtree_path)
    async with store.reading() as tx:
        inside = await tx.fetchall(
            "SELECT h.device_id, h.at, h.to_state, h.id FROM device_health_history h"  # noqa: S608
            f"{members.join} WHERE {members.where} AND h.at >= %s AND h.at < %s",
            (*members.params, to_db_time(start), to_db_time(end)),
        )
        before = await tx.fetchall(
            "SELECT device_id, at, to_state, id FROM ("  # noqa: S608
            " SELECT h.device_id, h.at, h.to_state, h.id, ROW_NUMBER() OVER ("
            "  PARTITION BY h.device_id ORDER BY h.at DESC, h.id DESC) AS rn"
            f" FROM device_health_history h{members.join}"
            f" WHERE {members.where} AND h.at < %s) AS latest WHERE rn = 1",
            (*members.params, to_db_time(start)),
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
    if store.backend == "timescaledb":
        # The continuous aggregate's buckets are reporting days, so a period
        # made of whole reporting days sums them exactly.
        members = devices_repo.devices_join("a.device_id", scope_paths, subtree_path)
        source = (
            "SELECT a.device_id, SUM(a.probes), SUM(a.ok_probes), SUM(a.clean_probes)"  # noqa: S608
            f" FROM health_samples_daily a{members.join}"
            f" WHERE {members.where} AND a.day >= %s AND a.day < %s GROUP BY a.device_id"
        )
    else:
        members = devices_repo.devices_join("s.device_id", scope_paths, subtree_path)
        source = (
            "SELECT s.device_id, COUNT(*),"  # noqa: S608
            " SUM(CASE WHEN s.ok THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN s.observed = 'online' THEN 1 ELSE 0 END)"
            f" FROM health_samples s{members.join}"
            f" WHERE {members.where} AND s.time >= %s AND s.time < %s GROUP BY s.device_id"
        )
    async with store.reading() as tx:
        rows = await tx.fetchall(source, (*members.params, to_db_time(start), to_db_time(end)))
    return {str(r[0]): ProbeCounts(int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows}
