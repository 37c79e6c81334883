"""Department tasks: dispatch, department answers, center decisions, deadlines, delivery.

The service owns its transactions: each task change writes, in one
transaction, the task's next revision, its history row, a row of the alarm's
change log (so every console following the alarm stream sees it), outbox rows
for the department's sinks and an audit row. Only after the commit are the
changes announced and the outbox dispatcher woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alarms.models import AlarmAction
from alarms.outbox import OUTBOX_NAMESPACE, OutboxRecord, idempotency_key
from alarms.task_rules import DepartmentRef, DispatchRule, departments_for_rule
from alarms.tasks import (
    CENTER_ACTIONS,
    DEPARTMENT_ACTIONS,
    DEPARTMENT_KINDS,
    Task,
    TaskAction,
    TaskHistoryEntry,
    apply_task,
    check_department_id,
    check_task_escalation,
    close_blockers,
    dispatch_task,
    escalate_task,
)
from alarms.workflow import InvalidTransition
from hub.alarms import batch_storage, media_storage
from hub.alarms.storage import AlarmChange, StoredAlarm, get_alarm
from hub.auth import audit_storage as audit
from hub.auth.principal import Principal, Role, system_actor
from hub.bus import EventBus
from hub.clock import utcnow
from hub.departments.config import DepartmentSettings
from hub.departments.errors import DepartmentError, TaskConflict, TaskNotFound
from hub.departments.payload import task_payload
from hub.departments.photos import PHOTO_TYPES, photo_kind
from hub.departments.rule_dispatch import RuleDispatch
from hub.departments.storage import (
    DepartmentRecord,
    DepartmentRepository,
    PhotoRow,
    TaskRevisionConflict,
)
from hub.storage import SqlStore, Tx

__all__ = ["PHOTO_TYPES", "DepartmentError", "DepartmentService", "TaskConflict", "TaskNotFound"]

log = logging.getLogger(__name__)

_SYSTEM = system_actor("tasks")


@dataclass
class _Written:
    changes: list[AlarmChange]
    queued: bool = False


class DepartmentService:
    """Departments, their tasks, the task SLA loop and rule-based dispatch."""

    def __init__(
        self,
        store: SqlStore,
        settings: DepartmentSettings,
        *,
        bus: EventBus[AlarmChange] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.repo = DepartmentRepository(store)
        self.bus: EventBus[AlarmChange] = bus or EventBus("alarm-changes")
        self._clock = clock
        self._sink_names = {sink.name for sink in settings.sinks if sink.enabled}
        self._sla = settings.task_sla()
        self._rules = settings.dispatch_rules()
        self._wake: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> datetime:
        """The service's clock (injected in tests)."""
        return self._clock()

    def use_clock(self, clock: Callable[[], datetime]) -> None:
        """Read the time from `clock` (a drill replaying a day, a test moving time by hand)."""
        self._clock = clock

    def on_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` after every commit that queued outbox rows."""
        self._wake.append(wake)

    async def start(self, *, deadline_loop: bool = True) -> None:
        """Start the deadline loop (unless a cluster runs `run_deadline_loop` on one node)
        and rule-based dispatch of newly opened alarms."""
        if not self._tasks:
            if deadline_loop:
                self._tasks.append(asyncio.create_task(self.run_deadline_loop(), name="task-sla"))
            if any(rule.auto for rule in self._rules):
                self._tasks += RuleDispatch(self).start()

    async def stop(self) -> None:
        """Stop both loops."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- departments -------------------------------------------------------------

    async def save_department(
        self, actor: str, record: DepartmentRecord, remote_addr: str | None = None
    ) -> DepartmentRecord:
        """Create or replace a department; its jurisdiction codes must exist."""
        check_department_id(record.id)
        if record.kind not in DEPARTMENT_KINDS:
            raise DepartmentError(f"unknown kind {record.kind!r}; one of {DEPARTMENT_KINDS}")
        unknown_sinks = sorted(set(record.sinks) - {s.name for s in self.settings.sinks})
        if unknown_sinks:
            raise DepartmentError(f"no department sink named {', '.join(unknown_sinks)}")
        now = self._clock()
        async with self.store.transaction() as tx:
            paths = await self.repo.jurisdiction_paths(tx, record.jurisdictions)
            missing = [code for code in record.jurisdictions if code not in paths]
            if missing:
                raise DepartmentError(f"unknown jurisdiction {', '.join(missing)}")
            stored = DepartmentRecord(
                id=record.id,
                name=record.name,
                kind=record.kind,
                jurisdictions=record.jurisdictions,
                jurisdiction_paths=tuple(paths[code] for code in record.jurisdictions),
                contacts=record.contacts,
                sinks=record.sinks,
                supervisor=record.supervisor,
                enabled=record.enabled,
            )
            created = await self.repo.save_department(tx, stored, now)
            await audit.record(
                tx,
                actor,
                "department.create" if created else "department.update",
                record.id,
                remote_addr,
                {"kind": record.kind, "jurisdictions": list(record.jurisdictions)},
                at=now,
            )
        return stored

    async def departments(self) -> list[DepartmentRecord]:
        """Every department."""
        async with self.store.reading() as tx:
            return await self.repo.departments(tx)

    async def department(self, department_id: str) -> DepartmentRecord | None:
        """One department."""
        async with self.store.reading() as tx:
            return await self.repo.department(tx, department_id)

    async def set_members(
        self, actor: str, department_id: str, members: Sequence[str], remote_addr: str | None
    ) -> list[str]:
        """Make `members` (`user:<name>`, `key:<name>`) act for the department."""
        for member in members:
            kind, _, name = member.partition(":")
            if kind not in ("user", "key") or not name.strip():
                raise DepartmentError(f"member {member!r} must be user:<name> or key:<name>")
        now = self._clock()
        async with self.store.transaction() as tx:
            if await self.repo.department(tx, department_id) is None:
                raise TaskNotFound(department_id)
            await self.repo.set_members(tx, department_id, list(dict.fromkeys(members)), now)
            await audit.record(
                tx,
                actor,
                "department.members",
                department_id,
                remote_addr,
                {"members": list(members)},
                at=now,
            )
            return await self.repo.members(tx, department_id)

    async def members(self, department_id: str) -> list[str]:
        """Who acts for a department."""
        async with self.store.reading() as tx:
            return await self.repo.members(tx, department_id)

    async def department_of(self, principal: Principal) -> str | None:
        """The department a `department`-role caller acts for (None: sees no task)."""
        if principal.role is not Role.DEPARTMENT:
            return None
        async with self.store.reading() as tx:
            return await self.repo.department_of(tx, principal.actor)

    async def may_see(self, principal: Principal, task: Task) -> bool:
        """Departments see their own tasks in their jurisdiction; the center its scope."""
        if not principal.can_see(task.jurisdiction_path):
            return False
        if principal.role is Role.DEPARTMENT:
            return await self.department_of(principal) == task.department_id
        return principal.role in (Role.OPERATOR, Role.ADMIN, Role.DISPATCHER)

    # -- writing task changes ------------------------------------------------------

    def _sinks_for(
        self, department: DepartmentRecord | None, task: Task, entry: TaskHistoryEntry
    ) -> list[str]:
        names = [s for s in (department.sinks if department else ()) if s in self._sink_names]
        if entry.action is TaskAction.ESCALATE and entry.details.get("to") == "center":
            names += [s for s in self.settings.center_sinks if s in self._sink_names]
        return list(dict.fromkeys(names))

    async def _record(
        self,
        tx: Tx,
        task: Task,
        entry: TaskHistoryEntry,
        stored: StoredAlarm,
        written: _Written,
        now: datetime,
        remote_addr: str | None = None,
    ) -> None:
        """History, change-log row, outbox rows and audit row for one task revision."""
        await self.repo.append_history(tx, entry)
        payload = task_payload(task, entry, stored)
        change = await self.repo.append_change(
            tx,
            alarm_id=stored.alarm.id,
            revision=stored.alarm.revision,
            action=f"task.{entry.action.value}",
            at=entry.at,
            jurisdiction_path=stored.jurisdiction_path,
            category=stored.alarm.category.value,
            payload=payload,
        )
        written.changes.append(change)
        department = await self.repo.department(tx, task.department_id)
        records = [
            OutboxRecord(
                id=uuid.uuid5(OUTBOX_NAMESPACE, idempotency_key(task.id, task.revision, sink)),
                alarm_id=task.id,
                revision=task.revision,
                sink=sink,
                payload=payload,
                next_attempt_at=now,
            )
            for sink in self._sinks_for(department, task, entry)
        ]
        if records:
            await batch_storage.insert_outbox(tx, self.store.dialect, records, now)
            written.queued = True
        await audit.record(
            tx,
            entry.actor,
            f"task.{entry.action.value}",
            str(task.id),
            remote_addr,
            {
                "alarm_id": str(task.alarm_id),
                "department_id": task.department_id,
                "from_state": entry.from_state.value if entry.from_state else None,
                "to_state": entry.to_state.value,
                "revision": task.revision,
                "note": entry.note,
            },
            at=entry.at,
        )

    def _announce(self, written: _Written) -> None:
        self.bus.publish_all(written.changes)
        if written.queued:
            for wake in self._wake:
                wake()

    async def _alarm(self, tx: Tx, alarm_id: uuid.UUID, *, for_update: bool = False) -> StoredAlarm:
        stored = await get_alarm(tx, self.store.dialect, alarm_id, for_update=for_update)
        if stored is None:
            raise TaskNotFound(str(alarm_id))
        return stored

    # -- dispatch ----------------------------------------------------------------

    async def dispatch(
        self,
        alarm_id: uuid.UUID,
        department_ids: Sequence[str],
        actor: str,
        *,
        visible: Callable[[StoredAlarm], bool],
        instructions: str = "",
        rule: str | None = None,
        remote_addr: str | None = None,
    ) -> list[Task]:
        """Dispatch one task per department; a department already on the alarm is skipped."""
        if not department_ids:
            raise DepartmentError("name at least one department")
        now = self._clock()
        written = _Written([])
        created: list[Task] = []
        async with self.store.transaction() as tx:
            stored = await self._alarm(tx, alarm_id, for_update=True)
            if not visible(stored):
                raise TaskNotFound(str(alarm_id))
            if not stored.alarm.is_active:
                raise TaskConflict(
                    f"the alarm is {stored.alarm.state.value}; tasks go out for open alarms only"
                )
            existing = {t.department_id for t in await self.repo.tasks_of_alarm(tx, alarm_id)}
            for department_id in dict.fromkeys(department_ids):
                department = await self.repo.department(tx, department_id)
                if department is None:
                    raise DepartmentError(f"no department {department_id!r}")
                if not department.enabled:
                    raise DepartmentError(f"department {department_id!r} is disabled")
                if department_id in existing:
                    continue
                task, entry = dispatch_task(
                    task_id=uuid.uuid4(),
                    alarm_id=alarm_id,
                    department_id=department_id,
                    priority=stored.alarm.priority,
                    at=now,
                    actor=actor,
                    policy=self._sla,
                    jurisdiction_path=stored.jurisdiction_path,
                    instructions=instructions,
                    details={"rule": rule} if rule else None,
                )
                await self.repo.insert_task(tx, task, now)
                await self._record(tx, task, entry, stored, written, now, remote_addr)
                created.append(task)
        self._announce(written)
        return created

    def rules_for(self, alarm_type: str, is_drill: bool, *, auto: bool) -> list[DispatchRule]:
        return [
            rule
            for rule in self._rules
            if (rule.auto or not auto)
            and (rule.include_drills or not is_drill)
            and any(fnmatch.fnmatchcase(alarm_type, pattern) for pattern in rule.alarm_types)
        ]

    async def dispatch_by_rule(
        self,
        alarm_id: uuid.UUID,
        actor: str,
        *,
        visible: Callable[[StoredAlarm], bool],
        auto: bool = False,
        remote_addr: str | None = None,
    ) -> list[Task]:
        """Dispatch to the departments the matching rules choose by the alarm's jurisdiction."""
        async with self.store.reading() as tx:
            stored = await self._alarm(tx, alarm_id)
            records = await self.repo.departments(tx)
        if not visible(stored):
            raise TaskNotFound(str(alarm_id))
        refs = [DepartmentRef(d.id, d.kind, d.jurisdiction_paths, d.enabled) for d in records]
        created: list[Task] = []
        for rule in self.rules_for(stored.alarm.type, stored.alarm.is_drill, auto=auto):
            chosen = departments_for_rule(rule, stored.jurisdiction_path, refs)
            if chosen:
                created += await self.dispatch(
                    alarm_id,
                    chosen,
                    actor,
                    visible=visible,
                    instructions=rule.instructions,
                    rule=rule.name,
                    remote_addr=remote_addr,
                )
        return created

    async def catch_up(self) -> int:
        """Dispatch by the automatic rules the open alarms of the last day that have no task
        (opened while no hub node was dispatching); return how many tasks went out."""
        return await RuleDispatch(self).catch_up()

    # -- task actions --------------------------------------------------------------

    async def act(
        self,
        task_id: uuid.UUID,
        action: TaskAction | str,
        principal: Principal,
        *,
        note: str | None = None,
        back_to: str | None = None,
    ) -> Task:
        """A department's answer (report in, arrive, feedback) or the center's decision."""
        action = TaskAction(action)
        allowed = DEPARTMENT_ACTIONS if principal.role is Role.DEPARTMENT else CENTER_ACTIONS
        if principal.role is Role.ADMIN:
            allowed = DEPARTMENT_ACTIONS | CENTER_ACTIONS
        now = self._clock()
        written = _Written([])
        async with self.store.transaction() as tx:
            task = await self.repo.task(tx, task_id, for_update=True)
            if task is None or not await self._may_see_in(tx, principal, task):
                raise TaskNotFound(str(task_id))
            # After the visibility check: a task out of sight answers 404 for any action.
            if action not in allowed:
                raise PermissionError(f"role {principal.role.value} may not {action.value} a task")
            stored = await self._alarm(tx, task.alarm_id)
            updated, entry = apply_task(
                task,
                action,
                principal.actor,
                now,
                note=note,
                back_to=back_to,
                policy=self._sla,
            )
            try:
                await self.repo.update_task(tx, updated, previous_revision=task.revision, now=now)
            except TaskRevisionConflict as exc:
                raise TaskConflict("the task changed meanwhile; reload it") from exc
            await self._record(tx, updated, entry, stored, written, now, principal.remote_addr)
        self._announce(written)
        return updated

    async def _may_see_in(self, tx: Tx, principal: Principal, task: Task) -> bool:
        if not principal.can_see(task.jurisdiction_path):
            return False
        if principal.role is Role.DEPARTMENT:
            return await self.repo.department_of(tx, principal.actor) == task.department_id
        return principal.role in (Role.OPERATOR, Role.ADMIN, Role.DISPATCHER)

    async def override(
        self,
        alarm_id: uuid.UUID,
        principal: Principal,
        reason: str,
        *,
        visible: Callable[[StoredAlarm], bool],
    ) -> list[Task]:
        """The center withdraws every unfinished task of an alarm, with a reason (audited),
        so the alarm may close without them."""
        if not reason or not reason.strip():
            raise DepartmentError("an override needs a reason")
        now = self._clock()
        written = _Written([])
        withdrawn: list[Task] = []
        async with self.store.transaction() as tx:
            stored = await self._alarm(tx, alarm_id, for_update=True)
            if not visible(stored):
                raise TaskNotFound(str(alarm_id))
            for task in close_blockers(await self.repo.tasks_of_alarm(tx, alarm_id)):
                updated, entry = apply_task(
                    task,
                    TaskAction.WITHDRAW,
                    principal.actor,
                    now,
                    note=reason,
                    details={"override": True},
                )
                await self.repo.update_task(tx, updated, previous_revision=task.revision, now=now)
                await self._record(tx, updated, entry, stored, written, now, principal.remote_addr)
                withdrawn.append(updated)
            await audit.record(
                tx,
                principal.actor,
                "alarm.task_override",
                str(alarm_id),
                principal.remote_addr,
                {"reason": reason, "withdrawn": [str(t.id) for t in withdrawn]},
                at=now,
            )
        self._announce(written)
        return withdrawn

    async def close_guard(self, tx: Tx, stored: StoredAlarm, action: AlarmAction) -> None:
        """Refuse to finish an alarm while a task is neither accepted nor withdrawn."""
        if action not in (AlarmAction.CLOSE, AlarmAction.FALSE_ALARM):
            return
        blockers = close_blockers(await self.repo.tasks_of_alarm(tx, stored.alarm.id))
        if blockers:
            names = ", ".join(f"{t.department_id} ({t.state.value})" for t in blockers)
            raise InvalidTransition(
                action,
                stored.alarm.state,
                f"cannot {action.value.replace('_', ' ')} an alarm whose department tasks are "
                f"not all accepted: {names}; accept them or override with a reason",
            )

    # -- deadlines -----------------------------------------------------------------

    async def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate every open task whose current deadline has passed; return how many."""
        now = now or self._clock()
        escalated = 0
        for task_id in await self.repo.due_for_escalation(now):
            written = _Written([])
            async with self.store.transaction() as tx:
                task = await self.repo.task(tx, task_id, for_update=True)
                if task is None:
                    continue
                due = check_task_escalation(task, now, self._sla)
                if due is None:
                    continue
                stored = await self._alarm(tx, task.alarm_id)
                updated, entry = escalate_task(task, due, actor=_SYSTEM)
                await self.repo.update_task(tx, updated, previous_revision=task.revision, now=now)
                await self._record(tx, updated, entry, stored, written, now)
            self._announce(written)
            escalated += 1
            log.warning(
                "task %s of department %s escalated to the %s (%s overdue by %s)",
                task_id,
                updated.department_id,
                due.to,
                due.stage.value,
                due.overdue_by,
            )
        return escalated

    async def run_deadline_loop(self) -> None:
        """Escalate overdue tasks every `check_s` until cancelled."""
        while True:
            try:
                await self.escalate_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task deadline check failed; will retry")
            await asyncio.sleep(self.settings.check_s)

    # -- photos ------------------------------------------------------------------

    async def add_photo(
        self, task_id: uuid.UUID, principal: Principal, content_type: str, data: bytes
    ) -> PhotoRow:
        """Keep a feedback photo of a task: a JPEG, PNG or WebP within the size limit."""
        await self.visible_task(task_id, principal)
        kind = photo_kind(content_type, data, self.settings.max_photo_bytes)
        now = self._clock()
        digest = hashlib.sha256(data).hexdigest()
        photo_id = uuid.uuid4()
        async with self.store.transaction() as tx:
            task = await self.repo.task(tx, task_id, for_update=True)
            if task is None or not await self._may_see_in(tx, principal, task):
                raise TaskNotFound(str(task_id))
            if task.is_finished:
                raise TaskConflict(f"the task is {task.state.value}; no more photos")
            await self.repo.add_photo(
                tx,
                photo_id=photo_id,
                task_id=task_id,
                content_type=kind,
                data=data,
                sha256=digest,
                uploaded_by=principal.actor,
                now=now,
            )
            await audit.record(
                tx,
                principal.actor,
                "task.photo",
                str(task_id),
                principal.remote_addr,
                {"photo_id": str(photo_id), "size": len(data), "sha256": digest},
                at=now,
            )
        return PhotoRow(photo_id, task_id, kind, len(data), digest, principal.actor, now)

    # -- reading -----------------------------------------------------------------

    async def visible_task(self, task_id: uuid.UUID, principal: Principal) -> Task:
        """A task the caller may see, else TaskNotFound."""
        async with self.store.reading() as tx:
            task = await self.repo.task(tx, task_id)
            if task is None or not await self._may_see_in(tx, principal, task):
                raise TaskNotFound(str(task_id))
            return task

    async def alarm_tasks(self, alarm_id: uuid.UUID) -> list[Task]:
        """An alarm's tasks (the caller checked the alarm's visibility)."""
        async with self.store.reading() as tx:
            return await self.repo.tasks_of_alarm(tx, alarm_id)

    async def queue(self, principal: Principal, *, open_only: bool, limit: int = 200) -> list[Task]:
        """The caller's task queue: its department's, or all in scope for the center."""
        department_id = None
        if principal.role is Role.DEPARTMENT:
            department_id = await self.department_of(principal)
            if department_id is None:
                return []
        async with self.store.reading() as tx:
            return await self.repo.task_queue(
                tx,
                department_id=department_id,
                scope_paths=principal.scope_paths,
                open_only=open_only,
                limit=limit,
            )

    async def stored_alarm(self, alarm_id: uuid.UUID) -> StoredAlarm | None:
        """The alarm a task belongs to."""
        async with self.store.reading() as tx:
            return await get_alarm(tx, self.store.dialect, alarm_id)

    async def alarm_media(self, alarm_id: uuid.UUID) -> list[media_storage.MediaRow]:
        """The snapshots of a task's alarm (the caller checked the task is visible)."""
        return await media_storage.media(self.store, alarm_id)

    async def alarm_snapshot(self, alarm_id: uuid.UUID, media_id: uuid.UUID) -> tuple[str, bytes]:
        """(content type, bytes) of one snapshot of a task's alarm; KeyError when absent."""
        return await media_storage.media_content(self.store, alarm_id, media_id)

    async def history(self, task_id: uuid.UUID) -> list[Any]:
        """A task's history rows."""
        async with self.store.reading() as tx:
            return list(await self.repo.history(tx, task_id))

    async def photos(self, task_ids: Sequence[uuid.UUID]) -> list[PhotoRow]:
        """Photo metadata of tasks."""
        async with self.store.reading() as tx:
            return await self.repo.photos(tx, task_ids)

    async def deliveries(self, task_id: uuid.UUID) -> list[tuple[str, int, str, int, str | None]]:
        """(sink, revision, state, attempts, last error) of a task's outbox rows."""
        async with self.store.reading() as tx:
            rows = await self.repo.deliveries(tx, [task_id])
        return [(str(r[1]), int(r[2]), str(r[3]), int(r[4]), r[5]) for r in rows]

    async def photo(self, task_id: uuid.UUID, photo_id: uuid.UUID) -> tuple[str, bytes] | None:
        """One photo's type and bytes."""
        async with self.store.reading() as tx:
            return await self.repo.photo_content(tx, task_id, photo_id)
