"""Configuration of evidence clips: buffer depth, post-roll, retention, limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EvidenceSettings"]


class EvidenceSettings(BaseModel):
    """Pre-alarm buffers of cameras linked to panic buttons and clips cut on alarm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description="Buffer the cameras linked to alarm points (and cameras tagged "
        "`prebuffer`) and cut a clip per linked camera when an alarm opens.",
    )
    prebuffer_s: float = Field(
        30.0, ge=1, le=300, description="Seconds of video kept before an alarm (DB15/T 3968: 30)."
    )
    postroll_s: float = Field(
        30.0, ge=0, le=600, description="Seconds recorded after the alarm into the same clip."
    )
    retention_days: int = Field(
        90,
        ge=1,
        le=3650,
        description="Days a clip is kept (independent of event retention; >= 90 for key targets).",
    )
    max_buffer_mib: int = Field(
        12,
        ge=1,
        le=512,
        description="Memory one camera's buffer may hold at most; the oldest pictures go first.",
    )
    spill_directory: str | None = Field(
        None,
        max_length=256,
        description="Keep each buffer's complete groups of pictures in files under this "
        "directory (relative to the data directory) instead of memory; memory then holds "
        "only the group being received. Unset: buffers stay in memory.",
    )
    spill_max_mib: int = Field(
        24,
        ge=1,
        le=4096,
        description="Disk one camera's spilled buffer may use at most; the oldest pictures "
        "go first (35 s at 2 Mbit/s is about 9 MiB).",
    )
    max_clip_mib: int = Field(
        256, ge=1, le=4096, description="A clip larger than this is cut short (a runaway stream)."
    )
    directory: str = Field(
        "evidence", description="Where clips are written, relative to the data directory."
    )
    refresh_s: float = Field(
        60.0, ge=1, le=3600, description="How often the set of buffered cameras is re-read."
    )
    public_url: str | None = Field(
        None,
        max_length=512,
        pattern=r"^https?://[^\s]+$",
        description="How receivers reach this hub (https://hub.example.org), for the clip "
        "links in alarm deliveries; by default http://<http.host>:<http.port>.",
    )
    prebuffer_tag: str = Field(
        "prebuffer", description="A camera with this tag is buffered even when no alarm links it."
    )
