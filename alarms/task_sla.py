"""Department task deadlines per alarm priority, and when a missed one reaches the center."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alarms.models import Priority

__all__ = ["DEFAULT_TASK_SLA", "TaskSlaPolicy", "TaskSlaTarget"]

_PositiveDuration = Annotated[timedelta, Field(gt=timedelta(0))]


class TaskSlaTarget(BaseModel):
    """How long a department has, from dispatch, to report in, be on site and feed back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    report_in: _PositiveDuration = Field(description="Dispatch until the department reports in.")
    on_site: _PositiveDuration = Field(description="Dispatch until the department is on site.")
    feedback: _PositiveDuration = Field(description="Dispatch until the department feeds back.")

    def model_post_init(self, context: Any, /) -> None:
        """Deadlines follow the lifecycle: report in, then on site, then feedback."""
        if not self.report_in <= self.on_site <= self.feedback:
            raise ValueError("deadlines must satisfy report_in <= on_site <= feedback")


def _default_task_targets() -> dict[int, TaskSlaTarget]:
    minutes = timedelta(minutes=1)
    return {
        1: TaskSlaTarget(report_in=5 * minutes, on_site=20 * minutes, feedback=120 * minutes),
        2: TaskSlaTarget(report_in=15 * minutes, on_site=60 * minutes, feedback=240 * minutes),
        3: TaskSlaTarget(report_in=60 * minutes, on_site=240 * minutes, feedback=1440 * minutes),
        4: TaskSlaTarget(report_in=240 * minutes, on_site=1440 * minutes, feedback=4320 * minutes),
    }


class TaskSlaPolicy(BaseModel):
    """Per-priority task deadlines and when a missed one reaches the center."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[int, TaskSlaTarget] = Field(
        default_factory=_default_task_targets,
        description="Deadlines per alarm priority 1..4; all four levels must be given.",
    )
    center_after: _PositiveDuration = Field(
        default=timedelta(minutes=10),
        description="After the supervisor was told of a missed deadline, tell the center "
        "this long later if it is still missed.",
    )

    @field_validator("targets")
    @classmethod
    def _all_levels(cls, value: dict[int, TaskSlaTarget]) -> dict[int, TaskSlaTarget]:
        if set(value) != {1, 2, 3, 4}:
            raise ValueError(f"targets must name priorities 1, 2, 3 and 4, got {sorted(value)}")
        return value

    def target(self, priority: Priority) -> TaskSlaTarget:
        """The deadlines for `priority`."""
        return self.targets[priority.level]


#: P1: report in 5 min, on site 20 min, feedback 2 h; P4: 4 h / 24 h / 72 h.
DEFAULT_TASK_SLA = TaskSlaPolicy()
