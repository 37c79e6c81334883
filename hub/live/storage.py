"""What the live view needs to know about a camera: scope, stream URLs, sealed credentials."""

from __future__ import annotations

from dataclasses import dataclass

from hub.storage.base import Tx, from_json

__all__ = ["CameraSource", "camera_source"]


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
    """The registry row of one device, if it exists."""
    row = await tx.fetchone(
        "SELECT id, kind, enabled, jurisdiction_path, rtsp_urls, credentials"
        " FROM devices WHERE id = %s",
        (device_id,),
    )
    if row is None:
        return None
    urls = from_json(row[4]) or []
    return CameraSource(
        device_id=row[0],
        kind=row[1],
        enabled=bool(row[2]),
        jurisdiction_path=row[3],
        rtsp_urls=tuple(str(u) for u in urls),
        sealed_credentials=bytes(row[5]) if row[5] is not None else None,
    )
