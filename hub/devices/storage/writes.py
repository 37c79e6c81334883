# SQL here is assembled only from this package's constants, whitelisted sort
# expressions and "%s" placeholder lists; every value is a bound parameter.
# ruff: noqa: S608
"""Writing devices: inserts (bulk on PostgreSQL), updates, credentials, deletes, their
audit rows, and folding the count deltas the triggers keep."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hub.auth.principal import check_actor
from hub.devices.storage.rows import (
    _BULK_ROWS,
    _FIELDS,
    _JSON_FIELDS,
    _PG_TYPES,
    DeviceRow,
    _db_value,
    _scope_sql,
)
from hub.storage.base import SqlStore, Tx
from hub.storage.dialect import SQLITE, Dialect

__all__ = [
    "audit_device_changes",
    "compact_counts",
    "count_deltas",
    "delete_device",
    "insert_devices",
    "refresh_statistics",
    "update_credentials",
    "update_devices",
]


def _row_values(row: DeviceRow) -> list[Any]:
    return [_db_value(name, getattr(row.device, name)) for name in _FIELDS]


async def insert_devices(
    tx: Tx, rows: Sequence[DeviceRow], now: datetime, *, dialect: Dialect = SQLITE
) -> None:
    """Create devices and their `device_state` rows.

    On PostgreSQL a few thousand rows go per statement as column arrays
    (`unnest`): one round trip and one trigger run per chunk, not per device.
    """
    if not rows:
        return
    if dialect.bulk_arrays:
        for start in range(0, len(rows), _BULK_ROWS):
            await _insert_devices_pg(tx, rows[start : start + _BULK_ROWS], now)
        return
    columns = ", ".join(_FIELDS)
    marks = ", ".join(["%s"] * (len(_FIELDS) + 5))
    await tx.executemany(
        f"INSERT INTO devices (id, {columns}, jurisdiction_path, credentials,"
        f" created_at, updated_at) VALUES ({marks})",
        [
            [r.device.id, *_row_values(r), r.jurisdiction_path, r.credentials, now, now]
            for r in rows
        ],
    )
    await tx.executemany(
        "INSERT INTO device_state (device_id, health, updated_at) VALUES (%s, 'unknown', %s)"
        " ON CONFLICT (device_id) DO NOTHING",
        [[r.device.id, now] for r in rows],
    )


async def _insert_devices_pg(tx: Tx, rows: Sequence[DeviceRow], now: datetime) -> None:
    columns = ", ".join(_FIELDS)
    # %b: arrays in binary, several times cheaper to encode than text arrays.
    arrays = ", ".join(f"%b::{_PG_TYPES.get(name, 'text[]')}" for name in _FIELDS)
    devices = [r.device for r in rows]
    values: list[Any] = [[d.id for d in devices]]
    for name in _FIELDS:
        column = [getattr(d, name) for d in devices]
        if name in _JSON_FIELDS:
            # One JSON text per row, cast by the server: a list of lists would be
            # taken for a two-dimensional array. Most lists are empty.
            column = [json.dumps(list(v), ensure_ascii=False) if v else "[]" for v in column]
        elif name == "kind":
            column = [v.value for v in column]
        values.append(column)
    values.append([r.jurisdiction_path for r in rows])
    values.append([r.credentials for r in rows])
    await tx.execute(
        f"INSERT INTO devices (id, {columns}, jurisdiction_path, credentials,"
        " created_at, updated_at)"
        f" SELECT *, %s::timestamptz, %s::timestamptz FROM unnest(%b::text[], {arrays},"
        " %b::text[], %b::bytea[])",
        [now, now, *values],
    )
    await tx.execute(
        "INSERT INTO device_state (device_id, health, updated_at)"
        " SELECT device_id, 'unknown', %s FROM unnest(%b::text[]) AS ids(device_id)"
        " ON CONFLICT (device_id) DO NOTHING",
        [now, values[0]],
    )


async def audit_device_changes(
    tx: Tx,
    store: SqlStore,
    entries: Sequence[tuple[str, str, Mapping[str, Any]]],
    *,
    actor: str,
    remote_addr: str | None,
    now: datetime,
) -> None:
    """One audit row per changed device: (action, device id, details), same actor and time.

    Per device so that "who changed this device" stays one indexed question;
    on PostgreSQL written as column arrays, a few thousand rows per statement.
    """
    if not entries:
        return
    check_actor(actor)
    if not store.dialect.bulk_arrays:
        await tx.executemany(
            "INSERT INTO audit_log (at, actor, action, target, remote_addr, details)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [
                [now, actor, action, target, remote_addr, dict(details)]
                for action, target, details in entries
            ],
        )
        return
    for start in range(0, len(entries), _BULK_ROWS):
        chunk = entries[start : start + _BULK_ROWS]
        await tx.execute(
            "INSERT INTO audit_log (at, actor, action, target, remote_addr, details)"
            " SELECT %s::timestamptz, %s, action, target, %s, details::jsonb"
            " FROM unnest(%b::text[], %b::text[], %b::text[]) AS a(action, target, details)",
            [
                now,
                actor,
                remote_addr,
                [e[0] for e in chunk],
                [e[1] for e in chunk],
                [json.dumps(dict(e[2]), ensure_ascii=False) for e in chunk],
            ],
        )


async def compact_counts(store: SqlStore) -> int:
    """Fold the count deltas into one row per (path, kind, health); return rows folded.

    Safe beside concurrent writers: on PostgreSQL the delete removes only the
    deltas its snapshot sees and re-inserts exactly their sums (deltas committed
    meanwhile stay as they are); SQLite has one writer at a time.
    """
    async with store.transaction() as tx:
        if store.dialect.is_postgresql:
            row = await tx.fetchone(
                "WITH folded AS (DELETE FROM device_counts"
                " RETURNING jurisdiction_path, kind, health, n),"
                " summed AS (INSERT INTO device_counts (jurisdiction_path, kind, health, n)"
                " SELECT jurisdiction_path, kind, health, SUM(n) FROM folded"
                " GROUP BY jurisdiction_path, kind, health HAVING SUM(n) <> 0 RETURNING 1)"
                " SELECT (SELECT COUNT(*) FROM folded), (SELECT COUNT(*) FROM summed)"
            )
            return int(row[0]) if row else 0
        top = await tx.fetchone("SELECT MAX(rowid), COUNT(*) FROM device_counts")
        if top is None or top[0] is None:
            return 0
        await tx.execute(
            "INSERT INTO device_counts (jurisdiction_path, kind, health, n)"
            " SELECT jurisdiction_path, kind, health, SUM(n) FROM device_counts"
            " WHERE rowid <= %s GROUP BY jurisdiction_path, kind, health HAVING SUM(n) <> 0",
            [top[0]],
        )
        await tx.execute("DELETE FROM device_counts WHERE rowid <= %s", [top[0]])
        return int(top[1])


async def refresh_statistics(store: SqlStore) -> None:
    """Let the planner see the registry's new shape after a large write (ANALYZE)."""
    async with store.transaction() as tx:
        sample = store.dialect.analyze_sample()
        if sample is not None:
            # A sample is enough to tell a handful of kinds from 100,000 ids.
            await tx.execute(sample)
        for table in ("devices", "device_state", "device_counts"):
            await tx.execute(f"ANALYZE {table}")


async def count_deltas(store: SqlStore) -> int:
    """How many delta rows the counts table holds (folding is due when this grows)."""
    async with store.reading() as tx:
        row = await tx.fetchone("SELECT COUNT(*) FROM device_counts")
    return int(row[0]) if row else 0


async def update_devices(tx: Tx, rows: Sequence[DeviceRow], now: datetime) -> None:
    """Overwrite devices' fields; credentials only where given (or cleared)."""
    assignments = ", ".join(f"{name} = %s" for name in _FIELDS)
    keep = [r for r in rows if r.credentials is None and not r.clear_credentials]
    replace = [r for r in rows if r.credentials is not None or r.clear_credentials]
    base = f"UPDATE devices SET {assignments}, jurisdiction_path = %s, updated_at = %s"
    if keep:
        await tx.executemany(
            f"{base} WHERE id = %s",
            [[*_row_values(r), r.jurisdiction_path, now, r.device.id] for r in keep],
        )
    if replace:
        await tx.executemany(
            f"{base}, credentials = %s WHERE id = %s",
            [
                [*_row_values(r), r.jurisdiction_path, now, r.credentials, r.device.id]
                for r in replace
            ],
        )


async def update_credentials(tx: Tx, sealed: Sequence[tuple[str, bytes, bytes]]) -> int:
    """Replace (id, old, new) ciphertexts where the row still holds `old`; return how many."""
    changed = 0
    for device_id, old, new in sealed:
        changed += await tx.execute(
            "UPDATE devices SET credentials = %s WHERE id = %s AND credentials = %s",
            [new, device_id, old],
        )
    return changed


async def delete_device(
    tx: Tx, store: SqlStore, device_id: str, scope: Sequence[str] | None
) -> bool:
    """Delete a device within `scope` (its state goes with it); False if not there."""
    cond, params = _scope_sql(store, scope, "d.jurisdiction_path")
    row = await tx.fetchone(
        f"SELECT d.id FROM devices d WHERE d.id = %s AND {cond}", [device_id, *params]
    )
    if row is None:
        return False
    await tx.execute("DELETE FROM device_state WHERE device_id = %s", [device_id])
    await tx.execute("DELETE FROM devices WHERE id = %s", [device_id])
    return True
