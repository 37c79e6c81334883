"""Evidence API bodies: clips of an alarm and the state of the pre-alarm buffers."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from hub.evidence.service import PrebufferState, Shortfall
from hub.evidence.storage import ClipRow

__all__ = ["BufferOut", "ClipOut", "ShortfallOut"]


class ClipOut(BaseModel):
    """One evidence clip of one linked camera."""

    id: uuid.UUID
    alarm_id: uuid.UUID
    camera_id: str
    state: str = Field(description="recording, complete or failed")
    press_at: datetime = Field(description="when the alarm was raised (the hub's clock)")
    start_at: datetime | None = Field(description="wall-clock time of the clip's first picture")
    end_at: datetime | None
    seconds_before: float | None = Field(description="seconds of video before the press")
    duration_s: float | None
    content_type: str
    size: int | None = Field(description="bytes")
    sha256: str | None = Field(description="hex SHA-256 of the file")
    tracks: list[str] = Field(description="kind:codec of each track, e.g. video:h264")
    reason: str | None = Field(
        description="why a failed clip has no video, or why a complete one is short after it"
    )
    url: str | None = Field(description="where the complete clip is served (scoped)")
    expires_at: datetime

    @classmethod
    def of(cls, row: ClipRow) -> ClipOut:
        """The API view of a stored clip."""
        tracks = json.loads(row.tracks) if row.tracks else []
        return cls(
            id=row.id,
            alarm_id=row.alarm_id,
            camera_id=row.camera_id,
            state=row.state,
            press_at=row.press_at,
            start_at=row.start_at,
            end_at=row.end_at,
            seconds_before=row.seconds_before,
            duration_s=row.duration_s,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
            tracks=[str(t) for t in tracks],
            reason=row.reason,
            url=f"/api/evidence/clips/{row.id}" if row.state == "complete" else None,
            expires_at=row.expires_at,
        )


class BufferOut(BaseModel):
    """One camera's pre-alarm buffer."""

    camera_id: str
    connected: bool
    seconds: float = Field(description="seconds of video held")
    bytes: int
    packets: int
    overflow_drops: int = Field(description="groups of pictures dropped to stay in memory bounds")
    spilled_bytes: int = Field(0, description="bytes held on disk (evidence.spill_directory)")
    last_error: str | None

    @classmethod
    def of(cls, state: PrebufferState) -> BufferOut:
        """The API view of a buffer."""
        return cls(
            camera_id=state.camera_id,
            connected=state.connected,
            seconds=round(state.seconds, 2),
            bytes=state.bytes,
            packets=state.packets,
            overflow_drops=state.overflow_drops,
            spilled_bytes=state.spilled_bytes,
            last_error=state.last_error,
        )


class ShortfallOut(BaseModel):
    """A school panic button that falls short of DB15/T 3968."""

    device_id: str
    name: str
    jurisdiction_path: str | None
    problems: list[str] = Field(description="no_address, no_coordinates, too_few_cameras")
    usable_cameras: int = Field(description="linked cameras that exist and have a stream")
    missing_cameras: list[str] = Field(description="linked ids that are not registered cameras")
    cameras_without_stream: list[str]

    @classmethod
    def of(cls, item: Shortfall) -> ShortfallOut:
        """The API view of a shortfall."""
        return cls(
            device_id=item.device_id,
            name=item.name,
            jurisdiction_path=item.jurisdiction_path,
            problems=list(item.problems),
            usable_cameras=item.usable_cameras,
            missing_cameras=list(item.missing_cameras),
            cameras_without_stream=list(item.cameras_without_stream),
        )
