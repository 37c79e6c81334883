"""Alarm reads: search with keyset paging, history, delivery receipts, the change log.

Free functions over the store, each in its own read transaction.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alarms.models import HistoryEntry
from hub.alarms.row_storage import ACTIVE as _ACTIVE
from hub.alarms.row_storage import ALARM_COLUMNS as _ALARM_COLUMNS
from hub.alarms.row_storage import AlarmChange, StoredAlarm
from hub.alarms.row_storage import alarm_from_row as _alarm_from_row
from hub.alarms.row_storage import in_list as _in_list
from hub.alarms.row_storage import ts as _ts
from hub.storage.base import SqlStore, from_json, from_ts, from_uuid, scope_condition, to_db_time

__all__ = [
    "AlarmFilter",
    "DeliveryRow",
    "InvalidCursor",
    "changes",
    "decode_alarm_cursor",
    "deliveries",
    "due_for_escalation",
    "encode_alarm_cursor",
    "history",
    "last_change_seq",
    "search",
    "search_page",
]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A delivery receipt as shown on an alarm."""

    sink: str
    revision: int
    idempotency_key: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    receipt: str | None


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Which alarms a list query returns."""

    states: Sequence[str] = ()
    priorities: Sequence[int] = ()
    types: Sequence[str] = ()
    categories: Sequence[str] = ()
    device_id: str | None = None
    jurisdiction_path: str | None = None
    opened_from: datetime | None = None
    opened_until: datetime | None = None
    text: str | None = None


class InvalidCursor(ValueError):
    """A page cursor this API never gave out."""


def encode_alarm_cursor(stored: StoredAlarm) -> str:
    """The keyset cursor after `stored` (opening time, then id; newest first)."""
    raw = f"{stored.alarm.opened_at.isoformat()}|{stored.alarm.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_alarm_cursor(cursor: str) -> tuple[datetime, str]:
    """(opening time, alarm id) of a cursor from `encode_alarm_cursor`; InvalidCursor else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, alarm_id = raw.partition("|")
        parsed = datetime.fromisoformat(at)
        uuid.UUID(alarm_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursor("cursor is not one this API returned") from exc
    if parsed.tzinfo is None:
        raise InvalidCursor("cursor is not one this API returned")
    return parsed, alarm_id


async def search(
    store: SqlStore,
    query: AlarmFilter,
    *,
    scope_paths: Sequence[str] | None,
    limit: int,
    cursor: tuple[datetime, str] | None = None,
) -> list[StoredAlarm]:
    """Alarms matching `query` within the scope, newest first, after `cursor`."""
    scope_sql, scope_params = scope_condition(scope_paths, "jurisdiction_path")
    clauses: list[str] = [scope_sql]
    params: list[Any] = list(scope_params)
    for column, values in (
        ("state", query.states),
        ("priority", query.priorities),
        ("type", query.types),
        ("category", query.categories),
    ):
        if values:
            clauses.append(f"{column} IN ({_in_list(values)})")
            params.extend(values)
    if query.device_id:
        clauses.append("device_id = %s")
        params.append(query.device_id)
    if query.jurisdiction_path:
        clauses.append("jurisdiction_path LIKE %s")
        params.append(query.jurisdiction_path + "%")
    if query.opened_from:
        clauses.append("opened_at >= %s")
        params.append(to_db_time(query.opened_from))
    if query.opened_until:
        clauses.append("opened_at < %s")
        params.append(to_db_time(query.opened_until))
    if query.text:
        clauses.append("(LOWER(title) LIKE %s OR LOWER(device_id) LIKE %s)")
        needle = "%" + query.text.lower().replace("%", "").replace("_", "") + "%"
        params.extend([needle, needle])
    if cursor is not None:
        clauses.append("(opened_at < %s OR (opened_at = %s AND id < %s))")
        params.extend([to_db_time(cursor[0]), to_db_time(cursor[0]), cursor[1]])
    sql = (
        f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE {' AND '.join(clauses)}"  # noqa: S608
        " ORDER BY opened_at DESC, id DESC LIMIT %s"
    )
    async with store.reading() as tx:
        rows = await tx.fetchall(sql, [*params, limit])
    return [_alarm_from_row(row) for row in rows]


async def search_page(
    store: SqlStore,
    query: AlarmFilter,
    *,
    scope_paths: Sequence[str] | None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[StoredAlarm], str | None]:
    """One page of `search` after an opaque `cursor`, and the cursor of the next page
    (None on the last). Raises InvalidCursor for a cursor this never gave out."""
    after = decode_alarm_cursor(cursor) if cursor else None
    found = await search(store, query, scope_paths=scope_paths, limit=limit + 1, cursor=after)
    page = found[:limit]
    following = encode_alarm_cursor(page[-1]) if len(found) > limit and page else None
    return page, following


async def history(store: SqlStore, alarm_id: uuid.UUID) -> list[HistoryEntry]:
    """An alarm's history, oldest first."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT at, actor, action, from_state, to_state, note, details, revision"
            " FROM alarm_history WHERE alarm_id = %s ORDER BY id",
            (str(alarm_id),),
        )
    return [
        HistoryEntry(
            alarm_id=alarm_id,
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


async def deliveries(store: SqlStore, alarm_id: uuid.UUID) -> list[DeliveryRow]:
    """Every outbox row of an alarm: the delivery receipts shown to operators."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT sink, revision, idempotency_key, state, attempts, next_attempt_at,"
            " last_error, delivered_at, receipt FROM outbox WHERE alarm_id = %s ORDER BY id",
            (str(alarm_id),),
        )
    return [
        DeliveryRow(
            sink=row[0],
            revision=int(row[1]),
            idempotency_key=row[2],
            state=row[3],
            attempts=int(row[4]),
            next_attempt_at=from_ts(row[5]),
            last_error=row[6],
            delivered_at=from_ts(row[7]),
            receipt=row[8],
        )
        for row in rows
    ]


async def changes(
    store: SqlStore,
    since: int,
    *,
    limit: int,
    scope_paths: Sequence[str] | None,
    categories: Sequence[str] = (),
) -> list[AlarmChange]:
    """Committed changes after `since` in sequence order, within the scope."""
    scope_sql, scope_params = scope_condition(scope_paths, "jurisdiction_path")
    clauses = ["seq > %s", scope_sql]
    params: list[Any] = [since, *scope_params]
    if categories:
        clauses.append(f"category IN ({_in_list(categories)})")
        params.extend(categories)
    sql = (
        "SELECT seq, alarm_id, revision, action, at, jurisdiction_path, category, payload"  # noqa: S608 - placeholders only
        f" FROM alarm_changes WHERE {' AND '.join(clauses)} ORDER BY seq LIMIT %s"
    )
    async with store.reading() as tx:
        rows = await tx.fetchall(sql, [*params, limit])
    return [
        AlarmChange(
            seq=int(row[0]),
            alarm_id=from_uuid(row[1]),
            revision=int(row[2]),
            action=row[3],
            at=_ts(row[4]),
            jurisdiction_path=row[5],
            category=row[6],
            payload=from_json(row[7]) or {},
        )
        for row in rows
    ]


async def last_change_seq(store: SqlStore) -> int:
    """The newest committed change sequence (0 when there is none)."""
    async with store.reading() as tx:
        row = await tx.fetchone("SELECT COALESCE(MAX(seq), 0) FROM alarm_changes")
    return int(row[0]) if row else 0


async def due_for_escalation(
    store: SqlStore, now: datetime, *, max_level: int, limit: int = 100
) -> list[uuid.UUID]:
    """Active alarms whose stored acknowledge or resolve deadline has passed."""
    at = to_db_time(now)
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT id FROM alarms WHERE escalation_level < %s AND ("  # noqa: S608 - placeholders only
            " (state = 'new' AND ack_due <= %s)"
            f" OR (state IN ({_in_list(_ACTIVE)}) AND resolve_due <= %s))"
            " ORDER BY opened_at LIMIT %s",
            (max_level, at, *_ACTIVE, at, limit),
        )
    return [from_uuid(row[0]) for row in rows]
