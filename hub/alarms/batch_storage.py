"""Alarm writes of the engine: new alarms, revisions, history, change log, outbox rows.

Free functions over the caller's `Tx` (and the store's dialect), so a batch's
alarm changes, history entries, change-log rows and outbox rows commit together
(or not at all) with whatever else the transaction holds.

The change log (`alarm_changes.seq`) is the cursor of the pull API and the live
stream. A reader must never see seq 7 before seq 6 commits, so on PostgreSQL
every transaction that appends to the log first takes one transaction-level
advisory lock: sequence numbers are then handed out in commit order. SQLite has
a single writer, which gives the same guarantee.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from alarms.models import Alarm, HistoryEntry
from alarms.outbox import OutboxRecord
from hub.alarms.row_storage import ALARM_COLUMNS as _ALARM_COLUMNS
from hub.alarms.row_storage import AlarmChange, StoredAlarm
from hub.alarms.row_storage import result_rows as _rows
from hub.storage.base import Row, Statement, StatementResult, Tx, to_db_time
from hub.storage.dialect import Dialect

__all__ = [
    "CHANGE_LOG_LOCK",
    "ChangeItem",
    "StaleAlarm",
    "append_changes",
    "append_history_many",
    "insert_many",
    "insert_outbox",
    "update_many",
    "write_batch",
]

# Advisory lock id serialising appends to the change log ("alrm").
CHANGE_LOG_LOCK = 0x616C_726D
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
ChangeItem = tuple[Alarm, HistoryEntry, str | None, Mapping[str, Any]]


def _check_updated(
    updates: Sequence[tuple[Alarm, int]], results: Sequence[StatementResult]
) -> None:
    changed = {str(row[0]) for result in results for row in _rows(result)}
    stale = [alarm for alarm, _ in updates if str(alarm.id) not in changed]
    if stale:
        raise StaleAlarm(f"alarm {stale[0].id} changed since it was read")


def _changes_from(
    items: Sequence[ChangeItem], results: Sequence[StatementResult]
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


def _inserts(dialect: Dialect, table: _Table, rows: Sequence[Sequence[Any]]) -> list[Statement]:
    """Statements appending `rows` to `table` in order (none for no rows)."""
    if not rows:
        return []
    returning = "RETURNING" in table.tail
    if dialect.bulk_arrays:
        return [Statement(table.pg_sql, table.pg_params(rows), rows=returning)]
    statements = []
    for chunk in _chunks(rows, len(table.columns)):
        values, params = _values(chunk)
        statements.append(Statement(table.sqlite_sql(values), params, rows=returning))
    return statements


async def _insert(
    tx: Tx, dialect: Dialect, table: _Table, rows: Sequence[Sequence[Any]]
) -> list[Row]:
    """Append `rows` to `table` in order; the rows its RETURNING clause gives, if any."""
    found: list[Row] = []
    for result in await tx.run_all(_inserts(dialect, table, rows)):
        if isinstance(result, list):
            found += result
    return found


async def insert_many(tx: Tx, dialect: Dialect, alarms: Sequence[StoredAlarm]) -> None:
    """Store newly opened alarms (`updated_at` is the time of the write)."""
    await _insert(tx, dialect, _ALARMS, [_alarm_row(stored) for stored in alarms])


def _updates(
    dialect: Dialect, updates: Sequence[tuple[Alarm, int]], now: datetime
) -> list[Statement]:
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
    if dialect.bulk_arrays:
        columns = [list(column) for column in zip(*rows, strict=True)]
        return [Statement(_PG_UPDATE_MANY, columns, rows=True)]
    return [
        Statement(_SQLITE_UPDATE_MANY.format(values=_values(chunk)[0]), _values(chunk)[1], True)
        for chunk in _chunks(rows, 14)
    ]


async def update_many(
    tx: Tx, dialect: Dialect, updates: Sequence[tuple[Alarm, int]], *, now: datetime
) -> None:
    """Store the next revision of several alarms (alarm, previous revision) in one
    statement; raise StaleAlarm if any of them moved on meanwhile."""
    _check_updated(updates, await tx.run_all(_updates(dialect, updates, now)))


async def append_history_many(tx: Tx, dialect: Dialect, entries: Sequence[HistoryEntry]) -> None:
    """Append history entries in the given order."""
    await _insert(tx, dialect, _HISTORY, [_history_row(entry) for entry in entries])


def _change_log_lock(dialect: Dialect) -> list[Statement]:
    """The change log's lock (PostgreSQL; SQLite's single writer needs none)."""
    lock = dialect.transaction_lock(CHANGE_LOG_LOCK)
    return [] if lock is None else [Statement(lock, (), rows=True)]


def _change_inserts(dialect: Dialect, items: Sequence[ChangeItem]) -> list[Statement]:
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
    return _inserts(dialect, _CHANGES, rows)


async def append_changes(
    tx: Tx, dialect: Dialect, items: Sequence[ChangeItem]
) -> list[AlarmChange]:
    """Append (alarm, entry, jurisdiction path, payload) changes in the given order;
    the returned changes (in that order) are announced after commit."""
    if not items:
        return []
    lock = _change_log_lock(dialect)
    results = await tx.run_all(lock + _change_inserts(dialect, items))
    return _changes_from(items, results[len(lock) :])


def _outbox_inserts(
    dialect: Dialect, records: Sequence[OutboxRecord], now: datetime
) -> list[Statement]:
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
    return _inserts(dialect, _OUTBOX, rows)


async def insert_outbox(
    tx: Tx, dialect: Dialect, records: Sequence[OutboxRecord], now: datetime
) -> None:
    """Queue deliveries; a record already queued (same idempotency key) is kept."""
    await tx.run_all(_outbox_inserts(dialect, records, now))


async def write_batch(
    tx: Tx,
    dialect: Dialect,
    *,
    updates: Sequence[tuple[Alarm, int]],
    inserts: Sequence[StoredAlarm],
    history: Sequence[HistoryEntry],
    changes: Sequence[ChangeItem],
    outbox: Sequence[OutboxRecord],
    now: datetime,
) -> list[AlarmChange]:
    """What one batch of events did to alarms, in one trip to the database:
    updates (raising StaleAlarm if one moved on), new alarms, history entries,
    change-log rows (returned, for announcing after commit) and outbox rows.

    Updates go first: an alarm closed here frees its dedup key for one opened here.
    """
    update_statements = _updates(dialect, updates, now)
    statements = [
        *update_statements,
        *(_change_log_lock(dialect) if changes else []),
        *_inserts(dialect, _ALARMS, [_alarm_row(stored) for stored in inserts]),
        *_inserts(dialect, _HISTORY, [_history_row(entry) for entry in history]),
        *_outbox_inserts(dialect, outbox, now),
    ]
    change_statements = _change_inserts(dialect, changes)
    results = await tx.run_all(statements + change_statements)
    _check_updated(updates, results[: len(update_statements)])
    return _changes_from(changes, results[len(statements) :])
