"""Alarm media: snapshots bound to an alarm, their metadata and bytes.

Free functions over the store, each in its own short transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from hub.alarms.row_storage import ts as _ts
from hub.storage.base import SqlStore, from_uuid, to_db_time

__all__ = ["MediaRow", "add_media", "media", "media_content"]


@dataclass(frozen=True, slots=True)
class MediaRow:
    """A snapshot bound to an alarm (without its bytes)."""

    id: uuid.UUID
    alarm_id: uuid.UUID
    device_id: str
    content_type: str
    size: int
    taken_at: datetime
    source: str


async def add_media(
    store: SqlStore,
    alarm_id: uuid.UUID,
    device_id: str,
    content_type: str,
    data: bytes,
    taken_at: datetime,
    source: str,
) -> uuid.UUID:
    """Store a snapshot bound to an alarm; return its id."""
    media_id = uuid.uuid4()
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO alarm_media (id, alarm_id, device_id, content_type, size, data,"
            " taken_at, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                media_id,
                str(alarm_id),
                device_id,
                content_type,
                len(data),
                data,
                to_db_time(taken_at),
                source,
            ),
        )
    return media_id


async def media(store: SqlStore, alarm_id: uuid.UUID) -> list[MediaRow]:
    """An alarm's snapshots (metadata only)."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT id, alarm_id, device_id, content_type, size, taken_at, source"
            " FROM alarm_media WHERE alarm_id = %s ORDER BY taken_at, id",
            (str(alarm_id),),
        )
    return [
        MediaRow(
            id=from_uuid(row[0]),
            alarm_id=from_uuid(row[1]),
            device_id=row[2],
            content_type=row[3],
            size=int(row[4]),
            taken_at=_ts(row[5]),
            source=row[6],
        )
        for row in rows
    ]


async def media_content(
    store: SqlStore, alarm_id: uuid.UUID, media_id: uuid.UUID
) -> tuple[str, bytes]:
    """(content type, bytes) of one snapshot of `alarm_id`; KeyError if absent."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT content_type, data FROM alarm_media WHERE id = %s AND alarm_id = %s",
            (media_id, str(alarm_id)),
        )
    if row is None:
        raise KeyError(str(media_id))
    return str(row[0]), bytes(row[1])
