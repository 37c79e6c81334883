"""Department tasks: "the center blows the whistle, departments report in".

From one alarm the center dispatches tasks to the departments concerned (the
town office, the police station, the education bureau, ...). Each task has its
own lifecycle and its own clock:

==================  =====================================  ==================
action              allowed from                           result
==================  =====================================  ==================
report_in (报到)     dispatched                             reported_in
arrive              reported_in                            on_site
submit_feedback     on_site                                feedback_submitted
accept              feedback_submitted                     accepted
send_back           feedback_submitted                     on_site or
                                                           reported_in
escalate            dispatched, reported_in, on_site       same state, level+1
withdraw            any unfinished state                   withdrawn
note                any                                    same state
==================  =====================================  ==================

Deadlines (report-in, on-site, feedback) are counted from the dispatch and
stored on the task; a send-back gives a fresh on-site/feedback time from the
moment it was sent back. A missed deadline escalates to the department's
supervisor (level 1), then, if still missed `center_after` later, to the
center (level 2); reaching the next stage starts again at level 0. Every
change returns the next task (revision + 1) and exactly one history entry;
nothing here reads the clock or does I/O.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from alarms.models import Priority, require_utc
from alarms.task_sla import DEFAULT_TASK_SLA, TaskSlaPolicy

__all__ = [
    "DEPARTMENT_KINDS",
    "FINISHED_TASK_STATES",
    "OPEN_TASK_STATES",
    "InvalidTaskTransition",
    "Stage",
    "Task",
    "TaskAction",
    "TaskEscalation",
    "TaskHistoryEntry",
    "TaskState",
    "allowed_task_actions",
    "apply_task",
    "check_department_id",
    "check_task_escalation",
    "close_blockers",
    "current_stage",
    "dispatch_task",
    "escalate_task",
    "task_is_on_time",
]

#: What a department is; dispatch rules name these.
DEPARTMENT_KINDS: tuple[str, ...] = (
    "town_office",
    "police_station",
    "education_bureau",
    "urban_management",
    "fire",
    "health",
    "other",
)
_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_\-]{0,63}")
_MAX_TEXT = 4000
_MAX_ESCALATION = 2


class TaskState(StrEnum):
    """Where a department task is."""

    DISPATCHED = "dispatched"
    REPORTED_IN = "reported_in"
    ON_SITE = "on_site"
    FEEDBACK_SUBMITTED = "feedback_submitted"
    ACCEPTED = "accepted"
    WITHDRAWN = "withdrawn"


#: States in which the department still owes something.
OPEN_TASK_STATES: frozenset[TaskState] = frozenset(
    {TaskState.DISPATCHED, TaskState.REPORTED_IN, TaskState.ON_SITE}
)
#: States that let the alarm close.
FINISHED_TASK_STATES: frozenset[TaskState] = frozenset({TaskState.ACCEPTED, TaskState.WITHDRAWN})


class TaskAction(StrEnum):
    """What happened to a task; each history entry names one."""

    DISPATCH = "dispatch"
    REPORT_IN = "report_in"
    ARRIVE = "arrive"
    SUBMIT_FEEDBACK = "submit_feedback"
    ACCEPT = "accept"
    SEND_BACK = "send_back"
    ESCALATE = "escalate"
    WITHDRAW = "withdraw"
    NOTE = "note"


class Stage(StrEnum):
    """The step a department owes next, each with its own deadline."""

    REPORT_IN = "report_in"
    ON_SITE = "on_site"
    FEEDBACK = "feedback"


_STAGE_OF: dict[TaskState, Stage] = {
    TaskState.DISPATCHED: Stage.REPORT_IN,
    TaskState.REPORTED_IN: Stage.ON_SITE,
    TaskState.ON_SITE: Stage.FEEDBACK,
}


class InvalidTaskTransition(ValueError):
    """An action the task's current state does not allow."""

    def __init__(self, action: TaskAction, state: TaskState, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.state = state


def _check_text(value: str | None, name: str, *, required: bool, limit: int = _MAX_TEXT) -> None:
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if required and not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")


def check_department_id(value: str) -> str:
    """`value` if it is a department id (lower-case letters, digits, - and _), else raise."""
    if not isinstance(value, str) or not _ID_PATTERN.fullmatch(value):
        raise ValueError(f"invalid department id {value!r}: expected [a-z0-9][a-z0-9_-]{{0,63}}")
    return value


@dataclass(frozen=True, slots=True)
class Task:
    """One department's part of one alarm, with its clock and counters.

    `missed` names the stages done (or escalated) after their deadline;
    `sent_back` counts how often the center sent the feedback back.
    """

    id: uuid.UUID
    alarm_id: uuid.UUID
    department_id: str
    priority: Priority
    state: TaskState
    dispatched_at: datetime
    report_in_due: datetime
    on_site_due: datetime
    feedback_due: datetime
    jurisdiction_path: str | None = None
    instructions: str = ""
    reported_in_at: datetime | None = None
    on_site_at: datetime | None = None
    feedback_at: datetime | None = None
    finished_at: datetime | None = None
    feedback: str | None = None
    escalation_level: int = 0
    next_escalation_at: datetime | None = None
    sent_back: int = 0
    missed: frozenset[Stage] = frozenset()
    revision: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.id, uuid.UUID) or not isinstance(self.alarm_id, uuid.UUID):
            raise ValueError("task id and alarm_id must be UUIDs")
        check_department_id(self.department_id)
        if not isinstance(self.priority, Priority):
            raise ValueError("priority must be a Priority")
        object.__setattr__(self, "state", TaskState(self.state))
        for name in ("dispatched_at", "report_in_due", "on_site_due", "feedback_due"):
            require_utc(getattr(self, name), name)
        for name in (
            "reported_in_at",
            "on_site_at",
            "feedback_at",
            "finished_at",
            "next_escalation_at",
        ):
            value = getattr(self, name)
            if value is not None:
                require_utc(value, name)
        _check_text(self.instructions, "instructions", required=False)
        _check_text(self.feedback, "feedback", required=False)
        _check_text(self.jurisdiction_path, "jurisdiction_path", required=False, limit=256)
        if not 0 <= self.escalation_level <= _MAX_ESCALATION:
            raise ValueError(f"escalation_level must be 0..{_MAX_ESCALATION}")
        if self.sent_back < 0 or self.revision < 1:
            raise ValueError("sent_back must be >= 0 and revision >= 1")
        object.__setattr__(self, "missed", frozenset(Stage(s) for s in self.missed))
        if (self.state in FINISHED_TASK_STATES) != (self.finished_at is not None):
            raise ValueError("finished_at is set exactly when the task is accepted or withdrawn")

    @property
    def is_finished(self) -> bool:
        """True once accepted or withdrawn: the task no longer holds the alarm open."""
        return self.state in FINISHED_TASK_STATES


def current_stage(task: Task) -> Stage | None:
    """The stage the department owes now (None when it is the center's turn or done)."""
    return _STAGE_OF.get(task.state)


def stage_due(task: Task, stage: Stage) -> datetime:
    """The deadline of `stage` as stored on the task."""
    return {
        Stage.REPORT_IN: task.report_in_due,
        Stage.ON_SITE: task.on_site_due,
        Stage.FEEDBACK: task.feedback_due,
    }[stage]


@dataclass(frozen=True, slots=True)
class TaskHistoryEntry:
    """One line of a task's append-only history."""

    task_id: uuid.UUID
    alarm_id: uuid.UUID
    at: datetime
    actor: str
    action: TaskAction
    from_state: TaskState | None
    to_state: TaskState
    note: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 1

    def __post_init__(self) -> None:
        require_utc(self.at, "at")
        _check_text(self.actor, "actor", required=True, limit=128)
        object.__setattr__(self, "action", TaskAction(self.action))
        object.__setattr__(self, "to_state", TaskState(self.to_state))
        if self.from_state is not None:
            object.__setattr__(self, "from_state", TaskState(self.from_state))
        elif self.action is not TaskAction.DISPATCH:
            raise ValueError("only a 'dispatch' entry may have no from_state")
        _check_text(self.note, "note", required=False)
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))


def dispatch_task(
    *,
    task_id: uuid.UUID,
    alarm_id: uuid.UUID,
    department_id: str,
    priority: Priority,
    at: datetime,
    actor: str,
    policy: TaskSlaPolicy = DEFAULT_TASK_SLA,
    jurisdiction_path: str | None = None,
    instructions: str = "",
    details: Mapping[str, Any] | None = None,
) -> tuple[Task, TaskHistoryEntry]:
    """A new task (state dispatched, deadlines from `at`) and its first history entry."""
    require_utc(at, "at")
    target = policy.target(priority)
    task = Task(
        id=task_id,
        alarm_id=alarm_id,
        department_id=department_id,
        priority=priority,
        state=TaskState.DISPATCHED,
        dispatched_at=at,
        report_in_due=at + target.report_in,
        on_site_due=at + target.on_site,
        feedback_due=at + target.feedback,
        jurisdiction_path=jurisdiction_path,
        instructions=instructions,
    )
    entry = TaskHistoryEntry(
        task_id=task_id,
        alarm_id=alarm_id,
        at=at,
        actor=actor,
        action=TaskAction.DISPATCH,
        from_state=None,
        to_state=TaskState.DISPATCHED,
        note=instructions or None,
        details={
            "department_id": department_id,
            "report_in_due": task.report_in_due.isoformat(),
            "on_site_due": task.on_site_due.isoformat(),
            "feedback_due": task.feedback_due.isoformat(),
            **(details or {}),
        },
        revision=1,
    )
    return task, entry


_Changes = dict[str, Any]
_Handler = Callable[[Task, datetime, str | None, TaskState | None, TaskSlaPolicy], _Changes]
_ALLOWED: dict[TaskAction, frozenset[TaskState]] = {
    TaskAction.REPORT_IN: frozenset({TaskState.DISPATCHED}),
    TaskAction.ARRIVE: frozenset({TaskState.REPORTED_IN}),
    TaskAction.SUBMIT_FEEDBACK: frozenset({TaskState.ON_SITE}),
    TaskAction.ACCEPT: frozenset({TaskState.FEEDBACK_SUBMITTED}),
    TaskAction.SEND_BACK: frozenset({TaskState.FEEDBACK_SUBMITTED}),
    TaskAction.WITHDRAW: OPEN_TASK_STATES | {TaskState.FEEDBACK_SUBMITTED},
    TaskAction.NOTE: frozenset(TaskState),
}
#: Actions a department may take on its own task; the rest belong to the center.
DEPARTMENT_ACTIONS: frozenset[TaskAction] = frozenset(
    {TaskAction.REPORT_IN, TaskAction.ARRIVE, TaskAction.SUBMIT_FEEDBACK, TaskAction.NOTE}
)
#: Actions the center takes.
CENTER_ACTIONS: frozenset[TaskAction] = frozenset(
    {TaskAction.ACCEPT, TaskAction.SEND_BACK, TaskAction.WITHDRAW, TaskAction.NOTE}
)


def _stage_done(task: Task, stage: Stage, at: datetime) -> _Changes:
    """Leaving `stage` at `at`: remember a late finish, end that stage's escalation."""
    changes: _Changes = {"escalation_level": 0, "next_escalation_at": None}
    if at > stage_due(task, stage):
        changes["missed"] = task.missed | {stage}
    return changes


def _report_in(task: Task, at: datetime, *_: Any) -> _Changes:
    return {
        **_stage_done(task, Stage.REPORT_IN, at),
        "state": TaskState.REPORTED_IN,
        "reported_in_at": at,
    }


def _arrive(task: Task, at: datetime, *_: Any) -> _Changes:
    return {**_stage_done(task, Stage.ON_SITE, at), "state": TaskState.ON_SITE, "on_site_at": at}


def _submit_feedback(task: Task, at: datetime, note: str | None, *_: Any) -> _Changes:
    if not (note and note.strip()):
        raise ValueError("feedback needs text saying what was done")
    changes = _stage_done(task, Stage.FEEDBACK, at)
    changes.update(state=TaskState.FEEDBACK_SUBMITTED, feedback=note)
    if task.feedback_at is None:
        changes["feedback_at"] = at
    return changes


def _accept(task: Task, at: datetime, *_: Any) -> _Changes:
    return {"state": TaskState.ACCEPTED, "finished_at": at}


def _send_back(
    task: Task,
    at: datetime,
    note: str | None,
    back_to: TaskState | None,
    policy: TaskSlaPolicy,
) -> _Changes:
    if not (note and note.strip()):
        raise ValueError("sending feedback back needs a reason")
    back_to = back_to or TaskState.ON_SITE
    if back_to not in (TaskState.ON_SITE, TaskState.REPORTED_IN):
        raise ValueError("feedback is sent back to on_site or reported_in")
    target = policy.target(task.priority)
    # The department gets the same time again, counted from the send-back.
    changes: _Changes = {
        "state": back_to,
        "sent_back": task.sent_back + 1,
        "feedback_due": at + (target.feedback - target.on_site),
    }
    if back_to is TaskState.REPORTED_IN:
        changes["on_site_due"] = at + (target.on_site - target.report_in)
        changes["feedback_due"] = at + (target.feedback - target.report_in)
    return changes


def _withdraw(task: Task, at: datetime, note: str | None, *_: Any) -> _Changes:
    if not (note and note.strip()):
        raise ValueError("withdrawing a task needs a reason")
    return {"state": TaskState.WITHDRAWN, "finished_at": at, "next_escalation_at": None}


def _note(task: Task, at: datetime, note: str | None, *_: Any) -> _Changes:
    if not (note and note.strip()):
        raise ValueError("a note needs text")
    return {}


_HANDLERS: dict[TaskAction, _Handler] = {
    TaskAction.REPORT_IN: _report_in,
    TaskAction.ARRIVE: _arrive,
    TaskAction.SUBMIT_FEEDBACK: _submit_feedback,
    TaskAction.ACCEPT: _accept,
    TaskAction.SEND_BACK: _send_back,
    TaskAction.WITHDRAW: _withdraw,
    TaskAction.NOTE: _note,
}


def allowed_task_actions(task: Task) -> frozenset[TaskAction]:
    """Actions whose state precondition `task` meets."""
    return frozenset(a for a, states in _ALLOWED.items() if task.state in states)


def _entry(
    task: Task,
    updated: Task,
    action: TaskAction,
    actor: str,
    at: datetime,
    note: str | None,
    details: Mapping[str, Any],
) -> TaskHistoryEntry:
    return TaskHistoryEntry(
        task_id=task.id,
        alarm_id=task.alarm_id,
        at=at,
        actor=actor,
        action=action,
        from_state=task.state,
        to_state=updated.state,
        note=note,
        details=details,
        revision=updated.revision,
    )


def apply_task(
    task: Task,
    action: TaskAction | str,
    actor: str,
    at: datetime,
    *,
    note: str | None = None,
    back_to: TaskState | str | None = None,
    policy: TaskSlaPolicy = DEFAULT_TASK_SLA,
    details: Mapping[str, Any] | None = None,
) -> tuple[Task, TaskHistoryEntry]:
    """Apply `action` by `actor` at `at`; return the next task and its history entry.

    Raises `InvalidTaskTransition` when the state forbids the action and
    `ValueError` when a needed argument (feedback text, a reason) is missing.
    """
    action = TaskAction(action)
    require_utc(at, "at")
    if action in (TaskAction.DISPATCH, TaskAction.ESCALATE):
        raise ValueError(f"{action.value} is not applied with apply_task")
    allowed = _ALLOWED[action]
    if task.state not in allowed:
        verb = action.value.replace("_", " ")
        state = task.state.value.replace("_", " ")
        raise InvalidTaskTransition(action, task.state, f"cannot {verb} a task that is {state}")
    if back_to is not None and action is not TaskAction.SEND_BACK:
        raise ValueError(f"{action.value} does not take back_to")
    target_state = TaskState(back_to) if back_to is not None else None
    changes = _HANDLERS[action](task, at, note, target_state, policy)
    changes["revision"] = task.revision + 1
    updated = dataclasses.replace(task, **changes)
    entry_details: dict[str, Any] = dict(details or {})
    if action is TaskAction.SEND_BACK:
        entry_details.update(
            sent_back=updated.sent_back, feedback_due=updated.feedback_due.isoformat()
        )
    missed = updated.missed - task.missed
    if missed:
        entry_details["late"] = sorted(stage.value for stage in missed)
    return updated, _entry(task, updated, action, actor, at, note, entry_details)


@dataclass(frozen=True, slots=True)
class TaskEscalation:
    """A missed task deadline and who is told: 1 the department's supervisor, 2 the center."""

    task_id: uuid.UUID
    stage: Stage
    level: int
    at: datetime
    overdue_by: timedelta
    next_at: datetime | None

    @property
    def to(self) -> str:
        """Who is told at this level."""
        return "supervisor" if self.level == 1 else "center"


def check_task_escalation(
    task: Task, now: datetime, policy: TaskSlaPolicy = DEFAULT_TASK_SLA
) -> TaskEscalation | None:
    """The escalation `task` needs at `now`, or None.

    Level 1 as soon as the current stage's deadline has passed; level 2 once
    `center_after` has passed since level 1 with the stage still not done.
    """
    require_utc(now, "now")
    stage = current_stage(task)
    if stage is None or task.escalation_level >= _MAX_ESCALATION:
        return None
    due = stage_due(task, stage)
    if now < due:
        return None
    if task.escalation_level == 1 and (
        task.next_escalation_at is None or now < task.next_escalation_at
    ):
        return None
    level = task.escalation_level + 1
    next_at = now + policy.center_after if level < _MAX_ESCALATION else None
    return TaskEscalation(task.id, stage, level, now, now - due, next_at)


def escalate_task(
    task: Task, escalation: TaskEscalation, *, actor: str = "system:tasks"
) -> tuple[Task, TaskHistoryEntry]:
    """Apply `escalation` to `task`: level + 1, the stage counted as missed."""
    if escalation.task_id != task.id:
        raise ValueError("the escalation belongs to another task")
    updated = dataclasses.replace(
        task,
        escalation_level=escalation.level,
        next_escalation_at=escalation.next_at,
        missed=task.missed | {escalation.stage},
        revision=task.revision + 1,
    )
    details = {
        "stage": escalation.stage.value,
        "level": escalation.level,
        "to": escalation.to,
        "overdue_s": int(escalation.overdue_by.total_seconds()),
    }
    entry = _entry(task, updated, TaskAction.ESCALATE, actor, escalation.at, None, details)
    return updated, entry


def close_blockers(tasks: Iterable[Task]) -> list[Task]:
    """Tasks that keep their alarm from closing: every one not accepted or withdrawn."""
    return [task for task in tasks if not task.is_finished]


def task_is_on_time(task: Task, now: datetime) -> bool:
    """True when no stage was missed and the current stage's deadline has not passed."""
    if task.missed:
        return False
    stage = current_stage(task)
    return stage is None or now <= stage_due(task, stage)
