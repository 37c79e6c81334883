"""Operator actions on alarms and what the alarm API reads: one service for the routes.

Routes call this service only: it owns the transactions and the audit rows.
An action goes through `alarms.workflow.apply` in one transaction with its
history entry, change log, outbox rows and an audit-log row, and is announced
after commit. Reads are scoped by the caller's visibility; an alarm the caller
may not see is `AlarmNotFound`, like one that does not exist.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alarms.models import AlarmAction, HistoryEntry
from alarms.sla import SlaPolicy
from alarms.workflow import apply
from hub.alarms import media_storage, outbox_storage, query_storage
from hub.alarms.recording import Recorder, location_from
from hub.alarms.storage import (
    AlarmChange,
    AlarmFilter,
    DeliveryRow,
    MediaRow,
    SinkState,
    StoredAlarm,
    get_alarm,
    update_alarm,
)
from hub.alarms.text_storage import AlarmTexts, opening_texts
from hub.auth import audit_storage
from hub.clock import Clock, utcnow
from hub.storage.base import SqlStore, Tx

__all__ = ["AlarmActions", "AlarmDetail", "AlarmNotFound", "CloseGuard", "Visible"]

log = logging.getLogger(__name__)

#: (transaction, the alarm as stored, the action asked) -> None, or InvalidTransition.
CloseGuard = Callable[[Tx, StoredAlarm, AlarmAction], Awaitable[None]]
#: Whether the caller may see a stored alarm (jurisdiction and category scope).
Visible = Callable[[StoredAlarm], bool]


class AlarmNotFound(LookupError):
    """No such alarm, or none the caller may see (both answer 404)."""


@dataclass(frozen=True, slots=True)
class AlarmDetail:
    """One alarm with everything its detail page shows."""

    alarm: StoredAlarm
    texts: AlarmTexts | None
    history: list[HistoryEntry]
    media: list[MediaRow]
    deliveries: list[DeliveryRow]


class AlarmActions:
    """Operator actions and the alarm API's reads."""

    def __init__(
        self,
        store: SqlStore,
        recorder: Recorder,
        policy: SlaPolicy,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._policy = policy
        self._clock = clock
        self._close_guards: list[CloseGuard] = []

    def add_close_guard(self, guard: CloseGuard) -> None:
        """Ask `guard` inside the transaction before an operator action on an alarm; it
        raises InvalidTransition to refuse (department tasks not yet accepted)."""
        self._close_guards.append(guard)

    # -- reads ----------------------------------------------------------------

    async def get(self, alarm_id: uuid.UUID, visible: Visible) -> StoredAlarm:
        """The alarm, if the caller may see it; AlarmNotFound otherwise."""
        async with self._store.reading() as tx:
            stored = await get_alarm(tx, self._store.dialect, alarm_id)
        if stored is None or not visible(stored):
            raise AlarmNotFound(str(alarm_id))
        return stored

    async def page(
        self,
        query: AlarmFilter,
        *,
        scope_paths: Sequence[str] | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[StoredAlarm], str | None]:
        """A page of alarms (newest first) and the next page's cursor; InvalidCursor for
        a cursor this never gave out."""
        return await query_storage.search_page(
            self._store, query, scope_paths=scope_paths, limit=limit, cursor=cursor
        )

    async def texts(self, alarm_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AlarmTexts]:
        """The title and SOP per language each alarm was opened with."""
        return await opening_texts(self._store, list(alarm_ids))

    async def detail(self, alarm_id: uuid.UUID, visible: Visible) -> AlarmDetail:
        """The alarm with its history, snapshots and delivery receipts."""
        stored = await self.get(alarm_id, visible)
        texts = (await self.texts([alarm_id])).get(alarm_id)
        return AlarmDetail(
            alarm=stored,
            texts=texts,
            history=await query_storage.history(self._store, alarm_id),
            media=await media_storage.media(self._store, alarm_id),
            deliveries=await query_storage.deliveries(self._store, alarm_id),
        )

    async def media_content(
        self, alarm_id: uuid.UUID, media_id: uuid.UUID, visible: Visible
    ) -> tuple[str, bytes]:
        """(content type, bytes) of one snapshot; AlarmNotFound or KeyError when absent."""
        await self.get(alarm_id, visible)
        return await media_storage.media_content(self._store, alarm_id, media_id)

    async def changes(
        self,
        since: int,
        *,
        limit: int,
        scope_paths: Sequence[str] | None,
        categories: Sequence[str] = (),
    ) -> list[AlarmChange]:
        """Committed changes after `since` in sequence order, within the scope."""
        return await query_storage.changes(
            self._store, since, limit=limit, scope_paths=scope_paths, categories=categories
        )

    async def last_change_seq(self) -> int:
        """The newest change's sequence number (0 when there is none)."""
        return await query_storage.last_change_seq(self._store)

    async def sink_states(self, names: Sequence[str]) -> list[SinkState]:
        """Status and backlog per sink."""
        return await outbox_storage.sink_states(self._store, names)

    async def enable_sink(
        self, name: str, actor: str, remote_addr: str | None, *, requeue_dead: bool
    ) -> SinkState:
        """Re-enable a sink an endpoint disabled (and retry its dead rows); audited."""
        now = self._clock()
        await outbox_storage.set_sink_disabled(self._store, name, False, None, now)
        if requeue_dead:
            await outbox_storage.requeue_dead(self._store, name, now)
        async with self._store.transaction() as tx:
            await audit_storage.record(
                tx,
                actor,
                "sink.enable",
                name,
                remote_addr,
                {"requeue_dead": requeue_dead},
                at=now,
            )
        (state,) = await outbox_storage.sink_states(self._store, [name])
        return state

    # -- operator actions -------------------------------------------------------

    async def act(
        self,
        alarm_id: uuid.UUID,
        action: AlarmAction | str,
        actor: str,
        *,
        visible: Callable[[StoredAlarm], bool],
        note: str | None = None,
        assignee: str | None = None,
        department: str | None = None,
        remote_addr: str | None = None,
    ) -> StoredAlarm:
        """Apply an operator action; raises AlarmNotFound, InvalidTransition or ValueError."""
        action = AlarmAction(action)
        if action in (
            AlarmAction.OPEN,
            AlarmAction.ESCALATE,
            AlarmAction.AUTO_CLOSE,
            AlarmAction.REPEAT,
        ):
            raise ValueError(f"{action.value} is not an operator action")
        now = self._clock()
        async with self._store.transaction() as tx:
            stored = await get_alarm(tx, self._store.dialect, alarm_id, for_update=True)
            if stored is None or not visible(stored):
                raise AlarmNotFound(str(alarm_id))
            for guard in self._close_guards:
                await guard(tx, stored, action)
            resolve_due = None
            if action is AlarmAction.REOPEN:
                resolve_due = now + self._policy.target(stored.alarm.priority).resolve
            updated, entry = apply(
                stored.alarm,
                action,
                actor,
                now,
                note=note,
                assignee=assignee,
                department=department,
                resolve_due=resolve_due,
            )
            await update_alarm(tx, updated, previous_revision=stored.alarm.revision, now=now)
            change, queued = await self._recorder.record(
                tx,
                updated,
                entry,
                jurisdiction_path=stored.jurisdiction_path,
                location=location_from(stored.details),
                notify=True,
                now=now,
            )
            await audit_storage.record(
                tx,
                actor,
                f"alarm.{action.value}",
                str(alarm_id),
                remote_addr,
                at=now,
                details={
                    "from_state": entry.from_state.value if entry.from_state else None,
                    "to_state": entry.to_state.value,
                    "revision": updated.revision,
                    "note": note,
                    "assignee": assignee,
                    "department": department,
                },
            )
        self._recorder.announce([change], queued)
        return StoredAlarm(updated, stored.jurisdiction_path, stored.rule, stored.details, now)

    async def add_evidence(
        self, alarm_id: uuid.UUID, evidence: Sequence[Mapping[str, Any]], note: str
    ) -> AlarmChange | None:
        """A revision announcing evidence that became available (e.g. clips of the linked
        cameras): history, change log and outbox like any revision, state unchanged.
        None when the alarm does not exist."""
        now = self._clock()
        async with self._store.transaction() as tx:
            stored = await get_alarm(tx, self._store.dialect, alarm_id, for_update=True)
            if stored is None:
                return None
            updated, entry = apply(
                stored.alarm,
                AlarmAction.NOTE,
                "system:evidence",
                now,
                note=note,
                details={"evidence": [dict(item) for item in evidence]},
            )
            await update_alarm(tx, updated, previous_revision=stored.alarm.revision, now=now)
            change, queued = await self._recorder.record(
                tx,
                updated,
                entry,
                jurisdiction_path=stored.jurisdiction_path,
                location=location_from(stored.details),
                notify=True,
                now=now,
                evidence=evidence,
            )
        self._recorder.announce([change], queued)
        return change
