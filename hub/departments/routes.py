"""Departments and department tasks: dispatch, lanes, department answers, photos, reports.

Who may do what: admins keep the departments and their members; operators
(the center) dispatch, accept, send back, withdraw and override; a
`department` user or API key sees only the tasks dispatched to its own
department inside its jurisdiction scope, and reports in, arrives and feeds
back. Anything outside what the caller may see answers 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from alarms.models import AlarmCategory
from alarms.tasks import (
    CENTER_ACTIONS,
    DEPARTMENT_ACTIONS,
    InvalidTaskTransition,
    Task,
    allowed_task_actions,
)
from hub.alarms.storage import StoredAlarm
from hub.api.deps import get_departments
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, not_found, require
from hub.clock import utcnow
from hub.departments.report import (
    build_dispatch_report,
    dispatch_csv,
    dispatch_xlsx,
    parse_dispatch_period,
)
from hub.departments.schemas import (
    DepartmentIn,
    DepartmentOut,
    DispatchIn,
    MembersIn,
    OverrideIn,
    PhotoOut,
    TaskActionIn,
    TaskAlarmOut,
    TaskDeliveryOut,
    TaskDetailOut,
    TaskHistoryOut,
    TaskOut,
)
from hub.departments.service import (
    DepartmentError,
    DepartmentService,
    TaskConflict,
    TaskNotFound,
)
from hub.departments.storage import DepartmentRecord

__all__ = ["TaskActionName", "router"]

router = APIRouter(tags=["departments"])

Admin = Annotated[Principal, Depends(require())]
Center = Annotated[Principal, Depends(require(Role.OPERATOR))]
CenterReader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DISPATCHER))]
TaskReader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DISPATCHER, Role.DEPARTMENT))]
TaskActor = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DEPARTMENT))]
DepartmentsReader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.DEPARTMENT))]
ReportReader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.AUDITOR))]
Service = Annotated[DepartmentService, Depends(get_departments)]
_PHOTO_LIMIT_HEADER = "content-length"


class TaskActionName(StrEnum):
    """Actions on a task through the API."""

    REPORT_IN = "report_in"
    ARRIVE = "arrive"
    SUBMIT_FEEDBACK = "submit_feedback"
    ACCEPT = "accept"
    SEND_BACK = "send_back"
    WITHDRAW = "withdraw"
    NOTE = "note"


def _visible(principal: Principal) -> Callable[[StoredAlarm], bool]:
    def visible(stored: StoredAlarm) -> bool:
        if (
            stored.alarm.category is AlarmCategory.MAINTENANCE
            and principal.role is Role.MAINTENANCE
        ):
            return False
        return principal.can_see(stored.jurisdiction_path)

    return visible


async def _names(service: DepartmentService) -> dict[str, str]:
    return {d.id: d.name for d in await service.departments()}


def _task_out(task: Task, names: dict[str, str]) -> TaskOut:
    return TaskOut.of(task, utcnow(), names.get(task.department_id))


# -- departments ---------------------------------------------------------------


@router.get("/api/departments", response_model=list[DepartmentOut])
async def list_departments(principal: DepartmentsReader, service: Service) -> list[DepartmentOut]:
    """Every department (the center), or only the caller's own (a department)."""
    records = await service.departments()
    if principal.role is Role.DEPARTMENT:
        own = await service.department_of(principal)
        return [DepartmentOut.of(r) for r in records if r.id == own]
    if principal.role is Role.ADMIN:
        return [DepartmentOut.of(r, await service.members(r.id)) for r in records]
    return [DepartmentOut.of(r) for r in records]


@router.put("/api/departments/{department_id}", response_model=DepartmentOut)
async def put_department(
    department_id: str, body: DepartmentIn, principal: Admin, service: Service
) -> DepartmentOut:
    """Create or replace a department."""
    record = DepartmentRecord(
        id=department_id,
        name=body.name,
        kind=body.kind,
        jurisdictions=tuple(dict.fromkeys(body.jurisdictions)),
        contacts=tuple(c.model_dump() for c in body.contacts),
        sinks=tuple(dict.fromkeys(body.sinks)),
        supervisor=body.supervisor,
        enabled=body.enabled,
    )
    try:
        stored = await service.save_department(principal.actor, record, principal.remote_addr)
    except (DepartmentError, ValueError) as exc:
        raise Problem(422, "Invalid department", str(exc)) from exc
    return DepartmentOut.of(stored, await service.members(department_id))


@router.put("/api/departments/{department_id}/members", response_model=list[str])
async def put_members(
    department_id: str, body: MembersIn, principal: Admin, service: Service
) -> list[str]:
    """Make these users and API keys (`user:<name>`, `key:<name>`) act for the department."""
    try:
        return await service.set_members(
            principal.actor, department_id, body.members, principal.remote_addr
        )
    except DepartmentError as exc:
        raise Problem(422, "Invalid members", str(exc)) from exc
    except TaskNotFound as exc:
        raise not_found("department") from exc


# -- an alarm's tasks (the center) ---------------------------------------------------


async def _visible_alarm(
    service: DepartmentService, principal: Principal, alarm_id: uuid.UUID
) -> StoredAlarm:
    stored = await service.stored_alarm(alarm_id)
    if stored is None or not _visible(principal)(stored):
        raise not_found("alarm")
    return stored


@router.get("/api/tasks/alarms/{alarm_id}", response_model=list[TaskOut])
async def alarm_tasks(
    alarm_id: uuid.UUID, principal: CenterReader, service: Service
) -> list[TaskOut]:
    """The alarm's tasks: one lane per department, each with its clock."""
    await _visible_alarm(service, principal, alarm_id)
    names = await _names(service)
    return [_task_out(t, names) for t in await service.alarm_tasks(alarm_id)]


def _refuse(exc: Exception) -> Problem:
    if isinstance(exc, TaskNotFound):
        return not_found("alarm or task")
    if isinstance(exc, InvalidTaskTransition):
        return Problem(409, "Invalid transition", str(exc), state=exc.state.value)
    if isinstance(exc, TaskConflict):
        return Problem(409, "Conflict", str(exc))
    if isinstance(exc, PermissionError):
        return Problem(403, "Forbidden", str(exc))
    return Problem(422, "Invalid request", str(exc))


_FAILURES = (TaskNotFound, InvalidTaskTransition, TaskConflict, PermissionError, ValueError)


@router.post("/api/tasks/alarms/{alarm_id}", response_model=list[TaskOut])
async def dispatch(
    alarm_id: uuid.UUID, body: DispatchIn, principal: Center, service: Service
) -> list[TaskOut]:
    """Dispatch the alarm to these departments (one already on it is skipped)."""
    try:
        created = await service.dispatch(
            alarm_id,
            body.departments,
            principal.actor,
            visible=_visible(principal),
            instructions=body.instructions,
            remote_addr=principal.remote_addr,
        )
    except _FAILURES as exc:
        raise _refuse(exc) from exc
    names = await _names(service)
    return [_task_out(t, names) for t in created]


@router.post("/api/tasks/alarms/{alarm_id}/by-rule", response_model=list[TaskOut])
async def dispatch_by_rule(
    alarm_id: uuid.UUID, principal: Center, service: Service
) -> list[TaskOut]:
    """Dispatch to the departments the dispatch rules choose by the alarm's jurisdiction."""
    try:
        created = await service.dispatch_by_rule(
            alarm_id,
            principal.actor,
            visible=_visible(principal),
            remote_addr=principal.remote_addr,
        )
    except _FAILURES as exc:
        raise _refuse(exc) from exc
    names = await _names(service)
    return [_task_out(t, names) for t in created]


@router.post("/api/tasks/alarms/{alarm_id}/override", response_model=list[TaskOut])
async def override(
    alarm_id: uuid.UUID, body: OverrideIn, principal: Center, service: Service
) -> list[TaskOut]:
    """Withdraw every unfinished task with a reason (audited) so the alarm may close."""
    try:
        withdrawn = await service.override(
            alarm_id,
            principal,
            body.reason,
            visible=_visible(principal),
        )
    except _FAILURES as exc:
        raise _refuse(exc) from exc
    names = await _names(service)
    return [_task_out(t, names) for t in withdrawn]


# -- tasks (departments and the center) -----------------------------------------------


@router.get("/api/tasks", response_model=list[TaskOut])
async def task_queue(
    principal: TaskReader,
    service: Service,
    open_only: Annotated[bool, Query(alias="open", description="Only unfinished tasks.")] = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[TaskOut]:
    """The caller's queue: a department's own tasks; the center's tasks in its scope."""
    names = await _names(service)
    tasks = await service.queue(principal, open_only=open_only, limit=limit)
    return [_task_out(t, names) for t in tasks]


@router.get("/api/tasks/{task_id}", response_model=TaskDetailOut)
async def task_detail(task_id: uuid.UUID, principal: TaskReader, service: Service) -> TaskDetailOut:
    """A task with its history, photos and the alarm details it needs."""
    try:
        task = await service.visible_task(task_id, principal)
    except TaskNotFound as exc:
        raise not_found("task") from exc
    stored = await service.stored_alarm(task.alarm_id)
    if stored is None:
        raise not_found("task")
    media = await service.alarm_media(task.alarm_id)
    location = stored.details.get("location") if isinstance(stored.details, dict) else None
    alarm = stored.alarm
    mine = DEPARTMENT_ACTIONS if principal.role is Role.DEPARTMENT else CENTER_ACTIONS
    if principal.role is Role.ADMIN:
        mine = DEPARTMENT_ACTIONS | CENTER_ACTIONS
    if principal.role is Role.DISPATCHER:
        mine = frozenset()
    allowed = sorted(a.value for a in allowed_task_actions(task) & mine)
    names = await _names(service)
    deliveries = (
        []
        if principal.role is Role.DEPARTMENT
        else [
            TaskDeliveryOut(sink=s, revision=r, state=st, attempts=n, last_error=e)
            for s, r, st, n, e in await service.deliveries(task_id)
        ]
    )
    return TaskDetailOut(
        task=_task_out(task, names),
        history=[TaskHistoryOut.of(row) for row in await service.history(task_id)],
        photos=[PhotoOut.of(p) for p in await service.photos([task_id])],
        deliveries=deliveries,
        alarm=TaskAlarmOut(
            id=alarm.id,
            type=alarm.type,
            title=alarm.title,
            sop=alarm.sop,
            priority=alarm.priority.level,
            state=alarm.state.value,
            device_id=alarm.device_id,
            jurisdiction=alarm.jurisdiction,
            opened_at=alarm.opened_at,
            location=location if isinstance(location, dict) else None,
            snapshots=[f"/api/tasks/{task_id}/alarm-media/{m.id}" for m in media],
        ),
        allowed=allowed,
    )


@router.post("/api/tasks/{task_id}/photos", response_model=PhotoOut, status_code=201)
async def upload_photo(
    task_id: uuid.UUID, request: Request, principal: TaskActor, service: Service
) -> PhotoOut:
    """Attach a feedback photo: the raw image as the body, its type as Content-Type."""
    limit = service.settings.max_photo_bytes
    declared = request.headers.get(_PHOTO_LIMIT_HEADER)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "Photo too large", f"at most {limit} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise Problem(413, "Photo too large", f"at most {limit} bytes")
    try:
        row = await service.add_photo(
            task_id, principal, request.headers.get("content-type", ""), bytes(data)
        )
    except DepartmentError as exc:
        raise Problem(
            415 if "must be one of" in str(exc) else 422, "Invalid photo", str(exc)
        ) from exc
    except _FAILURES as exc:
        raise _refuse(exc) from exc
    return PhotoOut.of(row)


@router.get("/api/tasks/{task_id}/photos/{photo_id}")
async def photo(
    task_id: uuid.UUID, photo_id: uuid.UUID, principal: TaskReader, service: Service
) -> Response:
    """Download one feedback photo of a task the caller may see."""
    try:
        await service.visible_task(task_id, principal)
    except TaskNotFound as exc:
        raise not_found("task") from exc
    found = await service.photo(task_id, photo_id)
    if found is None:
        raise not_found("photo")
    return Response(
        found[1],
        media_type=found[0],
        headers={"cache-control": "private, no-store", "x-content-type-options": "nosniff"},
    )


@router.get("/api/tasks/{task_id}/alarm-media/{media_id}")
async def alarm_snapshot(
    task_id: uuid.UUID, media_id: uuid.UUID, principal: TaskReader, service: Service
) -> Response:
    """One snapshot of the task's alarm (departments cannot read alarms otherwise)."""
    try:
        task = await service.visible_task(task_id, principal)
        content_type, data = await service.alarm_snapshot(task.alarm_id, media_id)
    except (TaskNotFound, KeyError) as exc:
        raise not_found("media") from exc
    return Response(
        data,
        media_type=content_type,
        headers={"cache-control": "private, no-store", "x-content-type-options": "nosniff"},
    )


@router.post("/api/tasks/{task_id}/{action}", response_model=TaskOut)
async def act(
    task_id: uuid.UUID,
    action: TaskActionName,
    principal: TaskActor,
    service: Service,
    body: Annotated[TaskActionIn | None, Body()] = None,
) -> TaskOut:
    """Departments: report_in, arrive, submit_feedback, note. The center: accept,
    send_back (note = reason, back_to), withdraw (note = reason), note."""
    given = body or TaskActionIn()
    try:
        task = await service.act(
            task_id, action.value, principal, note=given.note, back_to=given.back_to
        )
    except _FAILURES as exc:
        raise _refuse(exc) from exc
    return _task_out(task, await _names(service))


# -- reports ----------------------------------------------------------------------


@router.get("/api/reports/dispatch", response_model=None)
async def dispatch_report(
    principal: ReportReader,
    service: Service,
    month: Annotated[str | None, Query(description="e.g. 2026-11")] = None,
    week: Annotated[str | None, Query(description="ISO week, e.g. 2026-W47")] = None,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> Response | dict[str, object]:
    """Tasks received, report-in p50/p90, on-time and sent-back rates per department and
    per town (Asia/Shanghai weeks and months). District-wide: center and auditors only."""
    if not principal.sees_everything:
        raise Problem(403, "Forbidden", "the dispatch report covers the whole district")
    try:
        period = parse_dispatch_period(month=month, week=week)
    except ValueError as exc:
        raise Problem(422, "Invalid period", str(exc)) from exc
    report = await build_dispatch_report(service.repo, period, now=utcnow())
    if format == "csv":
        return Response(dispatch_csv(report), media_type="text/csv; charset=utf-8")
    if format == "xlsx":
        return Response(
            dispatch_xlsx(report),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"content-disposition": f'attachment; filename="dispatch-{period.label}.xlsx"'},
        )
    return report.as_dict()
