"""Request and response bodies of the departments and department-task API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alarms.tasks import DEPARTMENT_KINDS, Task, current_stage, stage_due
from hub.departments.storage import DepartmentRecord, PhotoRow, TaskHistoryRow

__all__ = [
    "ContactIn",
    "DepartmentIn",
    "DepartmentOut",
    "DispatchIn",
    "MembersIn",
    "OverrideIn",
    "PhotoOut",
    "TaskActionIn",
    "TaskAlarmOut",
    "TaskDeliveryOut",
    "TaskDetailOut",
    "TaskHistoryOut",
    "TaskOut",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ContactIn(_In):
    """A person to call at a department."""

    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(default="", max_length=40)
    role: str = Field(default="", max_length=100, description="e.g. 值班民警, 分管领导.")


class DepartmentIn(_In):
    """A department: whom tasks go to."""

    name: str = Field(min_length=1, max_length=200, description="e.g. 白音席勒派出所.")
    kind: Literal[
        "town_office",
        "police_station",
        "education_bureau",
        "urban_management",
        "fire",
        "health",
        "other",
    ] = Field(description=f"One of {', '.join(DEPARTMENT_KINDS)}.")
    jurisdictions: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Codes of the jurisdictions the department serves (a subtree each).",
    )
    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)
    sinks: list[str] = Field(
        default_factory=list, max_length=5, description="Names of `departments.sinks` entries."
    )
    supervisor: str | None = Field(
        default=None, max_length=200, description="Who is told of a missed deadline first."
    )
    enabled: bool = True


class DepartmentOut(_Out):
    """A department as stored."""

    id: str
    name: str
    kind: str
    jurisdictions: list[str]
    contacts: list[dict[str, Any]]
    sinks: list[str]
    supervisor: str | None
    enabled: bool
    members: list[str] | None = Field(default=None, description="Shown to admins only.")

    @classmethod
    def of(cls, record: DepartmentRecord, members: list[str] | None = None) -> DepartmentOut:
        """Build from a stored department."""
        return cls(
            id=record.id,
            name=record.name,
            kind=record.kind,
            jurisdictions=list(record.jurisdictions),
            contacts=[dict(c) for c in record.contacts],
            sinks=list(record.sinks),
            supervisor=record.supervisor,
            enabled=record.enabled,
            members=members,
        )


class MembersIn(_In):
    """Who acts for a department: `user:<name>` and `key:<name>` actors."""

    members: list[str] = Field(max_length=200)


class DispatchIn(_In):
    """Dispatch an alarm to departments by hand."""

    departments: list[str] = Field(min_length=1, max_length=20)
    instructions: str = Field(default="", max_length=4000)


class OverrideIn(_In):
    """The center lets an alarm close without waiting for its tasks."""

    reason: str = Field(min_length=1, max_length=4000)


class TaskActionIn(_In):
    """The text of an answer or decision; where a send-back returns the task."""

    note: str | None = Field(default=None, max_length=4000)
    back_to: Literal["on_site", "reported_in"] | None = Field(
        default=None, description="send_back only: where the task goes back to (on_site)."
    )


class TaskOut(_Out):
    """One department task with its clock."""

    id: uuid.UUID
    alarm_id: uuid.UUID
    department_id: str
    department_name: str | None = None
    priority: int
    state: str
    instructions: str
    dispatched_at: datetime
    report_in_due: datetime
    on_site_due: datetime
    feedback_due: datetime
    reported_in_at: datetime | None
    on_site_at: datetime | None
    feedback_at: datetime | None
    finished_at: datetime | None
    feedback: str | None
    escalation_level: int = Field(description="0, 1 (supervisor told), 2 (center told).")
    sent_back: int
    missed: list[str] = Field(description="Stages done or escalated after their deadline.")
    stage: str | None = Field(description="What the department owes now.")
    due: datetime | None = Field(description="The deadline of that stage.")
    overdue: bool
    revision: int

    @classmethod
    def of(cls, task: Task, now: datetime, department_name: str | None = None) -> TaskOut:
        """Build from a task; `overdue` as of `now`."""
        stage = current_stage(task)
        due = stage_due(task, stage) if stage is not None else None
        return cls(
            id=task.id,
            alarm_id=task.alarm_id,
            department_id=task.department_id,
            department_name=department_name,
            priority=task.priority.level,
            state=task.state.value,
            instructions=task.instructions,
            dispatched_at=task.dispatched_at,
            report_in_due=task.report_in_due,
            on_site_due=task.on_site_due,
            feedback_due=task.feedback_due,
            reported_in_at=task.reported_in_at,
            on_site_at=task.on_site_at,
            feedback_at=task.feedback_at,
            finished_at=task.finished_at,
            feedback=task.feedback,
            escalation_level=task.escalation_level,
            sent_back=task.sent_back,
            missed=sorted(s.value for s in task.missed),
            stage=stage.value if stage else None,
            due=due,
            overdue=due is not None and now > due,
            revision=task.revision,
        )


class TaskHistoryOut(_Out):
    """One line of a task's history."""

    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    note: str | None
    details: dict[str, Any]
    revision: int

    @classmethod
    def of(cls, row: TaskHistoryRow) -> TaskHistoryOut:
        """Build from a stored history row."""
        return cls(
            at=row.at,
            actor=row.actor,
            action=row.action,
            from_state=row.from_state,
            to_state=row.to_state,
            note=row.note,
            details=dict(row.details),
            revision=row.revision,
        )


class PhotoOut(_Out):
    """A feedback photo (fetch its bytes from `url`)."""

    id: uuid.UUID
    task_id: uuid.UUID
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime
    url: str

    @classmethod
    def of(cls, row: PhotoRow) -> PhotoOut:
        """Build from stored photo metadata."""
        return cls(
            id=row.id,
            task_id=row.task_id,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
            uploaded_by=row.uploaded_by,
            uploaded_at=row.uploaded_at,
            url=f"/api/tasks/{row.task_id}/photos/{row.id}",
        )


class TaskAlarmOut(_Out):
    """What a department needs of the alarm: where, what, the SOP and the snapshots."""

    id: uuid.UUID
    type: str
    title: str
    sop: str
    priority: int
    state: str
    device_id: str
    jurisdiction: str | None
    opened_at: datetime
    location: dict[str, Any] | None
    snapshots: list[str] = Field(description="URLs of the alarm's snapshots.")


class TaskDeliveryOut(_Out):
    """The delivery of one task revision to one of the department's sinks."""

    sink: str
    revision: int
    state: str = Field(description="pending, delivering, delivered or dead")
    attempts: int
    last_error: str | None


class TaskDetailOut(_Out):
    """A task with its history, photos, deliveries and alarm details."""

    task: TaskOut
    history: list[TaskHistoryOut]
    photos: list[PhotoOut]
    deliveries: list[TaskDeliveryOut] = Field(description="Shown to the center only.")
    alarm: TaskAlarmOut
    allowed: list[str] = Field(description="Actions this caller may take now.")
