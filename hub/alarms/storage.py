"""Alarm storage: what the alarm engine reads for a batch and stores of single alarms.

Free functions, like every alarm storage module: the open alarms of a batch (with its
devices' facts from the device storage's `AlarmDevice` projection, in the same trip),
single alarms (read, next revision), jurisdiction names and rejected events.
The rest lives in sibling modules of free functions, which callers use directly:

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

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from alarms.models import Alarm, AlarmState
from camera_registry.events import RejectedMessage
from hub.alarms.batch_storage import ChangeItem, StaleAlarm
from hub.alarms.media_storage import MediaRow
from hub.alarms.outbox_storage import ClaimedDelivery, SinkState
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
from hub.devices import storage as devices_repo
from hub.devices.storage import AlarmDevice
from hub.storage.base import Row, Statement, Tx, to_db_time
from hub.storage.dialect import Dialect

__all__ = [
    "AlarmChange",
    "AlarmDevice",
    "AlarmFilter",
    "ChangeItem",
    "ClaimedDelivery",
    "DeliveryRow",
    "InvalidCursor",
    "MediaRow",
    "SinkState",
    "StaleAlarm",
    "StoredAlarm",
    "batch_context",
    "decode_alarm_cursor",
    "encode_alarm_cursor",
    "get_alarm",
    "insert_rejected",
    "jurisdiction_names",
    "open_alarms",
    "update_alarm",
]


def _open_alarms_from(rows: Sequence[Row]) -> dict[str, StoredAlarm]:
    found: dict[str, StoredAlarm] = {}
    for row in rows:
        stored = _alarm_from_row(row)
        current = found.get(stored.alarm.dedup_key)
        # An active alarm beats a resolved one with the same key.
        if current is None or not current.alarm.is_active or stored.alarm.is_active:
            found[stored.alarm.dedup_key] = stored
    return found


def _open_alarms_query(dialect: Dialect, ids: Sequence[str], keys: Sequence[str]) -> Statement:
    states = (*_ACTIVE, AlarmState.RESOLVED.value)
    clauses: list[str] = []
    params: list[Any] = []
    if ids:
        member, values = dialect.one_of("device_id", ids)
        clauses.append(f"({member} AND state IN ({_in_list(states)}))")
        params += [*values, *states]
    if keys:
        member, values = dialect.one_of("dedup_key", keys)
        clauses.append(f"({member} AND state IN ({_in_list(_ACTIVE)}))")
        params += [*values, *_ACTIVE]
    return Statement(
        f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE {' OR '.join(clauses)}"  # noqa: S608
        f" ORDER BY opened_at{dialect.row_lock()}",
        params,
        rows=True,
    )


async def open_alarms(
    tx: Tx, dialect: Dialect, device_ids: Iterable[str], dedup_keys: Iterable[str] = ()
) -> dict[str, StoredAlarm]:
    """Active and resolved alarms of `device_ids` and active alarms of `dedup_keys`
    (a key may group several devices), by dedup key (newest wins), in one query.

    Locked for the transaction on PostgreSQL, so an operator action on one of
    them waits for the batch (and the batch's revision check cannot fail)."""
    ids = sorted(set(device_ids))
    keys = sorted(set(dedup_keys))
    if not ids and not keys:
        return {}
    (rows,) = await tx.run_all([_open_alarms_query(dialect, ids, keys)])
    return _open_alarms_from(_rows(rows))


async def batch_context(
    tx: Tx,
    dialect: Dialect,
    device_ids: Iterable[str],
    present: frozenset[str],
    dedup_keys: Iterable[str] = (),
) -> tuple[dict[str, AlarmDevice], dict[str, StoredAlarm]]:
    """The devices' facts (the device storage's `AlarmDevice`, reading the optional
    columns in `present`) and `open_alarms`, in one trip to the database."""
    ids = sorted(set(device_ids))
    keys = sorted(set(dedup_keys))
    if not ids and not keys:
        return {}, {}
    statements = [_open_alarms_query(dialect, ids, keys)]
    if ids:
        statements.append(devices_repo.alarm_devices_statement(dialect, ids, present))
    results = await tx.run_all(statements)
    found = devices_repo.alarm_devices_from(_rows(results[1])) if ids else {}
    return found, _open_alarms_from(_rows(results[0]))


async def get_alarm(
    tx: Tx, dialect: Dialect, alarm_id: uuid.UUID, *, for_update: bool = False
) -> StoredAlarm | None:
    """One alarm by id (locked for the transaction on PostgreSQL when `for_update`)."""
    lock = dialect.row_lock(for_update)
    row = await tx.fetchone(
        f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE id = %s{lock}",  # noqa: S608
        (str(alarm_id),),
    )
    return None if row is None else _alarm_from_row(row)


async def update_alarm(tx: Tx, alarm: Alarm, *, previous_revision: int, now: datetime) -> None:
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


async def insert_rejected(tx: Tx, rejected: RejectedMessage) -> None:
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


async def jurisdiction_names(tx: Tx, codes: Sequence[str]) -> dict[str, str]:
    """Names of the jurisdiction nodes with these codes (unknown codes are absent)."""
    if not codes:
        return {}
    marks = ", ".join(["%s"] * len(codes))
    rows = await tx.fetchall(
        f"SELECT code, name FROM jurisdictions WHERE code IN ({marks})",  # noqa: S608
        list(codes),
    )
    return {str(row[0]): str(row[1]) for row in rows}
