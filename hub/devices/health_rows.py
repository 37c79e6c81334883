"""The rows device health is stored and read as: probe samples, transitions, evidence
snapshots, baselines, patrol runs, and what the KPIs read (the device projections a
patrol and the health API read, `PatrolTarget` and `DeviceHealthRow`, are the device
storage's)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "BaselineRow",
    "EvidenceImage",
    "HealthSampleRow",
    "PatrolRunRow",
    "ProbeCounts",
    "StateChangeRow",
    "StoredHealth",
    "TransitionRow",
]


@dataclass(frozen=True, slots=True)
class HealthSampleRow:
    """One probe of one camera as stored in `health_samples`."""

    time: datetime
    device_id: str
    ok: bool
    observed: str
    failure: str | None = None
    error: str | None = None
    url: str | None = None
    open_latency_ms: float | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frames: int = 0
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    evidence_id: uuid.UUID | None = None
    patrol_id: int | None = None


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """A health state change with its reason (a `device_health_history` row)."""

    device_id: str
    at: datetime
    from_state: str
    to_state: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    #: The reason as a code with parameters, for a console to say in its language.
    reason_code: str | None = None
    reason_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvidenceImage:
    """A snapshot kept as evidence (JPEG)."""

    id: uuid.UUID
    device_id: str
    data: bytes
    taken_at: datetime
    source: str = "patrol"
    content_type: str = "image/jpeg"


@dataclass(frozen=True, slots=True)
class BaselineRow:
    """A camera's learned picture baseline: usual sharpness and its scene reference."""

    device_id: str
    sharpness: float | None
    samples: int
    reference_png: bytes | None


@dataclass(frozen=True, slots=True)
class StateChangeRow:
    """One device's state change, for KPI computation."""

    device_id: str
    at: datetime
    state: str


@dataclass(frozen=True, slots=True)
class ProbeCounts:
    """How many probes a device had, how many got pictures, how many were fault-free."""

    probes: int
    ok: int
    clean: int


@dataclass(frozen=True, slots=True)
class PatrolRunRow:
    """A patrol pass and how far it got."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    total: int
    done: int
    failed: int
    degraded: int
    trigger: str


@dataclass(frozen=True, slots=True)
class StoredHealth:
    """A device's stored health: the state the health machine continues from."""

    device_id: str
    health: str
    since: datetime | None
    reason: str | None
