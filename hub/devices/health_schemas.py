"""Schemas of device health, patrol progress and KPI answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "DeviceHealthOut",
    "HealthSummaryOut",
    "KpiOut",
    "KpiRowOut",
    "PatrolOut",
    "PatrolRunOut",
    "SampleOut",
    "TransitionOut",
    "VerdictOut",
]


class VerdictOut(BaseModel):
    """One video-quality check: the number measured, the line it was held to, the verdict."""

    check: str
    ok: bool
    score: float
    threshold: float
    explanation: str
    judged: bool = True


class SampleOut(BaseModel):
    """The newest probe of the camera."""

    time: datetime
    ok: bool = Field(description="The probe got pictures.")
    observed: str = Field(description="What this probe alone said: online, degraded, offline.")
    failure: str | None
    error: str | None
    url: str | None = Field(description="The probed URL, without credentials.")
    open_latency_ms: float | None
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    frames: int
    faults: list[str]
    verdicts: list[VerdictOut]
    evidence_url: str | None = Field(description="The snapshot taken as evidence, if any.")


class TransitionOut(BaseModel):
    """A health state change and why it happened."""

    at: datetime
    from_state: str
    to_state: str
    reason: str
    evidence_url: str | None
    reason_code: str | None = Field(
        default=None,
        description="The reason as a code (vqd.blur, probe.timeout, heartbeat.missed, ...) "
        "for a console to say in its language; empty for reasons stored without one.",
    )
    reason_params: dict[str, Any] = Field(
        default_factory=dict, description="The values the reason code's text names."
    )


class LoginOut(BaseModel):
    """Where a camera's stored login stands (refused logins by any protocol)."""

    state: str = Field(description="ok, failing (refused, still tried) or auth_failed.")
    refusals: int = Field(description="Refused logins in a row since it last worked.")
    last_refused_at: datetime | None
    last_source: str | None = Field(description="Who was refused last: rtsp_probe, onvif, ...")
    retry_at: datetime | None = Field(
        description="auth_failed: when the login is tried next (or at once when it is changed)."
    )


class DeviceHealthOut(BaseModel):
    """A device's health: state, since when, why, the last probe, recent transitions."""

    device_id: str
    name: str
    kind: str
    health: str
    since: datetime | None
    reason: str | None
    reason_code: str | None = Field(
        default=None,
        description="The reason as a code (vqd.blur, probe.timeout, heartbeat.missed, ...) "
        "for a console to say in its language; empty for reasons stored without one.",
    )
    reason_params: dict[str, Any] = Field(
        default_factory=dict, description="The values the reason code's text names."
    )
    last_probe_at: datetime | None
    last_sample: SampleOut | None
    transitions: list[TransitionOut]
    login: LoginOut | None = Field(
        default=None, description="The stored login's budget; empty for devices without one."
    )


class HealthSummaryOut(BaseModel):
    """How many devices are in each health state."""

    jurisdiction: str | None
    total: int
    by_state: dict[str, int]


class PatrolRunOut(BaseModel):
    """One patrol pass and how far it got."""

    run_id: int | None
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    running: bool
    total: int
    done: int
    failed: int
    degraded: int


class PatrolOut(BaseModel):
    """The running pass (if any) and the latest passes."""

    enabled: bool
    interval_s: float
    current: PatrolRunOut | None
    recent: list[PatrolRunOut]


class KpiRowOut(BaseModel):
    """A jurisdiction node's KPI over its whole subtree (rates as fractions 0..1)."""

    code: str | None
    name: str
    path: str | None
    devices: int
    online_rate: float | None
    intact_rate: float | None
    online_s: float
    intact_s: float
    degraded_s: float
    offline_s: float
    unknown_s: float
    known_s: float
    probes: int
    ok_probes: int
    probe_success_rate: float | None


class KpiOut(BaseModel):
    """Online and intact rate of a node and its children for one reporting day or month."""

    period: str
    start: datetime
    end: datetime
    until: datetime
    zone: str
    node: KpiRowOut
    children: list[KpiRowOut]
