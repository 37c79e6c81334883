"""Configuration of department tasks: deadlines, dispatch rules, delivery, uploads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alarms.task_rules import DispatchRule
from alarms.task_sla import DEFAULT_TASK_SLA, TaskSlaPolicy
from hub.alarms.config import SinkSettings

__all__ = ["DEFAULT_DISPATCH_RULES", "DepartmentSettings"]

#: A school's panic button: the area's police station, the education bureau and
#: the town office, each chosen by the alarm's jurisdiction, at once.
DEFAULT_DISPATCH_RULES: tuple[DispatchRule, ...] = (
    DispatchRule(
        name="school_panic",
        alarm_types=["panic"],
        kinds=["police_station", "education_bureau", "town_office"],
        auto=True,
        instructions="校园一键报警：请立即报到并赶赴现场，反馈处置情况。",
    ),
)


class DepartmentSettings(BaseModel):
    """Department tasks ("the center blows the whistle, departments report in")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sla: TaskSlaPolicy | None = Field(
        default=None,
        description="Report-in, on-site and feedback deadlines per alarm priority; empty = "
        "P1 5 min / 20 min / 2 h, P2 15 min / 1 h / 4 h, P3 1 h / 4 h / 24 h, "
        "P4 4 h / 24 h / 72 h, the center told 10 min after the supervisor.",
    )
    rules: list[DispatchRule] | None = Field(
        default=None,
        description="Which department kinds an alarm type goes to, by jurisdiction; empty = "
        "a school panic press goes at once to the area's police station, the education "
        "bureau and the town office.",
    )
    sinks: list[SinkSettings] = Field(
        default_factory=list,
        description="Delivery targets departments name (their own systems): each task change "
        "for a department goes to its sinks through the outbox.",
    )
    center_sinks: list[str] = Field(
        default_factory=list,
        description="Sinks (of `sinks`) told when an overdue task reaches the center (level 2).",
    )
    check_s: float = Field(
        default=5.0, gt=0, le=600, description="How often task deadlines are checked."
    )
    max_photo_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=50 * 1024 * 1024,
        description="Largest feedback photo accepted.",
    )

    def task_sla(self) -> TaskSlaPolicy:
        """The deadlines in force."""
        return self.sla or DEFAULT_TASK_SLA

    def dispatch_rules(self) -> list[DispatchRule]:
        """The dispatch rules in force."""
        return list(DEFAULT_DISPATCH_RULES) if self.rules is None else list(self.rules)

    @model_validator(mode="after")
    def _known_sinks(self) -> DepartmentSettings:
        names = [sink.name for sink in self.sinks]
        if len(names) != len(set(names)):
            raise ValueError("department sink names must be unique")
        unknown = sorted(set(self.center_sinks) - set(names))
        if unknown:
            raise ValueError(f"center_sinks names unknown sinks {unknown}")
        return self
