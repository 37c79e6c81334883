# SQL here is assembled only from this package's constants, whitelisted sort
# expressions and "%s" placeholder lists; every value is a bound parameter.
# ruff: noqa: S608
"""Reading devices: the keyset-paged listing, single devices, look-ups and subtree counts.

Listing pages with a keyset cursor over (sort key, id), compared as a row value
so that the (sort key, id) index range starts at the cursor: one indexed query
per page however deep, no OFFSET, no per-row follow-up queries."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from camera_registry.models import HealthState
from hub.devices.storage.rows import (
    _COLUMNS,
    _FIELDS,
    _SELECT,
    _SMALL_SUBTREE,
    DEVICE_TEXT,
    SORT_KEYS,
    CursorError,
    DeviceFilter,
    DevicePage,
    StoredDevice,
    SubtreeCounts,
    _device_from_row,
    _escape_like,
    _scope_sql,
    _stored_compare,
    _within_sql,
)
from hub.storage.base import SqlStore, Tx, from_json, to_db_time

__all__ = [
    "KindRow",
    "cached_rows",
    "count_subtree",
    "credential_blobs",
    "device_credentials",
    "device_exists",
    "devices_of_kinds",
    "existing_for_compare",
    "gb_ids_with_prefix",
    "get_device",
    "kinds_fingerprint",
    "list_devices",
    "located_cameras",
    "taken_mqtt_ids",
]


def _filter_sql(
    store: SqlStore, flt: DeviceFilter, scope: Sequence[str] | None, *, unindexed: bool = False
) -> tuple[list[str], list[Any]]:
    # `unindexed` (SQLite only): "+column" keeps the planner off the path and kind
    # indexes, so that it walks the sort key's index instead.
    def column(name: str) -> str:
        return store.dialect.unindexed(name) if unindexed else name

    where, params = [], []
    sql, values = _within_sql(store, column("d.jurisdiction_path"), scope, flt.subtree)
    where.append(sql)
    params.extend(values)
    if flt.kinds:
        where.append(f"{column('d.kind')} IN (" + ", ".join(["%s"] * len(flt.kinds)) + ")")
        params.extend(flt.kinds)
    if flt.ids:
        where.append("d.id IN (" + ", ".join(["%s"] * len(flt.ids)) + ")")
        params.extend(flt.ids)
    if flt.project is not None:
        where.append("d.project = %s")
        params.append(flt.project)
    if flt.enabled is not None:
        where.append("d.enabled = %s")
        params.append(flt.enabled)
    if flt.health is not None:
        where.append("COALESCE(s.health, 'unknown') = %s")
        params.append(flt.health)
    if flt.text:
        like = store.dialect.ilike()
        pattern = f"%{_escape_like(flt.text)}%"
        if store.dialect.is_postgresql:
            # Answered by the trigram index where there is one; the per-column
            # test below drops matches that only span two columns.
            where.append(f"{DEVICE_TEXT} ILIKE %s ESCAPE '\\'")
            params.append(pattern)
        where.append(
            f"(d.name {like} %s ESCAPE '\\' OR d.address {like} %s ESCAPE '\\'"
            f" OR d.id {like} %s ESCAPE '\\')"
        )
        params.extend([pattern, pattern, pattern])
    return where, params


def _encode_cursor(sort: str, descending: bool, key: Any, device_id: str) -> str:
    if isinstance(key, datetime):
        key = to_db_time(key).isoformat()
    raw = json.dumps([sort, descending, key, device_id], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, sort: str, descending: bool) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, got_desc, key, device_id = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, TypeError) as exc:
        raise CursorError("not a cursor of this listing") from exc
    if got_sort != sort or got_desc != descending or not isinstance(device_id, str):
        raise CursorError("the cursor belongs to another sort order")
    if sort == "updated_at":
        try:
            key = datetime.fromisoformat(str(key))
        except ValueError as exc:
            raise CursorError("not a cursor of this listing") from exc
    elif not isinstance(key, str):
        raise CursorError("not a cursor of this listing")
    return key, device_id


def _sort_value(item: StoredDevice, sort: str) -> Any:
    device = item.device
    if sort == "jurisdiction":
        return item.jurisdiction_path or ""
    if sort == "health":
        return (device.health or HealthState.UNKNOWN).value
    if sort == "project":
        return device.project or ""
    if sort == "kind":
        return str(device.kind)
    if sort == "updated_at":
        return device.updated_at
    value: str = getattr(device, sort)
    return value


async def list_devices(
    store: SqlStore,
    flt: DeviceFilter,
    *,
    scope: Sequence[str] | None,
    sort: str = "id",
    descending: bool = False,
    limit: int = 100,
    cursor: str | None = None,
) -> DevicePage:
    """One page of devices matching `flt` within `scope`, in `sort` order."""
    if sort not in SORT_KEYS:
        raise ValueError(f"cannot sort by {sort!r}")
    expr = SORT_KEYS[sort]
    key, last_id = _decode_cursor(cursor, sort, descending) if cursor is not None else (None, "")
    within, within_params = _within_sql(store, "d.jurisdiction_path", scope, flt.subtree)
    async with store.reading() as tx:
        small = bool(within_params) and (
            await _devices_within(tx, within, within_params) <= _SMALL_SUBTREE
        )
        # SQLite has no statistics unless ANALYZE ran, and even then takes an
        # equality on kind (90 % cameras) or a town's path range as selective and
        # sorts tens of thousands of rows; beyond a small subtree, walking the
        # sort key's index and filtering reaches a page after a few hundred rows.
        where, params = _filter_sql(store, flt, scope, unindexed=not small)
        sql = _page_sql(where, params, expr, sort, descending, cursor, key, last_id, limit)
        if small:
            sql = (
                f"WITH d AS MATERIALIZED (SELECT * FROM devices d WHERE {within})"
                f" {_COLUMNS} FROM d LEFT JOIN device_state s ON s.device_id = d.id"
                f"{sql}"
            )
            params = [*within_params, *params]
        else:
            sql = f"{_SELECT}{sql}"
        rows = await tx.fetchall(sql, params)
    items = [_device_from_row(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = _encode_cursor(sort, descending, _sort_value(last, sort), last.device.id)
    return DevicePage(items=items, next_cursor=next_cursor)


def _page_sql(
    where: list[str],
    params: list[Any],
    expr: str,
    sort: str,
    descending: bool,
    cursor: str | None,
    key: Any,
    last_id: str,
    limit: int,
) -> str:
    """WHERE … ORDER BY … LIMIT of one page (appends to `where` and `params`)."""
    if cursor is not None:
        op = "<" if descending else ">"
        # A row value, not "a > k OR (a = k AND id > i)": the planner turns it
        # into the start of the (sort key, id) index range instead of a filter
        # applied from the first row on.
        if sort == "id":
            where.append(f"d.id {op} %s")
            params.append(last_id)
        else:
            where.append(f"({expr}, d.id) {op} (%s, %s)")
            params.extend([key, last_id])
    direction = "DESC" if descending else "ASC"
    params.append(limit + 1)
    return f" WHERE {' AND '.join(where)} ORDER BY {expr} {direction}, d.id {direction} LIMIT %s"


async def _devices_within(tx: Tx, within: str, params: Sequence[Any]) -> int:
    """How many devices a path condition on `d.jurisdiction_path` admits (from the counts)."""
    cond = within.replace("d.jurisdiction_path", "jurisdiction_path")
    row = await tx.fetchone(f"SELECT COALESCE(SUM(n), 0) FROM device_counts WHERE {cond}", params)
    return int(row[0]) if row else 0


async def get_device(
    store: SqlStore, device_id: str, *, scope: Sequence[str] | None
) -> StoredDevice | None:
    """One device by id, if it exists within `scope`."""
    cond, params = _scope_sql(store, scope, "d.jurisdiction_path")
    async with store.reading() as tx:
        row = await tx.fetchone(f"{_SELECT} WHERE d.id = %s AND {cond}", [device_id, *params])
    return _device_from_row(row) if row else None


async def device_exists(tx: Tx, device_id: str) -> bool:
    """True when a device with this id is stored (in any jurisdiction)."""
    return await tx.fetchone("SELECT 1 FROM devices WHERE id = %s", [device_id]) is not None


async def device_credentials(store: SqlStore, device_id: str) -> bytes | None:
    """The sealed credentials of a device (server-side use only)."""
    async with store.reading() as tx:
        row = await tx.fetchone("SELECT credentials FROM devices WHERE id = %s", [device_id])
    return bytes(row[0]) if row and row[0] is not None else None


async def existing_for_compare(
    tx: Tx, store: SqlStore, ids: Sequence[str]
) -> dict[str, tuple[tuple[Any, ...], bytes | None, str | None]]:
    """For each existing id: its comparable values, sealed credentials, jurisdiction path."""
    found: dict[str, tuple[tuple[Any, ...], bytes | None, str | None]] = {}
    columns = ", ".join(f"d.{name}" for name in _FIELDS)
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        rows = await tx.fetchall(
            f"SELECT d.id, {columns}, d.jurisdiction_path, d.credentials FROM devices d"
            f" WHERE d.id IN ({', '.join(['%s'] * len(chunk))})",
            chunk,
        )
        for row in rows:
            blob = bytes(row[-1]) if row[-1] is not None else None
            found[row[0]] = (_stored_compare(row[1:-1]), blob, row[-2])
    return found


async def taken_mqtt_ids(tx: Tx, mqtt_ids: Sequence[str]) -> dict[str, str]:
    """Which of `mqtt_ids` are used, and by which device."""
    taken: dict[str, str] = {}
    for start in range(0, len(mqtt_ids), 1000):
        chunk = list(mqtt_ids[start : start + 1000])
        rows = await tx.fetchall(
            "SELECT mqtt_device_id, id FROM devices"
            f" WHERE mqtt_device_id IN ({', '.join(['%s'] * len(chunk))})",
            chunk,
        )
        taken.update({r[0]: r[1] for r in rows})
    return taken


async def cached_rows(store: SqlStore) -> list[tuple[str, str, str | None, str | None, bool]]:
    """(id, kind, mqtt_device_id, jurisdiction_path, enabled) of every device."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT id, kind, mqtt_device_id, jurisdiction_path, enabled FROM devices"
        )
    return [(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]


async def gb_ids_with_prefix(store: SqlStore, prefix: str) -> list[str]:
    """Every device id that is `prefix` followed by six digits (a range scan on the key)."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT id FROM devices WHERE id >= %s AND id <= %s",
            [prefix + "000000", prefix + "999999"],
        )
    return [r[0] for r in rows if len(r[0]) == len(prefix) + 6]


async def located_cameras(
    store: SqlStore,
    box: tuple[float, float, float, float],
    *,
    scope: Sequence[str] | None,
    exclude: str,
) -> list[tuple[str, str, float, float]]:
    """(id, name, latitude, longitude) of enabled cameras inside the box, within scope."""
    cond, params = _scope_sql(store, scope, "d.jurisdiction_path")
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT d.id, d.name, d.latitude, d.longitude FROM devices d"
            " WHERE d.kind = 'camera' AND d.enabled = %s AND d.id <> %s"
            " AND d.latitude BETWEEN %s AND %s AND d.longitude BETWEEN %s AND %s"
            f" AND {cond} ORDER BY d.id",
            [True, exclude, box[0], box[2], box[1], box[3], *params],
        )
    return [(r[0], r[1], float(r[2]), float(r[3])) for r in rows]


async def count_subtree(
    store: SqlStore, path: str | None, *, scope: Sequence[str] | None
) -> SubtreeCounts:
    """Device counts under `path` (None: everything in scope), split by kind, health, child.

    Read from the trigger-kept deltas: a few thousand rows for a whole district
    instead of a join over every device and its state.
    """
    cond, params = _within_sql(store, "jurisdiction_path", scope, path)
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT jurisdiction_path, kind, health, SUM(n) FROM device_counts"
            f" WHERE {cond} GROUP BY jurisdiction_path, kind, health",
            params,
        )
    counts = SubtreeCounts()
    depth = len(path.strip("/").split("/")) if path else 0
    for node_path, kind, health, number in rows:
        n = int(number)
        if n == 0:
            continue
        counts.total += n
        counts.by_kind[kind] = counts.by_kind.get(kind, 0) + n
        counts.by_health[health] = counts.by_health.get(health, 0) + n
        codes = node_path.strip("/").split("/") if node_path else []
        child = codes[depth] if len(codes) > depth else None
        if child is not None:
            counts.by_child[child] = counts.by_child.get(child, 0) + n
    return counts


async def credential_blobs(store: SqlStore, *, after: str, limit: int) -> list[tuple[str, bytes]]:
    """(id, sealed credentials) of devices with credentials, in id order after `after`."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT id, credentials FROM devices WHERE credentials IS NOT NULL AND id > %s"
            " ORDER BY id LIMIT %s",
            [after, limit],
        )
    return [(r[0], bytes(r[1])) for r in rows]


@dataclass(frozen=True, slots=True)
class KindRow:
    """A device as protocol services that load a whole kind keep it in memory."""

    device_id: str
    kind: str
    name: str
    mqtt_device_id: str | None
    jurisdiction_path: str | None
    tags: tuple[str, ...]


def _tag_tuple(value: Any) -> tuple[str, ...]:
    decoded = from_json(value)
    if isinstance(decoded, list):
        return tuple(str(tag) for tag in decoded)
    return ()


async def devices_of_kinds(store: SqlStore, kinds: Sequence[str]) -> list[KindRow]:
    """Every registered device of `kinds` (for a protocol service's directory)."""
    if not kinds:
        return []
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT id, kind, name, mqtt_device_id, jurisdiction_path, tags"
            f" FROM devices WHERE kind IN ({', '.join('%s' for _ in kinds)})",
            list(kinds),
        )
    return [
        KindRow(
            device_id=row[0],
            kind=row[1],
            name=row[2] or "",
            mqtt_device_id=row[3],
            jurisdiction_path=row[4],
            tags=_tag_tuple(row[5]),
        )
        for row in rows
    ]


async def kinds_fingerprint(store: SqlStore, kinds: Sequence[str]) -> tuple[int, str]:
    """Changes whenever a device of `kinds` is added, removed or updated (on any node)."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT COUNT(*), MAX(updated_at) FROM devices"
            f" WHERE kind IN ({', '.join('%s' for _ in kinds)})",
            list(kinds),
        )
    if row is None:
        return 0, ""
    return int(row[0]), str(row[1])
