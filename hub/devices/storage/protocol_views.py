# SQL here is assembled only from this module's constants, the caller's scope
# condition and "%s" placeholders; every value is a bound parameter.
# ruff: noqa: S608
"""Device projections for the protocol services: ONVIF targets (and the fields a probe
may update), broadcast units with their stored health.

The ONVIF service keeps the cameras it talks to from `onvif_event_targets` and notices
changes made on any node through `onvif_fingerprint`; a successful probe's identity is
written back with `apply_probed_fields` inside the probe's own transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.storage.base import (
    Json,
    SqlStore,
    Tx,
    from_json,
    from_ts,
    scope_condition,
    to_db_time,
)

__all__ = [
    "PROBED_FIELDS",
    "BroadcastUnit",
    "OnvifTarget",
    "apply_probed_fields",
    "broadcast_units",
    "onvif_addresses",
    "onvif_event_targets",
    "onvif_fingerprint",
    "onvif_target",
    "onvif_target_in",
]

_TARGET_COLUMNS = (
    "d.id, d.name, d.kind, d.enabled, d.onvif_url, d.jurisdiction_path, d.credentials,"
    " d.vendor, d.model, d.firmware, d.serial, d.rtsp_urls, d.snapshot_url"
)

#: The device fields an ONVIF probe may rewrite (what the camera says it is, where its media is).
PROBED_FIELDS = frozenset({"vendor", "model", "firmware", "serial", "rtsp_urls", "snapshot_url"})


@dataclass(frozen=True, slots=True)
class OnvifTarget:
    """A registered device with an ONVIF address, as the ONVIF service needs it."""

    device_id: str
    name: str
    kind: str
    enabled: bool
    onvif_url: str | None
    jurisdiction_path: str | None
    #: The registry's encrypted credentials blob (never decrypted here).
    credentials: bytes | None = field(default=None, repr=False)
    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    rtsp_urls: tuple[str, ...] = ()
    snapshot_url: str | None = None

    @property
    def has_credentials(self) -> bool:
        """True when a login is stored for the device."""
        return self.credentials is not None

    def channel_fingerprint(self) -> str:
        """Changes when what the event channel depends on changes (address, login, switch)."""
        digest = hashlib.sha256()
        digest.update((self.onvif_url or "").encode())
        digest.update(b"\x00" + (self.credentials or b""))
        digest.update(b"\x01" if self.enabled else b"\x00")
        return digest.hexdigest()


def _target(row: Sequence[Any]) -> OnvifTarget:
    urls = from_json(row[11]) or []
    return OnvifTarget(
        device_id=str(row[0]),
        name=str(row[1] or ""),
        kind=str(row[2] or ""),
        enabled=bool(row[3]),
        onvif_url=row[4],
        jurisdiction_path=row[5],
        credentials=bytes(row[6]) if row[6] is not None else None,
        vendor=row[7],
        model=row[8],
        firmware=row[9],
        serial=row[10],
        rtsp_urls=tuple(str(u) for u in urls) if isinstance(urls, list) else (),
        snapshot_url=row[12],
    )


async def onvif_fingerprint(store: SqlStore) -> tuple[object, ...]:
    """A value that changes whenever an ONVIF camera is added, changed or removed."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT COUNT(*), MAX(updated_at) FROM devices WHERE onvif_url IS NOT NULL"
        )
    return tuple(row) if row is not None else ()


async def onvif_target(
    store: SqlStore, device_id: str, scope_paths: Sequence[str] | None = None
) -> OnvifTarget | None:
    """One device within the caller's jurisdiction scope (None: missing or out of scope)."""
    condition, params = scope_condition(scope_paths, "d.jurisdiction_path")
    async with store.reading() as tx:
        row = await tx.fetchone(
            f"SELECT {_TARGET_COLUMNS} FROM devices d WHERE d.id = %s AND {condition}",
            [device_id, *params],
        )
    return _target(row) if row is not None else None


async def onvif_target_in(tx: Tx, device_id: str) -> OnvifTarget | None:
    """One device (in any jurisdiction) inside the caller's transaction."""
    row = await tx.fetchone(
        f"SELECT {_TARGET_COLUMNS} FROM devices d WHERE d.id = %s", (device_id,)
    )
    return _target(row) if row is not None else None


async def onvif_event_targets(store: SqlStore) -> list[OnvifTarget]:
    """Every enabled device with an ONVIF address and a stored login."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            f"SELECT {_TARGET_COLUMNS} FROM devices d"
            " WHERE d.enabled = TRUE AND d.onvif_url IS NOT NULL"
            " AND d.credentials IS NOT NULL ORDER BY d.id"
        )
    return [_target(row) for row in rows]


async def onvif_addresses(store: SqlStore) -> dict[str, str]:
    """Every registered ONVIF address (as stored) → device id."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT onvif_url, id FROM devices WHERE onvif_url IS NOT NULL ORDER BY id"
        )
    return {str(row[0]): str(row[1]) for row in rows}


async def apply_probed_fields(
    tx: Tx, device_id: str, changed: Mapping[str, Any], at: datetime
) -> None:
    """Write what a probe found (only `PROBED_FIELDS`) and move the device's `updated_at`."""
    unknown = set(changed) - PROBED_FIELDS
    if unknown:
        raise ValueError(f"a probe cannot change {sorted(unknown)}")
    if not changed:
        return
    # Column names come from PROBED_FIELDS, never from input.
    assignments = ", ".join(f"{name} = %s" for name in changed)
    values = [Json(v) if isinstance(v, list) else v for v in changed.values()]
    await tx.execute(
        f"UPDATE devices SET {assignments}, updated_at = %s WHERE id = %s",
        [*values, to_db_time(at), device_id],
    )


@dataclass(frozen=True, slots=True)
class BroadcastUnit:
    """A registered broadcast unit with its stored health."""

    device_id: str
    name: str
    mqtt_device_id: str | None
    jurisdiction_path: str | None
    tags: tuple[str, ...] = field(default_factory=tuple)
    health: str = "unknown"
    last_seen_at: datetime | None = None


async def broadcast_units(
    store: SqlStore,
    scope_paths: Sequence[str] | None,
    *,
    unit_id: str | None = None,
    zone: str | None = None,
) -> list[BroadcastUnit]:
    """Broadcast units within the scope, optionally one unit or the units tagged `zone`."""
    scope_sql, params = scope_condition(scope_paths, "d.jurisdiction_path")
    clauses = ["d.kind = 'broadcast_unit'", scope_sql]
    values: list[Any] = list(params)
    if unit_id is not None:
        clauses.append("d.id = %s")
        values.append(unit_id)
    if zone is not None:
        sql_zone, zone_values = store.dialect.json_array_contains("d.tags", zone)
        clauses.append(sql_zone)
        values.extend(zone_values)
    sql = (
        "SELECT d.id, d.name, d.mqtt_device_id, d.jurisdiction_path, d.tags,"
        " s.health, s.last_seen_at"
        " FROM devices d LEFT JOIN device_state s ON s.device_id = d.id"
        f" WHERE {' AND '.join(clauses)} ORDER BY d.id"
    )
    async with store.reading() as tx:
        rows = await tx.fetchall(sql, values)
    out = []
    for row in rows:
        tags = from_json(row[4])
        out.append(
            BroadcastUnit(
                device_id=row[0],
                name=row[1] or "",
                mqtt_device_id=row[2],
                jurisdiction_path=row[3],
                tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
                health=row[5] or "unknown",
                last_seen_at=from_ts(row[6]),
            )
        )
    return out
