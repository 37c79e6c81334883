"""Alarm rows as stored: the alarm columns and how a row reads back.

Shared by the alarm storage modules (`storage`, `query_storage`, ...).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alarms.models import ACTIVE_STATES, Alarm, AlarmCategory, AlarmState, Priority
from hub.storage.base import Row, StatementResult, StorageError, from_json, from_ts, from_uuid

__all__ = [
    "ACTIVE",
    "ALARM_COLUMNS",
    "AlarmChange",
    "StoredAlarm",
    "alarm_from_row",
    "in_list",
    "result_rows",
    "ts",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The states of an alarm still in work, as stored.
ACTIVE = tuple(sorted(state.value for state in ACTIVE_STATES))
#: The columns of `alarms`, in the order `alarm_from_row` reads them.
ALARM_COLUMNS = (
    "id, type, priority, state, category, device_id, jurisdiction, title, sop, dedup_key,"
    " opened_at, last_seen_at, count, assignee, department, ack_due, resolve_due,"
    " escalation_level, revision, is_drill, closed_reason, jurisdiction_path, rule, details,"
    " updated_at, ack_due_first, resolve_due_first"
)


@dataclass(frozen=True, slots=True)
class StoredAlarm:
    """An alarm as stored, with what the domain type does not carry."""

    alarm: Alarm
    jurisdiction_path: str | None
    rule: str | None
    details: Mapping[str, Any]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """One committed alarm change, in change-log order (the pull API and stream unit)."""

    seq: int
    alarm_id: uuid.UUID
    revision: int
    action: str
    at: datetime
    jurisdiction_path: str | None
    category: str
    payload: Mapping[str, Any]


def ts(value: Any) -> datetime:
    return from_ts(value) or _EPOCH


def alarm_from_row(row: Row) -> StoredAlarm:
    alarm = Alarm(
        id=from_uuid(row[0]),
        type=row[1],
        priority=Priority(int(row[2])),
        state=AlarmState(row[3]),
        category=AlarmCategory(row[4]),
        device_id=row[5],
        jurisdiction=row[6],
        title=row[7],
        sop=row[8] or "",
        dedup_key=row[9],
        opened_at=ts(row[10]),
        last_seen_at=ts(row[11]),
        count=int(row[12]),
        assignee=row[13],
        department=row[14],
        ack_due=from_ts(row[15]),
        resolve_due=from_ts(row[16]),
        escalation_level=int(row[17]),
        revision=int(row[18]),
        is_drill=bool(row[19]),
        closed_reason=row[20],
        ack_due_first=from_ts(row[25]),
        resolve_due_first=from_ts(row[26]),
    )
    return StoredAlarm(
        alarm=alarm,
        jurisdiction_path=row[21],
        rule=row[22],
        details=from_json(row[23]) or {},
        updated_at=ts(row[24]),
    )


def in_list(values: Sequence[Any]) -> str:
    return ", ".join("%s" for _ in values)


def result_rows(result: StatementResult) -> list[Row]:
    if not isinstance(result, list):
        raise StorageError("a query gave no rows")
    return result
