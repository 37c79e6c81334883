"""Alarm storage: alarms, their history and change log, outbox rows, media, sink status.

Every write takes the caller's `Tx`, so an alarm change, its history entry, its
change-log row and its outbox rows commit together (or not at all) with
whatever else the transaction holds (the events that caused them, an audit row).

The change log (`alarm_changes.seq`) is the cursor of the pull API and the live
stream. A reader must never see seq 7 before seq 6 commits, so on PostgreSQL
every transaction that appends to the log first takes one transaction-level
advisory lock: sequence numbers are then handed out in commit order. SQLite has
a single writer, which gives the same guarantee.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from alarms.models import Alarm, AlarmState, HistoryEntry
from alarms.outbox import OutboxRecord
from camera_registry.events import RejectedMessage
from hub.alarms import media_storage, outbox_storage, query_storage
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
from hub.auth import audit_storage as audit_log
from hub.storage.base import (
    Row,
    SqlStore,
    Statement,
    StatementResult,
    StorageError,
    Tx,
    from_json,
    to_db_time,
)

__all__ = [
    "AlarmChange",
    "AlarmFilter",
    "AlarmRepository",
    "ClaimedDelivery",
    "DeliveryRow",
    "DeviceInfo",
    "InvalidCursor",
    "MediaRow",
    "SinkState",
    "StaleAlarm",
    "StoredAlarm",
    "decode_alarm_cursor",
    "encode_alarm_cursor",
]

log = logging.getLogger(__name__)

# Advisory lock id serialising appends to the change log ("alrm").
_CHANGE_LOG_LOCK = 0x616C_726D
# Parameters per multi-row statement: below SQLite's limit (32,766) and PostgreSQL's.
_MAX_PARAMS = 30_000


_UPDATE_SET = (
    "priority = v.v_priority, state = v.v_state, last_seen_at = v.v_last_seen_at,"
    " count = v.v_count, assignee = v.v_assignee, department = v.v_department,"
    " ack_due = v.v_ack_due, resolve_due = v.v_resolve_due,"
    " escalation_level = v.v_escalation_level, revision = v.v_revision,"
    " closed_reason = v.v_closed_reason, updated_at = v.v_updated_at"
)
_UPDATE_VALUES = (
    "v_id, v_previous, v_priority, v_state, v_last_seen_at, v_count, v_assignee,"
    " v_department, v_ack_due, v_resolve_due, v_escalation_level, v_revision,"
    " v_closed_reason, v_updated_at"
)
# One UPDATE for a batch's alarms, each guarded by the revision it was read at.
_PG_UPDATE_MANY = (
    f"UPDATE alarms AS a SET {_UPDATE_SET}"  # noqa: S608 - constants only
    " FROM unnest(%b::text[], %b::int[], %b::smallint[], %b::text[], %b::timestamptz[],"
    " %b::int[], %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[], %b::int[],"
    f" %b::int[], %b::text[], %b::timestamptz[]) AS v({_UPDATE_VALUES})"
    " WHERE a.id = v.v_id AND a.revision = v.v_previous RETURNING a.id"
)
_SQLITE_UPDATE_MANY = (
    f"WITH v({_UPDATE_VALUES}) AS (VALUES {{values}})"  # noqa: S608 - constants only
    f" UPDATE alarms SET {_UPDATE_SET} FROM v"
    " WHERE alarms.id = v.v_id AND alarms.revision = v.v_previous RETURNING id"
)


class StaleAlarm(Exception):
    """The alarm changed since it was read (its revision moved on); read it again."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the alarm engine reads about a device from the registry."""

    device_id: str
    kind: str
    name: str | None
    project: str | None
    jurisdiction: str | None
    jurisdiction_path: str | None
    linked_cameras: tuple[str, ...]
    linked_speakers: tuple[str, ...]
    latitude: float | None
    longitude: float | None
    address: str | None
    snapshot_url: str | None
    credentials: bytes | None = field(default=None, repr=False)
    #: The camera's RTSP URLs (main stream first), for a one-frame snapshot.
    rtsp_urls: tuple[str, ...] = field(default=(), repr=False)


def _opt_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _chunks(rows: Sequence[Sequence[Any]], width: int) -> list[Sequence[Sequence[Any]]]:
    """Row groups small enough for one multi-row statement on either backend.

    SQLite allows 32,766 parameters per statement and PostgreSQL 65,535.
    """
    size = max(1, _MAX_PARAMS // width)
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def _values(rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """`(%s, …), (%s, …)` for `rows`, and their parameters flattened in order."""
    group = "(" + ", ".join("%s" for _ in rows[0]) + ")"
    return ", ".join(group for _ in rows), [value for row in rows for value in row]


@dataclass(frozen=True)
class _Table:
    """A table the alarm engine appends to in batches: its columns and their types.

    On PostgreSQL a batch travels as one binary array per column through
    `unnest`, so the statement's text is the same for every batch size: psycopg
    parses it once and the server prepares it once. SQLite takes multi-row VALUES.
    """

    name: str
    columns: tuple[str, ...]
    pg_types: tuple[str, ...]
    #: Appended after the rows (ON CONFLICT …, RETURNING …).
    tail: str = ""

    @functools.cached_property
    def pg_sql(self) -> str:
        """INSERT … SELECT FROM unnest(arrays) in the arrays' order."""
        columns = ", ".join(self.columns)
        arrays = ", ".join(f"%b::{pg_type}[]" for pg_type in self.pg_types)
        return (
            f"INSERT INTO {self.name} ({columns}) SELECT {columns}"  # noqa: S608 - constants
            f" FROM unnest({arrays}) WITH ORDINALITY AS v({columns}, n) ORDER BY n{self.tail}"
        )

    def sqlite_sql(self, values: str) -> str:
        """INSERT … VALUES with `values` (the rows' placeholders)."""
        return f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES {values}{self.tail}"  # noqa: S608

    def pg_params(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """One list per column; JSON columns' values wrapped for jsonb."""
        params: list[list[Any]] = [list(column) for column in zip(*rows, strict=True)]
        for index, pg_type in enumerate(self.pg_types):
            if pg_type == "jsonb":
                params[index] = [None if v is None else Jsonb(v) for v in params[index]]
        return params


_ALARMS = _Table(
    "alarms",
    tuple(_ALARM_COLUMNS.split(", ")),
    (
        "text", "text", "smallint", "text", "text", "text", "text", "text", "text", "text",
        "timestamptz", "timestamptz", "int", "text", "text", "timestamptz", "timestamptz",
        "int", "int", "boolean", "text", "text", "text", "jsonb", "timestamptz",
        "timestamptz", "timestamptz",
    ),
)  # fmt: skip
_HISTORY = _Table(
    "alarm_history",
    (
        "alarm_id", "at", "actor", "action", "from_state", "to_state", "note", "details",
        "revision",
    ),
    ("text", "timestamptz", "text", "text", "text", "text", "text", "jsonb", "int"),
)  # fmt: skip
_CHANGES = _Table(
    "alarm_changes",
    ("alarm_id", "revision", "action", "at", "jurisdiction_path", "category", "payload"),
    ("text", "int", "text", "timestamptz", "text", "text", "jsonb"),
    " RETURNING seq, alarm_id, revision",
)
_OUTBOX = _Table(
    "outbox",
    (
        "alarm_id", "revision", "sink", "idempotency_key", "payload", "state", "attempts",
        "next_attempt_at", "created_at",
    ),
    ("text", "int", "text", "text", "jsonb", "text", "int", "timestamptz", "timestamptz"),
    " ON CONFLICT (idempotency_key) DO NOTHING",
)  # fmt: skip


#: (alarm, history entry, jurisdiction path, payload): one change-log row.
_ChangeItem = tuple[Alarm, HistoryEntry, str | None, Mapping[str, Any]]


def _rows(result: StatementResult) -> list[Row]:
    if not isinstance(result, list):
        raise StorageError("a query gave no rows")
    return result


def _check_updated(
    updates: Sequence[tuple[Alarm, int]], results: Sequence[StatementResult]
) -> None:
    changed = {str(row[0]) for result in results for row in _rows(result)}
    stale = [alarm for alarm, _ in updates if str(alarm.id) not in changed]
    if stale:
        raise StaleAlarm(f"alarm {stale[0].id} changed since it was read")


def _changes_from(
    items: Sequence[_ChangeItem], results: Sequence[StatementResult]
) -> list[AlarmChange]:
    """The changes of `items`, with the sequence numbers the change log gave them
    (`results`: those of the change-log inserts)."""
    seqs = {(str(row[1]), int(row[2])): int(row[0]) for result in results for row in _rows(result)}
    return [
        AlarmChange(
            seq=seqs[(str(alarm.id), alarm.revision)],
            alarm_id=alarm.id,
            revision=alarm.revision,
            action=entry.action.value,
            at=entry.at,
            jurisdiction_path=path,
            category=alarm.category.value,
            payload=payload,
        )
        for alarm, entry, path, payload in items
    ]


def _devices_from(rows: Sequence[Row]) -> dict[str, DeviceInfo]:
    found: dict[str, DeviceInfo] = {}
    for row in rows:
        attributes = from_json(row[4]) or {}
        if not isinstance(attributes, dict):
            attributes = {}
        linked = _strings(row[7]) or _strings(attributes.get("linked_cameras"))
        found[row[0]] = DeviceInfo(
            device_id=row[0],
            kind=row[1] or "device",
            name=row[2] or None,
            project=row[5] or _opt_text(attributes.get("project")),
            jurisdiction=row[3],
            jurisdiction_path=row[6] or _opt_text(attributes.get("jurisdiction_path")),
            linked_cameras=linked,
            linked_speakers=_strings(attributes.get("linked_speakers")),
            latitude=_float(row[8] if row[8] is not None else attributes.get("latitude")),
            longitude=_float(row[9] if row[9] is not None else attributes.get("longitude")),
            address=row[10] or _opt_text(attributes.get("address")),
            snapshot_url=row[11] or _opt_text(attributes.get("snapshot_url")),
            credentials=None if row[12] is None else bytes(row[12]),
            rtsp_urls=_strings(row[13]) or _strings(attributes.get("rtsp_urls")),
        )
    return found


def _open_alarms_from(rows: Sequence[Row]) -> dict[str, StoredAlarm]:
    found: dict[str, StoredAlarm] = {}
    for row in rows:
        stored = _alarm_from_row(row)
        current = found.get(stored.alarm.dedup_key)
        # An active alarm beats a resolved one with the same key.
        if current is None or not current.alarm.is_active or stored.alarm.is_active:
            found[stored.alarm.dedup_key] = stored
    return found


def _opt_time(value: datetime | None) -> datetime | None:
    return None if value is None else to_db_time(value)


def _alarm_row(stored: StoredAlarm) -> tuple[Any, ...]:
    alarm = stored.alarm
    return (
        str(alarm.id),
        alarm.type,
        alarm.priority.level,
        alarm.state.value,
        alarm.category.value,
        alarm.device_id,
        alarm.jurisdiction,
        alarm.title,
        alarm.sop,
        alarm.dedup_key,
        to_db_time(alarm.opened_at),
        to_db_time(alarm.last_seen_at),
        alarm.count,
        alarm.assignee,
        alarm.department,
        _opt_time(alarm.ack_due),
        _opt_time(alarm.resolve_due),
        alarm.escalation_level,
        alarm.revision,
        alarm.is_drill,
        alarm.closed_reason,
        stored.jurisdiction_path,
        stored.rule,
        dict(stored.details),
        to_db_time(stored.updated_at),
        _opt_time(alarm.ack_due_first),
        _opt_time(alarm.resolve_due_first),
    )


def _history_row(entry: HistoryEntry) -> tuple[Any, ...]:
    return (
        str(entry.alarm_id),
        to_db_time(entry.at),
        entry.actor,
        entry.action.value,
        entry.from_state.value if entry.from_state else None,
        entry.to_state.value,
        entry.note,
        dict(entry.details),
        entry.revision,
    )


def _strings(value: Any) -> tuple[str, ...]:
    decoded = from_json(value) if isinstance(value, str | bytes) else value
    if not isinstance(decoded, list):
        return ()
    return tuple(str(item) for item in decoded if isinstance(item, str) and item)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class AlarmRepository:
    """All SQL of the alarm engine, the dispatcher and the alarm API."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._device_columns: frozenset[str] | None = None

    # -- devices ------------------------------------------------------------

    async def _columns(self, tx: Tx) -> frozenset[str]:
        # The registry's migration adds device columns; read only those present.
        if self._device_columns is None:
            self._device_columns = await self.store.dialect.columns(tx, "devices")
        return self._device_columns

    def _member(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: one array parameter on PostgreSQL (the same
        statement text for any number of values), an IN list on SQLite."""
        return self.store.dialect.one_of(column, values)

    def _inserts(self, table: _Table, rows: Sequence[Sequence[Any]]) -> list[Statement]:
        """Statements appending `rows` to `table` in order (none for no rows)."""
        if not rows:
            return []
        returning = "RETURNING" in table.tail
        if self.store.dialect.bulk_arrays:
            return [Statement(table.pg_sql, table.pg_params(rows), rows=returning)]
        statements = []
        for chunk in _chunks(rows, len(table.columns)):
            values, params = _values(chunk)
            statements.append(Statement(table.sqlite_sql(values), params, rows=returning))
        return statements

    async def _insert(self, tx: Tx, table: _Table, rows: Sequence[Sequence[Any]]) -> list[Row]:
        """Append `rows` to `table` in order; the rows its RETURNING clause gives, if any."""
        found: list[Row] = []
        for result in await tx.run_all(self._inserts(table, rows)):
            if isinstance(result, list):
                found += result
        return found

    def _devices_query(self, ids: Sequence[str], present: frozenset[str]) -> Statement:
        optional = (
            "project",
            "jurisdiction_path",
            "linked_cameras",
            "latitude",
            "longitude",
            "address",
            "snapshot_url",
            "credentials",
            "rtsp_urls",
        )
        selected = ["id", "kind", "name", "jurisdiction", "attributes"]
        selected += [column if column in present else "NULL" for column in optional]
        member, params = self._member("id", ids)
        return Statement(
            f"SELECT {', '.join(selected)} FROM devices WHERE {member}",  # noqa: S608
            params,
            rows=True,
        )

    async def devices(self, tx: Tx, device_ids: Iterable[str]) -> dict[str, DeviceInfo]:
        """Registry facts for `device_ids` (unknown devices are absent)."""
        ids = sorted(set(device_ids))
        if not ids:
            return {}
        (rows,) = await tx.run_all([self._devices_query(ids, await self._columns(tx))])
        return _devices_from(_rows(rows))

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
    ) -> tuple[dict[str, DeviceInfo], dict[str, StoredAlarm]]:
        """`devices` and `open_alarms` together, in one trip to the database."""
        ids = sorted(set(device_ids))
        keys = sorted(set(dedup_keys))
        if not ids and not keys:
            return {}, {}
        present = await self._columns(tx)
        statements = [self._open_alarms_query(ids, keys)]
        if ids:
            statements.append(self._devices_query(ids, present))
        results = await tx.run_all(statements)
        devices = _devices_from(_rows(results[1])) if ids else {}
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
        """Store newly opened alarms (`updated_at` is the time of the write)."""
        await self._insert(tx, _ALARMS, [_alarm_row(stored) for stored in alarms])

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

    def _updates(self, updates: Sequence[tuple[Alarm, int]], now: datetime) -> list[Statement]:
        """Statements storing the next revision of several alarms (alarm, previous
        revision), each guarded by that revision; they return the ids they changed."""
        if not updates:
            return []
        rows = [
            (
                str(alarm.id),
                previous,
                alarm.priority.level,
                alarm.state.value,
                to_db_time(alarm.last_seen_at),
                alarm.count,
                alarm.assignee,
                alarm.department,
                _opt_time(alarm.ack_due),
                _opt_time(alarm.resolve_due),
                alarm.escalation_level,
                alarm.revision,
                alarm.closed_reason,
                to_db_time(now),
            )
            for alarm, previous in updates
        ]
        if self.store.dialect.bulk_arrays:
            columns = [list(column) for column in zip(*rows, strict=True)]
            return [Statement(_PG_UPDATE_MANY, columns, rows=True)]
        return [
            Statement(_SQLITE_UPDATE_MANY.format(values=_values(chunk)[0]), _values(chunk)[1], True)
            for chunk in _chunks(rows, 14)
        ]

    async def update_many(
        self, tx: Tx, updates: Sequence[tuple[Alarm, int]], *, now: datetime
    ) -> None:
        """Store the next revision of several alarms (alarm, previous revision) in one
        statement; raise StaleAlarm if any of them moved on meanwhile."""
        _check_updated(updates, await tx.run_all(self._updates(updates, now)))

    async def append_history(self, tx: Tx, entry: HistoryEntry) -> None:
        """Append one history entry."""
        await self.append_history_many(tx, [entry])

    async def append_history_many(self, tx: Tx, entries: Sequence[HistoryEntry]) -> None:
        """Append history entries in the given order."""
        await self._insert(tx, _HISTORY, [_history_row(entry) for entry in entries])

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

    def _change_log_lock(self) -> list[Statement]:
        """The change log's lock (PostgreSQL; SQLite's single writer needs none)."""
        lock = self.store.dialect.transaction_lock(_CHANGE_LOG_LOCK)
        return [] if lock is None else [Statement(lock, (), rows=True)]

    def _change_inserts(self, items: Sequence[_ChangeItem]) -> list[Statement]:
        """The change-log rows of `items` (to follow `_change_log_lock`)."""
        rows = [
            (
                str(alarm.id),
                alarm.revision,
                entry.action.value,
                to_db_time(entry.at),
                path,
                alarm.category.value,
                dict(payload),
            )
            for alarm, entry, path, payload in items
        ]
        return self._inserts(_CHANGES, rows)

    async def append_changes(self, tx: Tx, items: Sequence[_ChangeItem]) -> list[AlarmChange]:
        """Append (alarm, entry, jurisdiction path, payload) changes in the given order;
        the returned changes (in that order) are announced after commit."""
        if not items:
            return []
        lock = self._change_log_lock()
        results = await tx.run_all(lock + self._change_inserts(items))
        return _changes_from(items, results[len(lock) :])

    def _outbox_inserts(self, records: Sequence[OutboxRecord], now: datetime) -> list[Statement]:
        rows = [
            (
                str(r.alarm_id),
                r.revision,
                r.sink,
                r.idempotency_key,
                dict(r.payload),
                r.state.value,
                r.attempts,
                to_db_time(r.next_attempt_at),
                to_db_time(now),
            )
            for r in records
        ]
        return self._inserts(_OUTBOX, rows)

    async def insert_outbox(self, tx: Tx, records: Sequence[OutboxRecord], now: datetime) -> None:
        """Queue deliveries; a record already queued (same idempotency key) is kept."""
        await tx.run_all(self._outbox_inserts(records, now))

    async def write_batch(
        self,
        tx: Tx,
        *,
        updates: Sequence[tuple[Alarm, int]],
        inserts: Sequence[StoredAlarm],
        history: Sequence[HistoryEntry],
        changes: Sequence[_ChangeItem],
        outbox: Sequence[OutboxRecord],
        now: datetime,
    ) -> list[AlarmChange]:
        """What one batch of events did to alarms, in one trip to the database:
        updates (raising StaleAlarm if one moved on), new alarms, history entries,
        change-log rows (returned, for announcing after commit) and outbox rows.

        Updates go first: an alarm closed here frees its dedup key for one opened here.
        """
        update_statements = self._updates(updates, now)
        statements = [
            *update_statements,
            *(self._change_log_lock() if changes else []),
            *self._inserts(_ALARMS, [_alarm_row(stored) for stored in inserts]),
            *self._inserts(_HISTORY, [_history_row(entry) for entry in history]),
            *self._outbox_inserts(outbox, now),
        ]
        change_statements = self._change_inserts(changes)
        results = await tx.run_all(statements + change_statements)
        _check_updated(updates, results[: len(update_statements)])
        return _changes_from(changes, results[len(statements) :])

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
