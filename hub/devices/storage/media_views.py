"""Device projections about cameras' streams: the live view's source, the alarm points'
camera links that evidence buffering and the school checks follow, the patrol's targets.

Each is a small typed view of the `devices` row (with `device_state` where it says so);
sealed credentials are handed on as the ciphertext, never decrypted here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.storage.base import SqlStore, Tx, from_json, from_ts

__all__ = [
    "AlarmPoint",
    "AlarmPointLinks",
    "CameraSource",
    "CameraStreams",
    "PatrolTarget",
    "alarm_point_links",
    "camera_source",
    "patrol_targets",
]


def _strings(value: Any) -> tuple[str, ...]:
    decoded = from_json(value)
    return tuple(str(item) for item in decoded) if isinstance(decoded, list) else ()


def _sealed(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class CameraSource:
    """A camera's stream addresses (without credentials) and its sealed login."""

    device_id: str
    kind: str
    enabled: bool
    jurisdiction_path: str | None
    rtsp_urls: tuple[str, ...]
    sealed_credentials: bytes | None


async def camera_source(tx: Tx, device_id: str) -> CameraSource | None:
    """What the live view needs of one device (any kind, enabled or not), if it exists."""
    row = await tx.fetchone(
        "SELECT id, kind, enabled, jurisdiction_path, rtsp_urls, credentials"
        " FROM devices WHERE id = %s",
        (device_id,),
    )
    if row is None:
        return None
    return CameraSource(
        device_id=row[0],
        kind=row[1],
        enabled=bool(row[2]),
        jurisdiction_path=row[3],
        rtsp_urls=_strings(row[4]),
        sealed_credentials=_sealed(row[5]),
    )


@dataclass(frozen=True, slots=True)
class CameraStreams:
    """An enabled camera's streams (main first), tags and sealed login."""

    device_id: str
    rtsp_urls: tuple[str, ...]
    tags: tuple[str, ...]
    sealed_credentials: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AlarmPoint:
    """An enabled alarm point with what DB15/T 3968 asks of it and the cameras it links."""

    device_id: str
    name: str
    project: str | None
    jurisdiction_path: str | None
    address: str | None
    has_coordinates: bool
    linked_cameras: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AlarmPointLinks:
    """Every enabled alarm point, and every enabled camera by id."""

    points: tuple[AlarmPoint, ...]
    cameras: dict[str, CameraStreams]


async def alarm_point_links(tx: Tx) -> AlarmPointLinks:
    """The enabled alarm points and enabled cameras, in one read (for linkage checks)."""
    rows = await tx.fetchall(
        "SELECT id, kind, name, project, jurisdiction_path, address, latitude, tags,"
        " linked_cameras, rtsp_urls, credentials FROM devices"
        " WHERE enabled = %s AND kind IN ('alarm_point', 'camera') ORDER BY id",
        (True,),
    )
    points: list[AlarmPoint] = []
    cameras: dict[str, CameraStreams] = {}
    for row in rows:
        if row[1] == "camera":
            cameras[row[0]] = CameraStreams(
                device_id=row[0],
                rtsp_urls=_strings(row[9]),
                tags=_strings(row[7]),
                sealed_credentials=_sealed(row[10]),
            )
        else:
            points.append(
                AlarmPoint(
                    device_id=row[0],
                    name=row[2],
                    project=row[3],
                    jurisdiction_path=row[4],
                    address=row[5],
                    has_coordinates=row[6] is not None,
                    linked_cameras=_strings(row[8]),
                )
            )
    return AlarmPointLinks(points=tuple(points), cameras=cameras)


@dataclass(frozen=True, slots=True)
class PatrolTarget:
    """A camera the patrol should probe, with when it was probed last."""

    device_id: str
    name: str
    jurisdiction_path: str | None
    rtsp_urls: tuple[str, ...]
    credentials: bytes | None
    last_probe_at: datetime | None


async def patrol_targets(store: SqlStore) -> list[PatrolTarget]:
    """Enabled cameras with their RTSP URLs (none for a camera seen only through
    another protocol's stream), the longest unprobed first (never probed first)."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT d.id, d.name, d.jurisdiction_path, d.rtsp_urls, d.credentials,"
            " s.last_probe_at FROM devices d"
            " LEFT JOIN device_state s ON s.device_id = d.id"
            " WHERE d.kind = 'camera' AND d.enabled = TRUE"
            " ORDER BY CASE WHEN s.last_probe_at IS NULL THEN 0 ELSE 1 END,"
            " s.last_probe_at, d.id"
        )
    targets = []
    for row in rows:
        urls = tuple(str(u) for u in (from_json(row[3]) or []))
        targets.append(
            PatrolTarget(
                device_id=str(row[0]),
                name=str(row[1]),
                jurisdiction_path=row[2],
                rtsp_urls=urls,
                credentials=_sealed(row[4]),
                last_probe_at=from_ts(row[5]),
            )
        )
    return targets
