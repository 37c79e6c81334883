# SQL here is assembled only from this module's constants, whitelisted sort
# expressions and "%s" placeholder lists; every value is a bound parameter.
# ruff: noqa: S608
"""Device registry storage: devices, their jurisdiction tree, listing and counts.

Every read takes the caller's scope (materialized jurisdiction paths; see
`scope_condition`): a device outside it is simply not there. Credentials are
stored as the ciphertext the service hands in and are never selected by the
listing queries (only ``credentials IS NOT NULL``).

Listing pages with a keyset cursor over (sort key, id), compared as a row value
so that the (sort key, id) index range starts at the cursor: one indexed query
per page however deep, no OFFSET, no per-row follow-up queries.

Counts come from `device_counts`, the deltas kept by triggers (see migration 2),
folded by `compact_counts`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from camera_registry.jurisdiction import (
    JurisdictionLevel,
    JurisdictionNode,
    is_within,
    subtree_glob,
)
from camera_registry.models import Device, DeviceFields, DeviceKind, HealthState
from hub.auth.principal import check_actor
from hub.storage.base import Json, SqlStore, Tx, from_json, from_ts, scope_condition, to_db_time

__all__ = [
    "SORT_KEYS",
    "CursorError",
    "DeviceFilter",
    "DevicePage",
    "DeviceRow",
    "DeviceSort",
    "StoredDevice",
    "SubtreeCounts",
    "all_jurisdictions",
    "audit_device_changes",
    "cached_rows",
    "compact_counts",
    "compare_values",
    "count_deltas",
    "count_subtree",
    "credential_blobs",
    "delete_device",
    "device_credentials",
    "device_exists",
    "existing_for_compare",
    "gb_ids_with_prefix",
    "get_device",
    "get_jurisdiction",
    "insert_devices",
    "jurisdiction_paths",
    "list_devices",
    "list_jurisdictions",
    "located_cameras",
    "move_subtree",
    "refresh_statistics",
    "taken_mqtt_ids",
    "update_credentials",
    "update_devices",
    "upsert_jurisdiction_rows",
]

DeviceSort = Literal["id", "name", "kind", "project", "jurisdiction", "updated_at", "health"]

#: Sort key → SQL expression (never NULL, so keyset comparisons are total); each but
#: `jurisdiction` and `health` matches an index on (expression, id) in migration 2.
SORT_KEYS: Mapping[str, str] = {
    "id": "d.id",
    "name": "d.name",
    "kind": "d.kind",
    "project": "COALESCE(d.project, '')",
    "jurisdiction": "COALESCE(d.jurisdiction_path, '')",
    "updated_at": "d.updated_at",
    "health": "COALESCE(s.health, 'unknown')",
}

# The comparable fields, in column order; `jurisdiction_path` is derived.
_FIELDS: tuple[str, ...] = (
    "name",
    "kind",
    "project",
    "jurisdiction",
    "latitude",
    "longitude",
    "address",
    "vendor",
    "model",
    "firmware",
    "serial",
    "onvif_url",
    "rtsp_urls",
    "mqtt_device_id",
    "tags",
    "enabled",
    "linked_cameras",
)
_JSON_FIELDS = frozenset({"rtsp_urls", "tags", "linked_cameras"})

#: What text search looks in on PostgreSQL: the expression of the trigram index
#: `devices_text_trgm` (migration 2), matched first, then each column exactly.
DEVICE_TEXT = "(d.name || ' ' || COALESCE(d.address, '') || ' ' || d.id)"

# Rows per bulk statement on PostgreSQL (arrays of this many values per column).
_BULK_ROWS = 5000
# PostgreSQL array types of the `_FIELDS` columns, for bulk inserts (JSON goes
# as text, one document per row, and is cast by the server).
_PG_TYPES: Mapping[str, str] = {
    "latitude": "float8[]",
    "longitude": "float8[]",
    "rtsp_urls": "text[]::jsonb[]",
    "tags": "text[]::jsonb[]",
    "linked_cameras": "text[]::jsonb[]",
    "enabled": "bool[]",
}

_COLUMNS = (
    "SELECT d.id, d.name, d.kind, d.project, d.jurisdiction, d.latitude, d.longitude,"
    " d.address, d.vendor, d.model, d.firmware, d.serial, d.onvif_url, d.rtsp_urls,"
    " d.mqtt_device_id, d.tags, d.enabled, d.linked_cameras, d.created_at, d.updated_at,"
    " d.credentials IS NOT NULL, d.snapshot_url, d.jurisdiction_path,"
    " s.health, s.health_since"
)
_SELECT = f"{_COLUMNS} FROM devices d LEFT JOIN device_state s ON s.device_id = d.id"
# A listing restricted to at most this many devices (by the counts) reads them by
# path and sorts them, instead of leaving the planner free to walk the sort
# key's index and filter: its estimate for a path prefix is often 10x low, and
# walking `updated_at` (after an import every device has the same one) to find a
# grid's 165 devices read 45,000 rows.
_SMALL_SUBTREE = 5000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CursorError(ValueError):
    """A cursor that this listing did not hand out (or for another sort)."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device ready to be written: fields, derived path, and sealed credentials.

    `credentials` None keeps what is stored; `clear_credentials` removes it.
    """

    device: DeviceFields
    jurisdiction_path: str | None
    credentials: bytes | None = None
    clear_credentials: bool = False


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """A device as read back, with what the read model does not carry."""

    device: Device
    jurisdiction_path: str | None
    snapshot_url: str | None


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """What a listing is restricted to (all optional, combined with AND)."""

    kinds: tuple[str, ...] = ()
    project: str | None = None
    subtree: str | None = None  # a jurisdiction path
    enabled: bool | None = None
    health: str | None = None
    text: str | None = None
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One page of a listing and the cursor of the next (None at the end)."""

    items: list[StoredDevice]
    next_cursor: str | None


@dataclass(slots=True)
class SubtreeCounts:
    """Device counts under one node: in total, by kind, by health, by child node."""

    total: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_health: dict[str, int] = field(default_factory=dict)
    by_child: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Values


def _db_value(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return Json(list(value))
    if hasattr(value, "value") and not isinstance(value, str | int | float | bool):
        return value.value
    return value


def compare_values(device: DeviceFields, jurisdiction_path: str | None) -> tuple[Any, ...]:
    """The stored form of a device's fields, for "did anything change?"."""
    values: list[Any] = []
    for name in _FIELDS:
        value = getattr(device, name)
        if name in _JSON_FIELDS:
            values.append(tuple(value))
        elif isinstance(value, str):
            values.append(str(value))
        else:
            values.append(value)
    values.append(jurisdiction_path)
    return tuple(values)


def _stored_compare(row: Sequence[Any]) -> tuple[Any, ...]:
    values: list[Any] = []
    for name, value in zip(_FIELDS, row, strict=False):
        if name in _JSON_FIELDS:
            values.append(tuple(from_json(value) or ()))
        elif name == "enabled":
            values.append(bool(value))
        elif name in ("latitude", "longitude") and value is not None:
            values.append(float(value))
        else:
            values.append(value)
    values.append(row[len(_FIELDS)])
    return tuple(values)


def _device_from_row(row: Sequence[Any]) -> StoredDevice:
    health = row[23]
    device = Device.model_construct(
        id=row[0],
        name=row[1],
        kind=DeviceKind(row[2]),
        project=row[3],
        jurisdiction=row[4],
        latitude=row[5],
        longitude=row[6],
        address=row[7],
        vendor=row[8],
        model=row[9],
        firmware=row[10],
        serial=row[11],
        onvif_url=row[12],
        rtsp_urls=from_json(row[13]) or [],
        mqtt_device_id=row[14],
        tags=from_json(row[15]) or [],
        enabled=bool(row[16]),
        linked_cameras=from_json(row[17]) or [],
        created_at=from_ts(row[18]) or _EPOCH,
        updated_at=from_ts(row[19]) or _EPOCH,
        has_credentials=bool(row[20]),
        health=HealthState(health) if health is not None else HealthState.UNKNOWN,
        health_since=from_ts(row[24]),
    )
    return StoredDevice(device=device, jurisdiction_path=row[22], snapshot_url=row[21])


# ---------------------------------------------------------------------------
# Conditions


def _subtree_sql(store: SqlStore, column: str, path: str) -> tuple[str, list[Any]]:
    # SQLite only uses an index for GLOB (LIKE is case-insensitive there);
    # PostgreSQL answers LIKE 'prefix%' from the text_pattern_ops index.
    if store.dialect == "sqlite":
        return f"{column} GLOB %s", [subtree_glob(path)]
    return f"{column} LIKE %s", [path + "%"]


def _scope_sql(store: SqlStore, scope: Sequence[str] | None, column: str) -> tuple[str, list[Any]]:
    return _within_sql(store, column, scope, None)


def _within_sql(
    store: SqlStore, column: str, scope: Sequence[str] | None, subtree: str | None
) -> tuple[str, list[Any]]:
    """`column` within the caller's scope and within `subtree`, as one prefix condition each.

    The intersection of two subtrees is the deeper one (or nothing), so a
    listing of a grid by a town operator is one range on the path index rather
    than two overlapping LIKEs whose combined selectivity the planner misjudges
    (it multiplies them and then picks a plan for 10 rows that meets 10,000).
    """
    if scope is None or "/" in scope:
        prefixes = [subtree] if subtree is not None else []
        if not prefixes:
            return "1 = 1", []
    elif not scope:
        return scope_condition(scope, column)
    elif subtree is None:
        prefixes = list(scope)
    else:
        prefixes = [
            subtree if is_within(subtree, allowed) else allowed
            for allowed in scope
            if is_within(subtree, allowed) or is_within(allowed, subtree)
        ]
    # Drop prefixes inside another one: each extra OR arm is another index scan.
    kept = sorted(set(prefixes), key=len)
    kept = [p for i, p in enumerate(kept) if not any(is_within(p, q) for q in kept[:i])]
    if not kept:
        return "1 = 0", []
    parts: list[str] = []
    params: list[Any] = []
    for path in kept:
        sql, values = _subtree_sql(store, column, path)
        parts.append(sql)
        params.extend(values)
    return "(" + " OR ".join(parts) + ")", params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filter_sql(
    store: SqlStore, flt: DeviceFilter, scope: Sequence[str] | None, *, unindexed: bool = False
) -> tuple[list[str], list[Any]]:
    # `unindexed` (SQLite only): "+column" keeps the planner off the path and kind
    # indexes, so that it walks the sort key's index instead.
    plus = "+" if unindexed and store.dialect == "sqlite" else ""
    where, params = [], []
    sql, values = _within_sql(store, f"{plus}d.jurisdiction_path", scope, flt.subtree)
    where.append(sql)
    params.extend(values)
    if flt.kinds:
        where.append(f"{plus}d.kind IN (" + ", ".join(["%s"] * len(flt.kinds)) + ")")
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
        like = "LIKE" if store.dialect == "sqlite" else "ILIKE"
        pattern = f"%{_escape_like(flt.text)}%"
        if store.dialect == "postgresql":
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


# ---------------------------------------------------------------------------
# Cursor


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


# ---------------------------------------------------------------------------
# Devices: reads


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


# ---------------------------------------------------------------------------
# Devices: writes


def _row_values(row: DeviceRow) -> list[Any]:
    return [_db_value(name, getattr(row.device, name)) for name in _FIELDS]


async def insert_devices(
    tx: Tx, rows: Sequence[DeviceRow], now: datetime, *, dialect: str = "sqlite"
) -> None:
    """Create devices and their `device_state` rows.

    On PostgreSQL a few thousand rows go per statement as column arrays
    (`unnest`): one round trip and one trigger run per chunk, not per device.
    """
    if not rows:
        return
    if dialect == "postgresql":
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
    if store.dialect != "postgresql":
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
        if store.dialect == "postgresql":
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
        if store.dialect == "sqlite":
            # A sample is enough to tell a handful of kinds from 100,000 ids.
            await tx.execute("PRAGMA analysis_limit = 1000")
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


# ---------------------------------------------------------------------------
# Jurisdictions


def _node_from_row(row: Sequence[Any]) -> tuple[JurisdictionNode, str]:
    node = JurisdictionNode(
        code=row[0], name=row[1], level=JurisdictionLevel(row[2]), parent_code=row[3]
    )
    return node, row[4]


async def all_jurisdictions(
    store: SqlStore | None = None, tx: Tx | None = None
) -> list[tuple[JurisdictionNode, str]]:
    """Every node with its path, in path order."""
    sql = "SELECT code, name, level, parent_code, path FROM jurisdictions ORDER BY path"
    if tx is not None:
        rows = await tx.fetchall(sql)
    elif store is not None:
        async with store.reading() as reader:
            rows = await reader.fetchall(sql)
    else:
        raise TypeError("pass a store or a transaction")
    return [_node_from_row(r) for r in rows]


async def get_jurisdiction(store: SqlStore, code: str) -> tuple[JurisdictionNode, str] | None:
    """One node with its path, by code."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT code, name, level, parent_code, path FROM jurisdictions WHERE code = %s",
            [code],
        )
    return _node_from_row(row) if row else None


async def list_jurisdictions(
    store: SqlStore, *, under: str | None, scope: Sequence[str] | None
) -> list[tuple[JurisdictionNode, str]]:
    """Nodes within `scope` (and under the path `under`, if given), in path order."""
    where, params = [], []
    sql, values = _scope_sql(store, scope, "path")
    where.append(sql)
    params.extend(values)
    if under is not None:
        sql, values = _subtree_sql(store, "path", under)
        where.append(sql)
        params.extend(values)
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT code, name, level, parent_code, path FROM jurisdictions"
            f" WHERE {' AND '.join(where)} ORDER BY path",
            params,
        )
    return [_node_from_row(r) for r in rows]


async def jurisdiction_paths(store: SqlStore) -> dict[str, str]:
    """Every node's path by code."""
    async with store.reading() as tx:
        rows = await tx.fetchall("SELECT code, path FROM jurisdictions")
    return {r[0]: r[1] for r in rows}


async def upsert_jurisdiction_rows(
    tx: Tx, rows: Iterable[tuple[JurisdictionNode, str]], existing: Mapping[str, str]
) -> tuple[int, int]:
    """Insert new nodes and update changed ones (parents first); return (created, updated)."""
    ordered = sorted(rows, key=lambda item: item[1].count("/"))
    inserts = [n for n in ordered if n[0].code not in existing]
    updates = [n for n in ordered if n[0].code in existing]
    # A node can move under a node created in the same batch: insert first,
    # with the new paths, then rewrite the changed ones.
    if updates:
        # Moved subtrees are rewritten by `move_subtree`; park their paths to
        # keep the UNIQUE constraint happy while siblings swap places.
        await tx.executemany(
            "UPDATE jurisdictions SET path = %s WHERE code = %s",
            [["#" + node.code, node.code] for node, path in updates if existing[node.code] != path],
        )
    if inserts:
        await tx.executemany(
            "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
            " VALUES (%s, %s, %s, %s, %s)",
            [[n.code, n.name, n.level.value, n.parent_code, p] for n, p in inserts],
        )
    if updates:
        await tx.executemany(
            "UPDATE jurisdictions SET name = %s, level = %s, parent_code = %s, path = %s"
            " WHERE code = %s",
            [[n.name, n.level.value, n.parent_code, p, n.code] for n, p in updates],
        )
    return len(inserts), len(updates)


async def move_subtree(tx: Tx, store: SqlStore, old_path: str, new_path: str) -> None:
    """Rewrite devices' paths after a node moved from `old_path` to `new_path`."""
    cond, params = _subtree_sql(store, "jurisdiction_path", old_path)
    await tx.execute(
        f"UPDATE devices SET jurisdiction_path = %s || substr(jurisdiction_path, %s) WHERE {cond}",
        [new_path, len(old_path) + 1, *params],
    )
