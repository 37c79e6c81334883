"""Dispatch by rule: which department of each kind serves an alarm's jurisdiction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alarms.tasks import DEPARTMENT_KINDS

__all__ = ["DepartmentRef", "DispatchRule", "departments_for_rule"]

_MAX_TEXT = 4000


@dataclass(frozen=True, slots=True)
class DepartmentRef:
    """What dispatch by rule needs to know of a department."""

    id: str
    kind: str
    jurisdiction_paths: tuple[str, ...]
    enabled: bool = True


class DispatchRule(BaseModel):
    """Which department kinds an alarm type is dispatched to, by jurisdiction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_\-]{1,64}$", description="Rule name (in history).")
    alarm_types: list[str] = Field(
        min_length=1, description="Alarm types this rule dispatches (e.g. panic)."
    )
    kinds: list[str] = Field(
        min_length=1, description=f"Department kinds to dispatch to: {', '.join(DEPARTMENT_KINDS)}."
    )
    auto: bool = Field(
        default=False, description="Dispatch as soon as the alarm opens (else on request)."
    )
    include_drills: bool = Field(default=False, description="Also dispatch drill alarms.")
    instructions: str = Field(default="", max_length=_MAX_TEXT, description="Text for the task.")

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(DEPARTMENT_KINDS))
        if unknown:
            raise ValueError(f"unknown department kinds {unknown}; one of {DEPARTMENT_KINDS}")
        return value


def departments_for_rule(
    rule: DispatchRule, jurisdiction_path: str | None, departments: Sequence[DepartmentRef]
) -> list[str]:
    """For each kind of `rule`, the department serving `jurisdiction_path` most closely.

    The department whose served jurisdiction is the longest prefix of the
    alarm's path wins (a town's police station before the district's); a
    kind no department serves there is skipped.
    """
    if jurisdiction_path is None:
        return []
    chosen: list[str] = []
    for kind in rule.kinds:
        best: tuple[int, str] | None = None
        for department in departments:
            if department.kind != kind or not department.enabled:
                continue
            for served in department.jurisdiction_paths:
                if jurisdiction_path.startswith(served):
                    candidate = (len(served), department.id)
                    if best is None or candidate[0] > best[0]:
                        best = candidate
        if best is not None and best[1] not in chosen:
            chosen.append(best[1])
    return chosen
