"""Evidence storage: clip rows (the MP4 files live in the data directory) and, from the
device storage's alarm-point links, which cameras to buffer and which school buttons to check."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.devices import storage as devices_repo
from hub.storage.base import Row, SqlStore, Tx, from_ts, to_db_time

__all__ = [
    "BufferedCamera",
    "ClipRow",
    "Completed",
    "Completions",
    "SchoolButton",
    "buffered_cameras",
    "clip",
    "clips_of",
    "delete_clips",
    "expired_clips",
    "fail_clip",
    "insert_clip",
    "school_buttons",
]

_COLUMNS = (
    "id, alarm_id, camera_id, jurisdiction_path, state, press_at, start_at, end_at,"
    " seconds_before, duration_s, content_type, size, sha256, sha1, file_name, tracks,"
    " reason, created_at, completed_at, expires_at"
)


@dataclass(frozen=True, slots=True)
class ClipRow:
    """One evidence clip of one camera for one alarm."""

    id: uuid.UUID
    alarm_id: uuid.UUID
    camera_id: str
    jurisdiction_path: str | None
    state: str  # recording, complete, failed
    press_at: datetime
    start_at: datetime | None
    end_at: datetime | None
    seconds_before: float | None
    duration_s: float | None
    content_type: str
    size: int | None
    sha256: str | None
    sha1: str | None
    file_name: str | None
    tracks: str | None
    reason: str | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _clip(row: Row) -> ClipRow:
    press_at = from_ts(row[5])
    created_at = from_ts(row[17])
    expires_at = from_ts(row[19])
    assert press_at is not None and created_at is not None and expires_at is not None  # noqa: S101
    return ClipRow(
        id=uuid.UUID(str(row[0])),
        alarm_id=uuid.UUID(str(row[1])),
        camera_id=row[2],
        jurisdiction_path=row[3],
        state=row[4],
        press_at=press_at,
        start_at=from_ts(row[6]),
        end_at=from_ts(row[7]),
        seconds_before=_float(row[8]),
        duration_s=_float(row[9]),
        content_type=row[10],
        size=None if row[11] is None else int(row[11]),
        sha256=row[12],
        sha1=row[13],
        file_name=row[14],
        tracks=row[15],
        reason=row[16],
        created_at=created_at,
        completed_at=from_ts(row[18]),
        expires_at=expires_at,
    )


async def insert_clip(
    tx: Tx,
    clip_id: uuid.UUID,
    alarm_id: uuid.UUID,
    camera_id: str,
    jurisdiction_path: str | None,
    press_at: datetime,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Record a clip being recorded; False when the alarm already has one of this camera."""
    count = await tx.execute(
        "INSERT INTO alarm_clips (id, alarm_id, camera_id, jurisdiction_path, state, press_at,"
        " created_at, expires_at) VALUES (%s, %s, %s, %s, 'recording', %s, %s, %s)"
        " ON CONFLICT (alarm_id, camera_id) DO NOTHING",
        (
            str(clip_id),
            str(alarm_id),
            camera_id,
            jurisdiction_path,
            to_db_time(press_at),
            to_db_time(now),
            to_db_time(expires_at),
        ),
    )
    return count > 0


_COMPLETE = (
    "UPDATE alarm_clips SET state = 'complete', start_at = %s, end_at = %s,"
    " seconds_before = %s, duration_s = %s, size = %s, sha256 = %s, sha1 = %s,"
    " file_name = %s, tracks = %s, reason = %s, completed_at = %s WHERE id = %s"
)


@dataclass(frozen=True, slots=True)
class Completed:
    """A written clip's file and digests, to be marked complete."""

    clip_id: uuid.UUID
    start_at: datetime
    end_at: datetime
    seconds_before: float
    duration_s: float
    size: int
    sha256: str
    sha1: str
    file_name: str
    tracks: str
    now: datetime
    reason: str | None = None  # why it is short, if it is

    def params(self) -> tuple[object, ...]:
        return (
            to_db_time(self.start_at),
            to_db_time(self.end_at),
            self.seconds_before,
            self.duration_s,
            self.size,
            self.sha256,
            self.sha1,
            self.file_name,
            self.tracks,
            self.reason[:500] if self.reason else None,
            to_db_time(self.now),
            str(self.clip_id),
        )


class Completions:
    """Clips marked complete together: the clips of a storm end within the same second,
    and one transaction for those waiting (while one commits, the next gather) keeps
    the last of seventy from queueing behind sixty-nine commits."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._waiting: list[tuple[Completed, asyncio.Future[None]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def complete(self, clip: Completed) -> None:
        """Mark `clip` complete; returns once committed (raises what the commit raised)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((clip, done))
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit(), name="evidence-complete")
        await done

    async def _commit(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    async with self._store.transaction() as tx:
                        await tx.executemany(_COMPLETE, [clip.params() for clip, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():  # its clip may have been cancelled meanwhile
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._committing = None


async def fail_clip(tx: Tx, clip_id: uuid.UUID, reason: str, now: datetime) -> None:
    """Mark a clip failed, saying why (no buffer, no video...)."""
    await tx.execute(
        "UPDATE alarm_clips SET state = 'failed', reason = %s, completed_at = %s WHERE id = %s",
        (reason[:500], to_db_time(now), str(clip_id)),
    )


async def clips_of(tx: Tx, alarm_id: uuid.UUID) -> list[ClipRow]:
    """An alarm's clips, by camera."""
    rows = await tx.fetchall(
        f"SELECT {_COLUMNS} FROM alarm_clips WHERE alarm_id = %s ORDER BY camera_id",  # noqa: S608
        (str(alarm_id),),
    )
    return [_clip(row) for row in rows]


async def clip(tx: Tx, clip_id: uuid.UUID) -> ClipRow | None:
    """One clip, if it exists."""
    row = await tx.fetchone(
        f"SELECT {_COLUMNS} FROM alarm_clips WHERE id = %s",  # noqa: S608
        (str(clip_id),),
    )
    return None if row is None else _clip(row)


async def expired_clips(tx: Tx, now: datetime, limit: int = 1000) -> list[tuple[str, str | None]]:
    """(id, file name) of clips past their retention."""
    rows = await tx.fetchall(
        "SELECT id, file_name FROM alarm_clips WHERE expires_at < %s ORDER BY expires_at LIMIT %s",
        (to_db_time(now), limit),
    )
    return [(str(row[0]), row[1]) for row in rows]


async def delete_clips(tx: Tx, clip_ids: Sequence[str]) -> None:
    """Forget clips (their files are removed by the caller)."""
    for clip_id in clip_ids:
        await tx.execute("DELETE FROM alarm_clips WHERE id = %s", (clip_id,))


@dataclass(frozen=True, slots=True)
class BufferedCamera:
    """A camera the hub keeps a pre-alarm buffer of."""

    device_id: str
    rtsp_url: str | None  # None: the camera streams over another protocol (GB/T 28181)
    sealed_credentials: bytes | None


async def buffered_cameras(tx: Tx, tag: str) -> list[BufferedCamera]:
    """Enabled cameras that an enabled alarm point links, or tagged `tag`, with their
    first RTSP URL (None when they have none)."""
    links = await devices_repo.alarm_point_links(tx)
    wanted = {camera for point in links.points for camera in point.linked_cameras}
    wanted.update(c.device_id for c in links.cameras.values() if tag in c.tags)
    out = []
    for device_id in sorted(wanted):
        camera = links.cameras.get(device_id)
        if camera is None:
            continue
        out.append(
            BufferedCamera(
                device_id=device_id,
                rtsp_url=camera.rtsp_urls[0] if camera.rtsp_urls else None,
                sealed_credentials=camera.sealed_credentials,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class SchoolButton:
    """A school panic button as DB15/T 3968 checks it."""

    device_id: str
    name: str
    jurisdiction_path: str | None
    address: str | None
    has_coordinates: bool
    linked_cameras: tuple[str, ...]


async def school_buttons(tx: Tx) -> tuple[list[SchoolButton], dict[str, bool]]:
    """Every enabled school panic button, and for every camera whether it has a stream."""
    links = await devices_repo.alarm_point_links(tx)
    buttons = [
        SchoolButton(
            device_id=point.device_id,
            name=point.name,
            jurisdiction_path=point.jurisdiction_path,
            address=point.address,
            has_coordinates=point.has_coordinates,
            linked_cameras=point.linked_cameras,
        )
        for point in links.points
        if point.project == "school_alarm"
    ]
    cameras = {device_id: bool(c.rtsp_urls) for device_id, c in links.cameras.items()}
    return buttons, cameras
