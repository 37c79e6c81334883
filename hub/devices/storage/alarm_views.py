"""The device projection the alarm engine reads: registry facts of a batch's devices.

The engine reads them in the same round trip as the batch's open alarms, so this
module hands out the statement (`alarm_devices_statement`) and the reader of its rows
(`alarm_devices_from`) for the caller's `Tx.run_all`, besides `alarm_devices`.
Facts a site keeps in the free-form `attributes` document (linked speakers, and any
column left empty) fill in where the columns say nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.storage.base import Row, Statement, StorageError, Tx, from_json
from hub.storage.dialect import Dialect

__all__ = [
    "AlarmDevice",
    "alarm_devices",
    "alarm_devices_from",
    "alarm_devices_statement",
    "device_columns",
]

# Selected when present; a store whose schema lacks one reads NULL in its place.
_OPTIONAL = (
    "project",
    "jurisdiction_path",
    "linked_cameras",
    "latitude",
    "longitude",
    "address",
    "snapshot_url",
    "credentials",
    "rtsp_urls",
)


@dataclass(frozen=True, slots=True)
class AlarmDevice:
    """What the alarm engine reads about a device from the registry."""

    device_id: str
    kind: str
    name: str | None
    project: str | None
    jurisdiction: str | None
    jurisdiction_path: str | None
    linked_cameras: tuple[str, ...]
    linked_speakers: tuple[str, ...]
    latitude: float | None
    longitude: float | None
    address: str | None
    snapshot_url: str | None
    credentials: bytes | None = field(default=None, repr=False)
    #: The camera's RTSP URLs (main stream first), for a one-frame snapshot.
    rtsp_urls: tuple[str, ...] = field(default=(), repr=False)


async def device_columns(tx: Tx, dialect: Dialect) -> frozenset[str]:
    """The names of the `devices` table's columns (for `alarm_devices_statement`)."""
    return await dialect.columns(tx, "devices")


def alarm_devices_statement(
    dialect: Dialect, device_ids: Sequence[str], present: frozenset[str]
) -> Statement:
    """The query of `device_ids`' facts, reading only the optional columns in `present`."""
    selected = ["id", "kind", "name", "jurisdiction", "attributes"]
    selected += [column if column in present else "NULL" for column in _OPTIONAL]
    member, params = dialect.one_of("id", device_ids)
    return Statement(
        f"SELECT {', '.join(selected)} FROM devices WHERE {member}",  # noqa: S608 - fixed column names
        params,
        rows=True,
    )


async def alarm_devices(
    tx: Tx, dialect: Dialect, device_ids: Iterable[str], present: frozenset[str]
) -> dict[str, AlarmDevice]:
    """Registry facts for `device_ids` (unknown devices are absent)."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    (rows,) = await tx.run_all([alarm_devices_statement(dialect, ids, present)])
    if not isinstance(rows, list):
        raise StorageError("a query gave no rows")
    return alarm_devices_from(rows)


def _strings(value: Any) -> tuple[str, ...]:
    decoded = from_json(value) if isinstance(value, str | bytes) else value
    if not isinstance(decoded, list):
        return ()
    return tuple(str(item) for item in decoded if isinstance(item, str) and item)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_text(value: Any) -> str | None:
    return None if value is None else str(value)


def alarm_devices_from(rows: Sequence[Row]) -> dict[str, AlarmDevice]:
    """The facts by device id, from the rows of `alarm_devices_statement`."""
    found: dict[str, AlarmDevice] = {}
    for row in rows:
        attributes = from_json(row[4]) or {}
        if not isinstance(attributes, dict):
            attributes = {}
        linked = _strings(row[7]) or _strings(attributes.get("linked_cameras"))
        found[row[0]] = AlarmDevice(
            device_id=row[0],
            kind=row[1] or "device",
            name=row[2] or None,
            project=row[5] or _opt_text(attributes.get("project")),
            jurisdiction=row[3],
            jurisdiction_path=row[6] or _opt_text(attributes.get("jurisdiction_path")),
            linked_cameras=linked,
            linked_speakers=_strings(attributes.get("linked_speakers")),
            latitude=_float(row[8] if row[8] is not None else attributes.get("latitude")),
            longitude=_float(row[9] if row[9] is not None else attributes.get("longitude")),
            address=row[10] or _opt_text(attributes.get("address")),
            snapshot_url=row[11] or _opt_text(attributes.get("snapshot_url")),
            credentials=None if row[12] is None else bytes(row[12]),
            rtsp_urls=_strings(row[13]) or _strings(attributes.get("rtsp_urls")),
        )
    return found
