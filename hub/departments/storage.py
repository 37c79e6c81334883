"""Departments, their members, department tasks, task history and feedback photos.

Every write takes the caller's transaction, so a task change, its history row,
its change-log row, its outbox rows and its audit row commit together.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alarms.models import Priority
from alarms.tasks import Stage, Task, TaskHistoryEntry, TaskState
from hub.alarms.batch_storage import CHANGE_LOG_LOCK
from hub.alarms.storage import AlarmChange
from hub.storage.base import (
    Json,
    Row,
    SqlStore,
    Tx,
    from_json,
    from_ts,
    from_uuid,
    scope_condition,
    to_db_time,
)

__all__ = [
    "DepartmentRecord",
    "DepartmentRepository",
    "PhotoRow",
    "ReportRow",
    "TaskHistoryRow",
    "TaskRevisionConflict",
]

_DEPARTMENT_COLUMNS = (
    "id, name, kind, jurisdictions, jurisdiction_paths, contacts, sinks, supervisor, enabled"
)
_TASK_COLUMNS = (
    "id, alarm_id, department_id, priority, state, jurisdiction_path, instructions,"
    " dispatched_at, report_in_due, on_site_due, feedback_due, reported_in_at, on_site_at,"
    " feedback_at, finished_at, feedback, escalation_level, next_escalation_at, sent_back,"
    " missed, revision"
)
_OPEN = "('dispatched', 'reported_in', 'on_site')"


class TaskRevisionConflict(Exception):
    """The task changed meanwhile (another writer stored a newer revision)."""


@dataclass(frozen=True, slots=True)
class DepartmentRecord:
    """A department as stored: whom tasks are dispatched to and how they are delivered."""

    id: str
    name: str
    kind: str
    jurisdictions: tuple[str, ...] = ()
    jurisdiction_paths: tuple[str, ...] = ()
    contacts: tuple[Mapping[str, Any], ...] = ()
    sinks: tuple[str, ...] = ()
    supervisor: str | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TaskHistoryRow:
    """One history row of a task, as read back."""

    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    note: str | None
    details: Mapping[str, Any]
    revision: int


@dataclass(frozen=True, slots=True)
class PhotoRow:
    """A feedback photo's metadata (without its bytes)."""

    id: uuid.UUID
    task_id: uuid.UUID
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


@dataclass(frozen=True, slots=True)
class ReportRow:
    """What the dispatch report needs of one task."""

    department_id: str
    jurisdiction_path: str | None
    dispatched_at: datetime
    reported_in_at: datetime | None
    state: str
    report_in_due: datetime
    on_site_due: datetime
    feedback_due: datetime
    sent_back: int
    missed: frozenset[str] = field(default_factory=frozenset)


def _department(row: Row) -> DepartmentRecord:
    return DepartmentRecord(
        id=row[0],
        name=row[1],
        kind=row[2],
        jurisdictions=tuple(from_json(row[3]) or ()),
        jurisdiction_paths=tuple(from_json(row[4]) or ()),
        contacts=tuple(from_json(row[5]) or ()),
        sinks=tuple(from_json(row[6]) or ()),
        supervisor=row[7],
        enabled=bool(row[8]),
    )


def _ts(value: Any) -> datetime:
    found = from_ts(value)
    if found is None:
        raise ValueError("a required timestamp is missing")
    return found


def _task(row: Row) -> Task:
    return Task(
        id=from_uuid(row[0]),
        alarm_id=from_uuid(row[1]),
        department_id=row[2],
        priority=Priority(int(row[3])),
        state=TaskState(row[4]),
        jurisdiction_path=row[5],
        instructions=row[6] or "",
        dispatched_at=_ts(row[7]),
        report_in_due=_ts(row[8]),
        on_site_due=_ts(row[9]),
        feedback_due=_ts(row[10]),
        reported_in_at=from_ts(row[11]),
        on_site_at=from_ts(row[12]),
        feedback_at=from_ts(row[13]),
        finished_at=from_ts(row[14]),
        feedback=row[15],
        escalation_level=int(row[16]),
        next_escalation_at=from_ts(row[17]),
        sent_back=int(row[18]),
        missed=frozenset(Stage(s) for s in from_json(row[19]) or ()),
        revision=int(row[20]),
    )


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else to_db_time(value)


def _task_values(task: Task) -> list[Any]:
    return [
        task.state.value,
        _time(task.reported_in_at),
        _time(task.on_site_at),
        _time(task.feedback_at),
        _time(task.finished_at),
        task.feedback,
        task.escalation_level,
        _time(task.next_escalation_at),
        task.sent_back,
        Json(sorted(stage.value for stage in task.missed)),
        task.revision,
        to_db_time(task.report_in_due),
        to_db_time(task.on_site_due),
        to_db_time(task.feedback_due),
    ]


class DepartmentRepository:
    """SQL of the departments feature."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    # -- departments ------------------------------------------------------------

    async def save_department(self, tx: Tx, record: DepartmentRecord, now: datetime) -> bool:
        """Insert or replace a department; True when it was new."""
        existing = await tx.fetchone("SELECT 1 FROM departments WHERE id = %s", (record.id,))
        values = (
            record.name,
            record.kind,
            Json(list(record.jurisdictions)),
            Json(list(record.jurisdiction_paths)),
            Json([dict(c) for c in record.contacts]),
            Json(list(record.sinks)),
            record.supervisor,
            record.enabled,
            to_db_time(now),
        )
        if existing is None:
            await tx.execute(
                "INSERT INTO departments (name, kind, jurisdictions, jurisdiction_paths, contacts,"
                " sinks, supervisor, enabled, updated_at, id, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*values, record.id, to_db_time(now)),
            )
            return True
        await tx.execute(
            "UPDATE departments SET name = %s, kind = %s, jurisdictions = %s,"
            " jurisdiction_paths = %s, contacts = %s, sinks = %s, supervisor = %s, enabled = %s,"
            " updated_at = %s WHERE id = %s",
            (*values, record.id),
        )
        return False

    async def department(self, tx: Tx, department_id: str) -> DepartmentRecord | None:
        """One department by id."""
        row = await tx.fetchone(
            f"SELECT {_DEPARTMENT_COLUMNS} FROM departments WHERE id = %s",  # noqa: S608
            (department_id,),
        )
        return None if row is None else _department(row)

    async def departments(self, tx: Tx) -> list[DepartmentRecord]:
        """Every department, by id."""
        rows = await tx.fetchall(
            f"SELECT {_DEPARTMENT_COLUMNS} FROM departments ORDER BY id"  # noqa: S608
        )
        return [_department(row) for row in rows]

    async def jurisdiction_paths(self, tx: Tx, codes: Sequence[str]) -> dict[str, str]:
        """The stored path of each known jurisdiction code among `codes`."""
        if not codes:
            return {}
        marks = ", ".join("%s" for _ in codes)
        rows = await tx.fetchall(
            f"SELECT code, path FROM jurisdictions WHERE code IN ({marks})",  # noqa: S608
            list(codes),
        )
        return {str(row[0]): str(row[1]) for row in rows}

    async def jurisdiction_names(self, tx: Tx) -> dict[str, str]:
        """Every jurisdiction's name by code."""
        rows = await tx.fetchall("SELECT code, name FROM jurisdictions")
        return {str(row[0]): str(row[1]) for row in rows}

    async def set_members(
        self, tx: Tx, department_id: str, members: Sequence[str], now: datetime
    ) -> None:
        """Make `members` (actors `user:<name>` / `key:<name>`) the department's members."""
        await tx.execute(
            "DELETE FROM department_members WHERE department_id = %s", (department_id,)
        )
        if members:
            marks = ", ".join("%s" for _ in members)
            await tx.execute(
                f"DELETE FROM department_members WHERE member IN ({marks})",  # noqa: S608
                list(members),
            )
        for member in members:
            await tx.execute(
                "INSERT INTO department_members (member, department_id, added_at)"
                " VALUES (%s, %s, %s)",
                (member, department_id, to_db_time(now)),
            )

    async def members(self, tx: Tx, department_id: str) -> list[str]:
        """The actors acting for a department."""
        rows = await tx.fetchall(
            "SELECT member FROM department_members WHERE department_id = %s ORDER BY member",
            (department_id,),
        )
        return [str(row[0]) for row in rows]

    async def department_of(self, tx: Tx, actor: str) -> str | None:
        """The department `actor` acts for, if any."""
        row = await tx.fetchone(
            "SELECT department_id FROM department_members WHERE member = %s", (actor,)
        )
        return None if row is None else str(row[0])

    # -- tasks ------------------------------------------------------------------

    async def insert_task(self, tx: Tx, task: Task, now: datetime) -> None:
        """Store a newly dispatched task."""
        await tx.execute(
            f"INSERT INTO department_tasks ({_TASK_COLUMNS}, updated_at)"  # noqa: S608
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s)",
            (
                str(task.id),
                str(task.alarm_id),
                task.department_id,
                task.priority.level,
                task.state.value,
                task.jurisdiction_path,
                task.instructions,
                to_db_time(task.dispatched_at),
                to_db_time(task.report_in_due),
                to_db_time(task.on_site_due),
                to_db_time(task.feedback_due),
                _time(task.reported_in_at),
                _time(task.on_site_at),
                _time(task.feedback_at),
                _time(task.finished_at),
                task.feedback,
                task.escalation_level,
                _time(task.next_escalation_at),
                task.sent_back,
                Json(sorted(stage.value for stage in task.missed)),
                task.revision,
                to_db_time(now),
            ),
        )

    async def update_task(
        self, tx: Tx, task: Task, *, previous_revision: int, now: datetime
    ) -> None:
        """Store a task's next revision; raise TaskRevisionConflict if it moved on."""
        changed = await tx.execute(
            "UPDATE department_tasks SET state = %s, reported_in_at = %s, on_site_at = %s,"
            " feedback_at = %s, finished_at = %s, feedback = %s, escalation_level = %s,"
            " next_escalation_at = %s, sent_back = %s, missed = %s, revision = %s,"
            " report_in_due = %s, on_site_due = %s, feedback_due = %s, updated_at = %s"
            " WHERE id = %s AND revision = %s",
            (*_task_values(task), to_db_time(now), str(task.id), previous_revision),
        )
        if changed != 1:
            raise TaskRevisionConflict(str(task.id))

    async def task(self, tx: Tx, task_id: uuid.UUID, *, for_update: bool = False) -> Task | None:
        """One task by id (row-locked on PostgreSQL when `for_update`)."""
        lock = self.store.dialect.row_lock(for_update)
        row = await tx.fetchone(
            f"SELECT {_TASK_COLUMNS} FROM department_tasks WHERE id = %s{lock}",  # noqa: S608
            (str(task_id),),
        )
        return None if row is None else _task(row)

    async def tasks_of_alarm(self, tx: Tx, alarm_id: uuid.UUID) -> list[Task]:
        """An alarm's tasks in dispatch order."""
        rows = await tx.fetchall(
            f"SELECT {_TASK_COLUMNS} FROM department_tasks WHERE alarm_id = %s"  # noqa: S608
            " ORDER BY dispatched_at, department_id",
            (str(alarm_id),),
        )
        return [_task(row) for row in rows]

    async def task_queue(
        self,
        tx: Tx,
        *,
        department_id: str | None,
        scope_paths: Sequence[str] | None,
        open_only: bool,
        limit: int,
    ) -> list[Task]:
        """Tasks of one department (or all), within the scope, most urgent deadline first."""
        scope_sql, params = scope_condition(scope_paths, "jurisdiction_path")
        where = [scope_sql]
        if department_id is not None:
            where.append("department_id = %s")
            params.append(department_id)
        if open_only:
            where.append(f"state IN {_OPEN[:-1]}, 'feedback_submitted')")
        rows = await tx.fetchall(
            f"SELECT {_TASK_COLUMNS} FROM department_tasks WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY priority, dispatched_at DESC LIMIT %s",
            [*params, limit],
        )
        return [_task(row) for row in rows]

    async def due_for_escalation(self, now: datetime) -> list[uuid.UUID]:
        """Open tasks whose current stage's deadline has passed and may escalate further."""
        at = to_db_time(now)
        async with self.store.reading() as tx:
            rows = await tx.fetchall(
                f"SELECT id FROM department_tasks WHERE state IN {_OPEN}"  # noqa: S608
                " AND escalation_level < 2"
                " AND ((state = 'dispatched' AND report_in_due <= %s)"
                " OR (state = 'reported_in' AND on_site_due <= %s)"
                " OR (state = 'on_site' AND feedback_due <= %s))"
                " AND (next_escalation_at IS NULL OR next_escalation_at <= %s)"
                " ORDER BY id",
                (at, at, at, at),
            )
        return [from_uuid(row[0]) for row in rows]

    async def open_alarms_without_tasks(self, since: datetime) -> list[tuple[uuid.UUID, str, bool]]:
        """(id, type, is_drill) of open alarms opened since `since` that have no task."""
        async with self.store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT id, type, is_drill FROM alarms WHERE state IN"
                " ('new', 'acknowledged', 'dispatched') AND opened_at >= %s AND NOT EXISTS"
                " (SELECT 1 FROM department_tasks t WHERE t.alarm_id = alarms.id)"
                " ORDER BY opened_at",
                (to_db_time(since),),
            )
        return [(from_uuid(row[0]), str(row[1]), bool(row[2])) for row in rows]

    async def append_history(self, tx: Tx, entry: TaskHistoryEntry) -> None:
        """One history row."""
        await tx.execute(
            "INSERT INTO department_task_history (task_id, alarm_id, at, actor, action,"
            " from_state, to_state, note, details, revision)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                str(entry.task_id),
                str(entry.alarm_id),
                to_db_time(entry.at),
                entry.actor,
                entry.action.value,
                entry.from_state.value if entry.from_state else None,
                entry.to_state.value,
                entry.note,
                dict(entry.details),
                entry.revision,
            ),
        )

    async def history(self, tx: Tx, task_id: uuid.UUID) -> list[TaskHistoryRow]:
        """A task's history, oldest first."""
        rows = await tx.fetchall(
            "SELECT at, actor, action, from_state, to_state, note, details, revision"
            " FROM department_task_history WHERE task_id = %s ORDER BY id",
            (str(task_id),),
        )
        return [
            TaskHistoryRow(
                at=_ts(row[0]),
                actor=row[1],
                action=row[2],
                from_state=row[3],
                to_state=row[4],
                note=row[5],
                details=from_json(row[6]) or {},
                revision=int(row[7]),
            )
            for row in rows
        ]

    async def append_change(
        self,
        tx: Tx,
        *,
        alarm_id: uuid.UUID,
        revision: int,
        action: str,
        at: datetime,
        jurisdiction_path: str | None,
        category: str,
        payload: Mapping[str, Any],
    ) -> AlarmChange:
        """A row of the alarm change log for a task change: the live stream and the pull
        API carry it like any change of the alarm (`action` is `task.<action>`)."""
        lock = self.store.dialect.transaction_lock(CHANGE_LOG_LOCK)
        if lock is not None:
            # The change log's own lock keeps sequence numbers in commit order.
            await tx.fetchone(lock)
        row = await tx.fetchone(
            "INSERT INTO alarm_changes (alarm_id, revision, action, at, jurisdiction_path,"
            " category, payload) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING seq",
            (
                str(alarm_id),
                revision,
                action,
                to_db_time(at),
                jurisdiction_path,
                category,
                dict(payload),
            ),
        )
        if row is None:
            raise RuntimeError("the change log gave no sequence number")
        return AlarmChange(
            seq=int(row[0]),
            alarm_id=alarm_id,
            revision=revision,
            action=action,
            at=at,
            jurisdiction_path=jurisdiction_path,
            category=category,
            payload=dict(payload),
        )

    async def deliveries(self, tx: Tx, task_ids: Sequence[uuid.UUID]) -> list[Row]:
        """Outbox rows of tasks: (task id, sink, revision, state, attempts, last error)."""
        if not task_ids:
            return []
        marks = ", ".join("%s" for _ in task_ids)
        return await tx.fetchall(
            "SELECT alarm_id, sink, revision, state, attempts, last_error FROM outbox"  # noqa: S608
            f" WHERE alarm_id IN ({marks}) ORDER BY id",
            [str(task_id) for task_id in task_ids],
        )

    # -- photos -----------------------------------------------------------------

    async def add_photo(
        self,
        tx: Tx,
        *,
        photo_id: uuid.UUID,
        task_id: uuid.UUID,
        content_type: str,
        data: bytes,
        sha256: str,
        uploaded_by: str,
        now: datetime,
    ) -> None:
        """Keep one feedback photo."""
        await tx.execute(
            "INSERT INTO department_task_photos (id, task_id, content_type, size, sha256, data,"
            " uploaded_by, uploaded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                photo_id,
                str(task_id),
                content_type,
                len(data),
                sha256,
                data,
                uploaded_by,
                to_db_time(now),
            ),
        )

    async def photos(self, tx: Tx, task_ids: Sequence[uuid.UUID]) -> list[PhotoRow]:
        """Photos of tasks (metadata), oldest first."""
        if not task_ids:
            return []
        marks = ", ".join("%s" for _ in task_ids)
        rows = await tx.fetchall(
            "SELECT id, task_id, content_type, size, sha256, uploaded_by, uploaded_at"  # noqa: S608
            f" FROM department_task_photos WHERE task_id IN ({marks}) ORDER BY uploaded_at, id",
            [str(task_id) for task_id in task_ids],
        )
        return [
            PhotoRow(
                id=from_uuid(row[0]),
                task_id=from_uuid(row[1]),
                content_type=row[2],
                size=int(row[3]),
                sha256=row[4],
                uploaded_by=row[5],
                uploaded_at=_ts(row[6]),
            )
            for row in rows
        ]

    async def photo_content(
        self, tx: Tx, task_id: uuid.UUID, photo_id: uuid.UUID
    ) -> tuple[str, bytes] | None:
        """(content type, bytes) of one photo of `task_id`."""
        row = await tx.fetchone(
            "SELECT content_type, data FROM department_task_photos WHERE id = %s AND task_id = %s",
            (photo_id, str(task_id)),
        )
        return None if row is None else (str(row[0]), bytes(row[1]))

    # -- reports ----------------------------------------------------------------

    async def report_rows(self, start: datetime, end: datetime) -> list[ReportRow]:
        """Every task dispatched in [start, end)."""
        async with self.store.reading() as tx:
            rows = await tx.fetchall(
                "SELECT department_id, jurisdiction_path, dispatched_at, reported_in_at, state,"
                " report_in_due, on_site_due, feedback_due, sent_back, missed"
                " FROM department_tasks WHERE dispatched_at >= %s AND dispatched_at < %s"
                " ORDER BY dispatched_at",
                (to_db_time(start), to_db_time(end)),
            )
        return [
            ReportRow(
                department_id=row[0],
                jurisdiction_path=row[1],
                dispatched_at=_ts(row[2]),
                reported_in_at=from_ts(row[3]),
                state=row[4],
                report_in_due=_ts(row[5]),
                on_site_due=_ts(row[6]),
                feedback_due=_ts(row[7]),
                sent_back=int(row[8]),
                missed=frozenset(from_json(row[9]) or ()),
            )
            for row in rows
        ]
