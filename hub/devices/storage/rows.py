# SQL here is assembled only from this package's constants, whitelisted sort
# expressions and "%s" placeholder lists; every value is a bound parameter.
"""Device rows as stored and read: the column lists, row types, value comparison and the
scope/subtree SQL fragments every device query shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from camera_registry.jurisdiction import (
    is_within,
    subtree_glob,
)
from camera_registry.models import Device, DeviceFields, DeviceKind, HealthState
from hub.storage.base import Json, SqlStore, from_json, from_ts, scope_condition

__all__ = [
    "DEVICE_TEXT",
    "SORT_KEYS",
    "CursorError",
    "DeviceFilter",
    "DevicePage",
    "DeviceRow",
    "DeviceSort",
    "StoredDevice",
    "SubtreeCounts",
    "compare_values",
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


def _subtree_sql(store: SqlStore, column: str, path: str) -> tuple[str, list[Any]]:
    return store.dialect.subtree(column, path, subtree_glob(path))


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
