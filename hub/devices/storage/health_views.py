# SQL here is assembled only from this module's constants, the caller's scope and
# subtree conditions and "%s" placeholders; every value is a bound parameter.
# ruff: noqa: S608
"""Device projections for health and KPIs: a device's current health, counts by health
state, the devices of a subtree, and the set of device ids that health queries filter by.

The health tables (samples, history, evidence, aggregates) belong to the health storage;
it restricts them to a caller's devices with `devices_join`, a join to `devices` and a
condition on it that it places in its own statements, so a KPI read stays one statement
(and plans as a join on both backends).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.storage.base import SqlStore, from_json, from_ts, scope_condition

__all__ = [
    "DeviceHealthRow",
    "DeviceJoin",
    "device_health",
    "device_paths",
    "devices_join",
    "health_counts",
]


@dataclass(frozen=True, slots=True)
class DeviceHealthRow:
    """A device's current health as the registry list shows it."""

    device_id: str
    name: str
    kind: str
    jurisdiction_path: str | None
    health: str
    since: datetime | None
    reason: str | None
    last_probe_at: datetime | None
    reason_code: str | None = None
    reason_params: dict[str, Any] = field(default_factory=dict)


def _subtree(path: str | None, column: str) -> tuple[str, list[str]]:
    if path is None:
        return "1 = 1", []
    return f"{column} LIKE %s", [path + "%"]


def _within(
    scope_paths: Sequence[str] | None, subtree_path: str | None, column: str
) -> tuple[str, list[str]]:
    scope, params = scope_condition(scope_paths, column)
    subtree, subtree_params = _subtree(subtree_path, column)
    return f"{scope} AND {subtree}", [*params, *subtree_params]


@dataclass(frozen=True, slots=True)
class DeviceJoin:
    """What a health query adds to keep only the caller's devices: a join of its
    device column to `devices` (as `d`), the condition on `d`, and its parameters."""

    join: str
    where: str
    params: list[Any]


_COLUMN = re.compile(r"[a-z_]+\.[a-z_]+")


def devices_join(
    column: str,
    scope_paths: Sequence[str] | None,
    subtree_path: str | None = None,
    *,
    kind: str | None = None,
) -> DeviceJoin:
    """Join `column` (`alias.device_id` of the caller's table) to the devices within the
    scope, the subtree and of `kind` (each optional); devices that no longer exist drop
    their rows."""
    if not _COLUMN.fullmatch(column):
        raise ValueError(f"not a qualified column name: {column!r}")
    where, params = _within(scope_paths, subtree_path, "d.jurisdiction_path")
    if kind is not None:
        where += " AND d.kind = %s"
        params = [*params, kind]
    return DeviceJoin(f" JOIN devices d ON d.id = {column}", where, params)


def _params(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


async def device_health(
    store: SqlStore, device_id: str, scope_paths: Sequence[str] | None
) -> DeviceHealthRow | None:
    """A device's current health, or None when it does not exist or is out of scope."""
    scope, params = scope_condition(scope_paths, "d.jurisdiction_path")
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT d.id, d.name, d.kind, d.jurisdiction_path, s.health, s.health_since,"
            " s.health_reason, s.last_probe_at, s.health_reason_code,"
            " s.health_reason_params FROM devices d"
            " LEFT JOIN device_state s ON s.device_id = d.id"
            f" WHERE d.id = %s AND {scope}",
            (device_id, *params),
        )
    if row is None:
        return None
    return DeviceHealthRow(
        device_id=str(row[0]),
        name=str(row[1]),
        kind=str(row[2]),
        jurisdiction_path=row[3],
        health=str(row[4] or "unknown"),
        since=from_ts(row[5]),
        reason=row[6],
        last_probe_at=from_ts(row[7]),
        reason_code=row[8],
        reason_params=_params(from_json(row[9])) if row[8] else {},
    )


async def health_counts(
    store: SqlStore,
    scope_paths: Sequence[str] | None,
    subtree_path: str | None,
    kind: str | None,
) -> dict[str, int]:
    """Device counts by health state within the scope (and subtree, and kind); a device
    without a state row counts as `unknown`."""
    where, params = _within(scope_paths, subtree_path, "d.jurisdiction_path")
    kind_clause = "d.kind = %s" if kind else "1 = 1"
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT COALESCE(s.health, 'unknown'), COUNT(*) FROM devices d"
            " LEFT JOIN device_state s ON s.device_id = d.id"
            f" WHERE {where} AND {kind_clause}"
            " GROUP BY COALESCE(s.health, 'unknown')",
            (*params, *([kind] if kind else [])),
        )
    return {str(r[0]): int(r[1]) for r in rows}


async def device_paths(
    store: SqlStore, scope_paths: Sequence[str] | None, subtree_path: str | None
) -> dict[str, str | None]:
    """Device id → jurisdiction path of every device in scope and subtree."""
    where, params = _within(scope_paths, subtree_path, "jurisdiction_path")
    async with store.reading() as tx:
        rows = await tx.fetchall(f"SELECT id, jurisdiction_path FROM devices WHERE {where}", params)
    return {str(r[0]): r[1] for r in rows}
