"""Request and response bodies of the drill API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DrillIn", "DrillOut", "DrillStageOut"]


class DrillIn(BaseModel):
    """What to drill: how many presses, on which buttons, against which SLO."""

    model_config = ConfigDict(extra="forbid")

    presses: int = Field(10, ge=1, le=200, description="Presses, round robin over the buttons.")
    devices: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Panic buttons (registry or MQTT ids); empty = every registered button.",
    )
    slo_s: float = Field(2.0, gt=0, le=60, description="Each stage's slowest press must be within.")
    interval_s: float = Field(0.5, ge=0, le=60, description="Pause between presses.")
    timeout_s: float = Field(10.0, gt=0, le=120, description="Give up on a stage after this.")


class DrillStageOut(BaseModel):
    """Latency of one stage (publish → committed, → alarm stream, → a sink)."""

    stage: str
    count: int
    missing: int
    p50_s: float | None
    p99_s: float | None
    max_s: float | None
    passed: bool


class DrillOut(BaseModel):
    """A drill's report."""

    started_at: str
    slo_s: float
    passed: bool
    presses: int
    stages: list[DrillStageOut]
    drill_sinks: list[str]
    sinks_not_for_drills: list[str]
    samples: list[dict[str, object]]
