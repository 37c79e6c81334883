"""Alarm storage: the repository the alarm engine, the dispatcher and the alarm API use.

It reads devices (the device storage's `AlarmDevice` projection) and open alarms for
a batch, single alarms and jurisdiction names, and stores single revisions, rejected
events and audit rows itself. The rest lives in sibling modules of free functions,
which the repository delegates to:

- `batch_storage`: the engine's batch writes (alarms, history, change log, outbox);
- `query_storage`: search with keyset paging, history, delivery receipts, the change log;
- `media_storage`: snapshots bound to an alarm;
- `outbox_storage`: claiming deliveries under leases, their outcomes, sink status;
- `row_storage`: the alarm columns and row reader they share.

Every write takes the caller's `Tx`, so an alarm change, its history entry, its
change-log row and its outbox rows commit together (or not at all) with
whatever else the transaction holds (the events that caused them, an audit row).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from alarms.models import Alarm, AlarmState, HistoryEntry
from alarms.outbox import OutboxRecord
from camera_registry.events import RejectedMessage
from hub.alarms import batch_storage, media_storage, outbox_storage, query_storage
from hub.alarms.batch_storage import ChangeItem, StaleAlarm
from hub.alarms.media_storage import MediaRow
from hub.alarms.outbox_storage import (
    ClaimedDelivery,
    SinkState,
)
from hub.alarms.query_storage import (
    AlarmFilter,
    DeliveryRow,
    InvalidCursor,
    decode_alarm_cursor,
    encode_alarm_cursor,
)
from hub.alarms.row_storage import ACTIVE as _ACTIVE
from hub.alarms.row_storage import ALARM_COLUMNS as _ALARM_COLUMNS
from hub.alarms.row_storage import AlarmChange, StoredAlarm
from hub.alarms.row_storage import alarm_from_row as _alarm_from_row
from hub.alarms.row_storage import in_list as _in_list
from hub.alarms.row_storage import result_rows as _rows
from hub.auth import audit_storage as audit_log
from hub.devices import storage as devices_repo
from hub.devices.storage import AlarmDevice
from hub.storage.base import (
    Row,
    SqlStore,
    Statement,
    Tx,
    to_db_time,
)

__all__ = [
    "AlarmChange",
    "AlarmDevice",
    "AlarmFilter",
    "AlarmRepository",
    "ClaimedDelivery",
    "DeliveryRow",
    "InvalidCursor",
    "MediaRow",
    "SinkState",
    "StaleAlarm",
    "StoredAlarm",
    "decode_alarm_cursor",
    "encode_alarm_cursor",
]

log = logging.getLogger(__name__)


def _open_alarms_from(rows: Sequence[Row]) -> dict[str, StoredAlarm]:
    found: dict[str, StoredAlarm] = {}
    for row in rows:
        stored = _alarm_from_row(row)
        current = found.get(stored.alarm.dedup_key)
        # An active alarm beats a resolved one with the same key.
        if current is None or not current.alarm.is_active or stored.alarm.is_active:
            found[stored.alarm.dedup_key] = stored
    return found


class AlarmRepository:
    """The alarm engine's, the dispatcher's and the alarm API's way to the alarm tables."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._device_columns: frozenset[str] | None = None

    # -- devices ------------------------------------------------------------

    async def _columns(self, tx: Tx) -> frozenset[str]:
        # The registry's migration adds device columns; read only those present.
        if self._device_columns is None:
            self._device_columns = await devices_repo.device_columns(tx, self.store.dialect)
        return self._device_columns

    def _member(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: one array parameter on PostgreSQL (the same
        statement text for any number of values), an IN list on SQLite."""
        return self.store.dialect.one_of(column, values)

    async def devices(self, tx: Tx, device_ids: Iterable[str]) -> dict[str, AlarmDevice]:
        """Registry facts for `device_ids` (unknown devices are absent)."""
        return await devices_repo.alarm_devices(
            tx, self.store.dialect, device_ids, await self._columns(tx)
        )

    # -- alarms -------------------------------------------------------------

    def _open_alarms_query(self, ids: Sequence[str], keys: Sequence[str]) -> Statement:
        states = (*_ACTIVE, AlarmState.RESOLVED.value)
        clauses: list[str] = []
        params: list[Any] = []
        if ids:
            member, values = self._member("device_id", ids)
            clauses.append(f"({member} AND state IN ({_in_list(states)}))")
            params += [*values, *states]
        if keys:
            member, values = self._member("dedup_key", keys)
            clauses.append(f"({member} AND state IN ({_in_list(_ACTIVE)}))")
            params += [*values, *_ACTIVE]
        lock = self.store.dialect.row_lock()
        return Statement(
            f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE {' OR '.join(clauses)}"  # noqa: S608
            f" ORDER BY opened_at{lock}",
            params,
            rows=True,
        )

    async def open_alarms(
        self, tx: Tx, device_ids: Iterable[str], dedup_keys: Iterable[str] = ()
    ) -> dict[str, StoredAlarm]:
        """Active and resolved alarms of `device_ids` and active alarms of `dedup_keys`
        (a key may group several devices), by dedup key (newest wins), in one query.

        Locked for the transaction on PostgreSQL, so an operator action on one of
        them waits for the batch (and the batch's revision check cannot fail)."""
        ids = sorted(set(device_ids))
        keys = sorted(set(dedup_keys))
        if not ids and not keys:
            return {}
        (rows,) = await tx.run_all([self._open_alarms_query(ids, keys)])
        return _open_alarms_from(_rows(rows))

    async def batch_context(
        self, tx: Tx, device_ids: Iterable[str], dedup_keys: Iterable[str] = ()
    ) -> tuple[dict[str, AlarmDevice], dict[str, StoredAlarm]]:
        """`devices` and `open_alarms` together, in one trip to the database."""
        ids = sorted(set(device_ids))
        keys = sorted(set(dedup_keys))
        if not ids and not keys:
            return {}, {}
        present = await self._columns(tx)
        statements = [self._open_alarms_query(ids, keys)]
        if ids:
            statements.append(
                devices_repo.alarm_devices_statement(self.store.dialect, ids, present)
            )
        results = await tx.run_all(statements)
        devices = devices_repo.alarm_devices_from(_rows(results[1])) if ids else {}
        return devices, _open_alarms_from(_rows(results[0]))

    async def get(
        self, tx: Tx, alarm_id: uuid.UUID, *, for_update: bool = False
    ) -> StoredAlarm | None:
        """One alarm by id (locked for the transaction on PostgreSQL when `for_update`)."""
        lock = self.store.dialect.row_lock(for_update)
        row = await tx.fetchone(
            f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE id = %s{lock}",  # noqa: S608
            (str(alarm_id),),
        )
        return None if row is None else _alarm_from_row(row)

    async def insert(
        self,
        tx: Tx,
        alarm: Alarm,
        *,
        jurisdiction_path: str | None,
        rule: str | None,
        details: Mapping[str, Any],
        now: datetime,
    ) -> None:
        """Store a newly opened alarm."""
        await self.insert_many(tx, [StoredAlarm(alarm, jurisdiction_path, rule, details, now)])

    async def insert_many(self, tx: Tx, alarms: Sequence[StoredAlarm]) -> None:
        """See `hub.alarms.batch_storage.insert_many`."""
        await batch_storage.insert_many(tx, self.store.dialect, alarms)

    async def update_many(
        self, tx: Tx, updates: Sequence[tuple[Alarm, int]], *, now: datetime
    ) -> None:
        """See `hub.alarms.batch_storage.update_many`."""
        await batch_storage.update_many(tx, self.store.dialect, updates, now=now)

    async def append_history_many(self, tx: Tx, entries: Sequence[HistoryEntry]) -> None:
        """See `hub.alarms.batch_storage.append_history_many`."""
        await batch_storage.append_history_many(tx, self.store.dialect, entries)

    async def append_changes(self, tx: Tx, items: Sequence[ChangeItem]) -> list[AlarmChange]:
        """See `hub.alarms.batch_storage.append_changes`."""
        return await batch_storage.append_changes(tx, self.store.dialect, items)

    async def insert_outbox(self, tx: Tx, records: Sequence[OutboxRecord], now: datetime) -> None:
        """See `hub.alarms.batch_storage.insert_outbox`."""
        await batch_storage.insert_outbox(tx, self.store.dialect, records, now)

    async def write_batch(
        self,
        tx: Tx,
        *,
        updates: Sequence[tuple[Alarm, int]],
        inserts: Sequence[StoredAlarm],
        history: Sequence[HistoryEntry],
        changes: Sequence[ChangeItem],
        outbox: Sequence[OutboxRecord],
        now: datetime,
    ) -> list[AlarmChange]:
        """See `hub.alarms.batch_storage.write_batch`."""
        return await batch_storage.write_batch(
            tx,
            self.store.dialect,
            updates=updates,
            inserts=inserts,
            history=history,
            changes=changes,
            outbox=outbox,
            now=now,
        )

    async def update(self, tx: Tx, alarm: Alarm, *, previous_revision: int, now: datetime) -> None:
        """Store the next revision of an alarm; raise StaleAlarm if another writer got there."""
        changed = await tx.execute(
            "UPDATE alarms SET priority = %s, state = %s, last_seen_at = %s, count = %s,"
            " assignee = %s, department = %s, ack_due = %s, resolve_due = %s,"
            " escalation_level = %s, revision = %s, closed_reason = %s, updated_at = %s"
            " WHERE id = %s AND revision = %s",
            (
                alarm.priority.level,
                alarm.state.value,
                to_db_time(alarm.last_seen_at),
                alarm.count,
                alarm.assignee,
                alarm.department,
                alarm.ack_due,
                alarm.resolve_due,
                alarm.escalation_level,
                alarm.revision,
                alarm.closed_reason,
                to_db_time(now),
                str(alarm.id),
                previous_revision,
            ),
        )
        if changed != 1:
            raise StaleAlarm(f"alarm {alarm.id} is no longer at revision {previous_revision}")

    async def append_history(self, tx: Tx, entry: HistoryEntry) -> None:
        """Append one history entry."""
        await self.append_history_many(tx, [entry])

    async def append_change(
        self,
        tx: Tx,
        alarm: Alarm,
        entry: HistoryEntry,
        jurisdiction_path: str | None,
        payload: Mapping[str, Any],
    ) -> AlarmChange:
        """Append to the change log; the returned change is announced after commit."""
        (change,) = await self.append_changes(tx, [(alarm, entry, jurisdiction_path, payload)])
        return change

    async def insert_rejected(self, tx: Tx, rejected: RejectedMessage) -> None:
        """Keep an event the engine could not evaluate, with the reason."""
        await tx.execute(
            "INSERT INTO rejected_messages (id, time, source, origin, device_id, reason, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (
                rejected.message_id,
                to_db_time(rejected.time),
                rejected.source,
                rejected.origin,
                rejected.device_id,
                rejected.reason,
                rejected.payload,
            ),
        )

    async def audit(
        self,
        tx: Tx,
        *,
        at: datetime,
        actor: str,
        action: str,
        target: str,
        remote_addr: str | None,
        details: Mapping[str, Any],
    ) -> None:
        """One audit-log row for an operator action."""
        await audit_log.record(tx, actor, action, target, remote_addr, details, at=at)

    # -- queries ------------------------------------------------------------

    async def search(
        self,
        query: AlarmFilter,
        *,
        scope_paths: Sequence[str] | None,
        limit: int,
        cursor: tuple[datetime, str] | None = None,
    ) -> list[StoredAlarm]:
        """See `hub.alarms.query_storage.search`."""
        return await query_storage.search(
            self.store, query, scope_paths=scope_paths, limit=limit, cursor=cursor
        )

    async def search_page(
        self,
        query: AlarmFilter,
        *,
        scope_paths: Sequence[str] | None,
        limit: int,
        cursor: str | None = None,
    ) -> tuple[list[StoredAlarm], str | None]:
        """See `hub.alarms.query_storage.search_page`."""
        return await query_storage.search_page(
            self.store, query, scope_paths=scope_paths, limit=limit, cursor=cursor
        )

    async def history(self, alarm_id: uuid.UUID) -> list[HistoryEntry]:
        """See `hub.alarms.query_storage.history`."""
        return await query_storage.history(self.store, alarm_id)

    async def deliveries(self, alarm_id: uuid.UUID) -> list[DeliveryRow]:
        """See `hub.alarms.query_storage.deliveries`."""
        return await query_storage.deliveries(self.store, alarm_id)

    async def changes(
        self,
        since: int,
        *,
        limit: int,
        scope_paths: Sequence[str] | None,
        categories: Sequence[str] = (),
    ) -> list[AlarmChange]:
        """See `hub.alarms.query_storage.changes`."""
        return await query_storage.changes(
            self.store, since, limit=limit, scope_paths=scope_paths, categories=categories
        )

    async def last_change_seq(self) -> int:
        """See `hub.alarms.query_storage.last_change_seq`."""
        return await query_storage.last_change_seq(self.store)

    async def due_for_escalation(
        self, now: datetime, *, max_level: int, limit: int = 100
    ) -> list[uuid.UUID]:
        """See `hub.alarms.query_storage.due_for_escalation`."""
        return await query_storage.due_for_escalation(
            self.store, now, max_level=max_level, limit=limit
        )

    async def jurisdiction_names(self, tx: Tx, codes: Sequence[str]) -> dict[str, str]:
        """Names of the jurisdiction nodes with these codes (unknown codes are absent)."""
        if not codes:
            return {}
        marks = ", ".join(["%s"] * len(codes))
        rows = await tx.fetchall(
            f"SELECT code, name FROM jurisdictions WHERE code IN ({marks})",  # noqa: S608
            list(codes),
        )
        return {str(row[0]): str(row[1]) for row in rows}

    # -- media ----------------------------------------------------------------

    async def add_media(
        self,
        alarm_id: uuid.UUID,
        device_id: str,
        content_type: str,
        data: bytes,
        taken_at: datetime,
        source: str,
    ) -> uuid.UUID:
        """See `hub.alarms.media_storage.add_media`."""
        return await media_storage.add_media(
            self.store, alarm_id, device_id, content_type, data, taken_at, source
        )

    async def media(self, alarm_id: uuid.UUID) -> list[MediaRow]:
        """See `hub.alarms.media_storage.media`."""
        return await media_storage.media(self.store, alarm_id)

    async def media_content(self, alarm_id: uuid.UUID, media_id: uuid.UUID) -> tuple[str, bytes]:
        """See `hub.alarms.media_storage.media_content`."""
        return await media_storage.media_content(self.store, alarm_id, media_id)

    # -- outbox (hub.alarms.outbox_storage) ----------------------------------

    async def claim(
        self, worker: str, sinks: Sequence[str], now: datetime, *, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """See `hub.alarms.outbox_storage.claim`."""
        return await outbox_storage.claim(
            self.store, worker, sinks, now, lease_until=lease_until, limit=limit
        )

    async def mark_delivered(self, row_id: int, now: datetime, receipt: str) -> None:
        """See `hub.alarms.outbox_storage.mark_delivered`."""
        return await outbox_storage.mark_delivered(self.store, row_id, now, receipt)

    async def mark_failed(self, row_id: int, worker: str, record: OutboxRecord) -> None:
        """See `hub.alarms.outbox_storage.mark_failed`."""
        return await outbox_storage.mark_failed(self.store, row_id, worker, record)

    async def take_back(self, worker: str, now: datetime) -> int:
        """See `hub.alarms.outbox_storage.take_back`."""
        return await outbox_storage.take_back(self.store, worker, now)

    async def extend_leases(
        self, worker: str, row_ids: Sequence[int], lease_until: datetime
    ) -> set[int]:
        """See `hub.alarms.outbox_storage.extend_leases`."""
        return await outbox_storage.extend_leases(self.store, worker, row_ids, lease_until)

    async def release(self, row_id: int, worker: str, now: datetime) -> None:
        """See `hub.alarms.outbox_storage.release`."""
        return await outbox_storage.release(self.store, row_id, worker, now)

    async def requeue_dead(self, sink: str, now: datetime) -> int:
        """See `hub.alarms.outbox_storage.requeue_dead`."""
        return await outbox_storage.requeue_dead(self.store, sink, now)

    async def outbox_backlog(self) -> dict[tuple[str, str], int]:
        """See `hub.alarms.outbox_storage.outbox_backlog`."""
        return await outbox_storage.outbox_backlog(self.store)

    async def next_due(self, sinks: Sequence[str]) -> datetime | None:
        """See `hub.alarms.outbox_storage.next_due`."""
        return await outbox_storage.next_due(self.store, sinks)

    async def disabled_sinks(self) -> dict[str, str]:
        """See `hub.alarms.outbox_storage.disabled_sinks`."""
        return await outbox_storage.disabled_sinks(self.store)

    async def set_sink_disabled(
        self, name: str, disabled: bool, reason: str | None, now: datetime
    ) -> None:
        """See `hub.alarms.outbox_storage.set_sink_disabled`."""
        return await outbox_storage.set_sink_disabled(self.store, name, disabled, reason, now)

    async def sink_states(self, names: Sequence[str]) -> list[SinkState]:
        """See `hub.alarms.outbox_storage.sink_states`."""
        return await outbox_storage.sink_states(self.store, names)
