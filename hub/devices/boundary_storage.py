"""SQL for jurisdiction boundaries (one GeoJSON geometry per node)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hub.storage.base import Json, SqlStore, Tx, from_json, scope_condition, to_db_time

__all__ = ["existing_codes", "in_scope", "upsert"]


async def existing_codes(tx: Tx, codes: Sequence[str]) -> set[str]:
    """Which of `codes` are jurisdiction nodes."""
    found: set[str] = set()
    for start in range(0, len(codes), 400):
        chunk = list(codes[start : start + 400])
        marks = ", ".join("%s" for _ in chunk)
        rows = await tx.fetchall(
            f"SELECT code FROM jurisdictions WHERE code IN ({marks})",  # noqa: S608 - placeholders
            chunk,
        )
        found.update(str(row[0]) for row in rows)
    return found


async def upsert(tx: Tx, geometries: Mapping[str, Mapping[str, Any]], now: datetime) -> None:
    """Store (replace) the boundary of each code."""
    at = to_db_time(now)
    await tx.executemany(
        "INSERT INTO jurisdiction_boundaries (code, geometry, updated_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (code) DO UPDATE SET geometry = excluded.geometry,"
        " updated_at = excluded.updated_at",
        [[code, Json(dict(geometry)), at] for code, geometry in geometries.items()],
    )


async def in_scope(
    store: SqlStore, scope: Sequence[str] | None
) -> list[tuple[str, str, str, str | None, dict[str, Any]]]:
    """(code, name, level, parent_code, geometry) of the boundaries in scope, parents first."""
    condition, params = scope_condition(scope, "j.path")
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT j.code, j.name, j.level, j.parent_code, b.geometry"  # noqa: S608 - placeholders
            " FROM jurisdiction_boundaries b JOIN jurisdictions j ON j.code = b.code"
            f" WHERE {condition} ORDER BY j.path",
            params,
        )
    return [
        (str(r[0]), str(r[1]), str(r[2]), None if r[3] is None else str(r[3]), from_json(r[4]))
        for r in rows
    ]
