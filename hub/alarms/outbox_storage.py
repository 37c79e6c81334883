"""Outbox storage: claiming rows under leases, recording outcomes, sink status.

Free functions over the store, like the other storage modules: each runs its
own short transaction. On PostgreSQL claims skip rows other dispatchers hold
(`FOR UPDATE SKIP LOCKED`); SQLite's single writer makes a claim atomic by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from alarms.outbox import OUTBOX_NAMESPACE, OutboxRecord, OutboxState
from hub.storage.base import Row, SqlStore, from_json, from_ts, from_uuid, to_db_time

__all__ = [
    "LEASE_EXPIRED",
    "TAKEN_BACK",
    "ClaimedDelivery",
    "SinkState",
    "claim",
    "disabled_sinks",
    "extend_leases",
    "mark_delivered",
    "mark_failed",
    "next_due",
    "outbox_backlog",
    "release",
    "requeue_dead",
    "set_sink_disabled",
    "sink_states",
    "take_back",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The last error of a row taken back after its claim's lease ran out.
LEASE_EXPIRED = (
    "the claim's lease ran out before an outcome was recorded (the dispatcher stopped or hung)"
)
#: The last error of a row its own node took back when it started again.
TAKEN_BACK = "the node sending it stopped before an outcome was recorded; taken back at restart"
_OUTBOX_COLUMNS = (
    "id, alarm_id, revision, sink, payload, state, attempts, next_attempt_at, last_error,"
    " delivered_at"
)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """An outbox row claimed by one dispatcher for one attempt."""

    row_id: int
    record: OutboxRecord


@dataclass(frozen=True, slots=True)
class SinkState:
    """A sink's run-time status and its outbox backlog."""

    name: str
    disabled: bool
    reason: str | None
    updated_at: datetime | None
    counts: Mapping[str, int]


def _in_list(values: Sequence[object]) -> str:
    return ", ".join("%s" for _ in values)


def _ts(value: object) -> datetime:
    return from_ts(value) or _EPOCH


def _record_from_row(row: Row) -> ClaimedDelivery:
    alarm_id = from_uuid(row[1])
    revision = int(row[2])
    sink = str(row[3])
    record = OutboxRecord(
        id=uuid.uuid5(OUTBOX_NAMESPACE, f"{alarm_id}:{revision}:{sink}"),
        alarm_id=alarm_id,
        revision=revision,
        sink=sink,
        payload=from_json(row[4]) or {},
        state=OutboxState(row[5]),
        attempts=int(row[6]),
        next_attempt_at=_ts(row[7]),
        last_error=row[8],
        delivered_at=from_ts(row[9]),
    )
    return ClaimedDelivery(row_id=int(row[0]), record=record)


# -- claims and outcomes ------------------------------------------------------


async def claim(
    store: SqlStore,
    worker: str,
    sinks: Sequence[str],
    now: datetime,
    *,
    lease_until: datetime,
    limit: int,
) -> list[ClaimedDelivery]:
    """Claim due rows of `sinks`: pending and due, or delivering with an expired lease.

    PostgreSQL skips rows other dispatchers hold (`FOR UPDATE SKIP LOCKED`);
    SQLite's single writer makes the claim atomic by itself.
    """
    if not sinks:
        return []
    at = to_db_time(now)
    skip = store.dialect.skip_locked()
    # A row taken back from an expired lease counts as an attempt (its dispatcher
    # died or hung while sending it): a row that kills every dispatcher that tries
    # it reaches the attempt limit and is dead-lettered instead of looping forever.
    sql = (
        "UPDATE outbox SET state = 'delivering', claimed_by = %s, claimed_until = %s,"  # noqa: S608 - placeholders only
        " attempts = CASE WHEN state = 'delivering' THEN attempts + 1 ELSE attempts END,"
        " last_error = CASE WHEN state = 'delivering' THEN %s ELSE last_error END"
        " WHERE id IN (SELECT id FROM outbox WHERE"
        " ((state = 'pending' AND next_attempt_at <= %s)"
        " OR (state = 'delivering' AND claimed_until < %s))"
        f" AND sink IN ({_in_list(sinks)})"
        f" ORDER BY next_attempt_at, id LIMIT %s{skip})"
        f" RETURNING {_OUTBOX_COLUMNS}"
    )
    async with store.transaction() as tx:
        rows = await tx.fetchall(
            sql, [worker, to_db_time(lease_until), LEASE_EXPIRED, at, at, *sinks, limit]
        )
    return sorted((_record_from_row(row) for row in rows), key=lambda c: c.row_id)


async def mark_delivered(store: SqlStore, row_id: int, now: datetime, receipt: str) -> None:
    """Record a confirmed delivery (whoever delivered it, it is delivered)."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1,"
            " delivered_at = %s, receipt = %s, last_error = NULL, claimed_by = NULL,"
            " claimed_until = NULL WHERE id = %s AND state <> 'delivered'",
            (to_db_time(now), receipt[:1000], row_id),
        )


async def mark_failed(store: SqlStore, row_id: int, worker: str, record: OutboxRecord) -> None:
    """Record a failed attempt: back to pending with its backoff, or dead."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE outbox SET state = %s, attempts = %s, last_error = %s,"
            " next_attempt_at = %s, claimed_by = NULL, claimed_until = NULL"
            " WHERE id = %s AND claimed_by = %s AND state = 'delivering'",
            (
                record.state.value,
                record.attempts,
                record.last_error,
                to_db_time(record.next_attempt_at),
                row_id,
                worker,
            ),
        )


async def take_back(store: SqlStore, worker: str, now: datetime) -> int:
    """Make the rows `worker` held when it stopped due again at once.

    A node restarted after a crash has the same worker name: nothing of the
    rows it held is in flight any more, so waiting out their leases would only
    delay them. Each counts as an attempt, as an expired lease does.
    """
    async with store.transaction() as tx:
        return await tx.execute(
            "UPDATE outbox SET state = 'pending', next_attempt_at = %s,"
            " attempts = attempts + 1, last_error = %s, claimed_by = NULL,"
            " claimed_until = NULL WHERE state = 'delivering' AND claimed_by = %s",
            (to_db_time(now), TAKEN_BACK, worker),
        )


async def extend_leases(
    store: SqlStore, worker: str, row_ids: Sequence[int], lease_until: datetime
) -> set[int]:
    """Move the lease of rows `worker` still holds to `lease_until`; the ids it moved."""
    if not row_ids:
        return set()
    async with store.transaction() as tx:
        rows = await tx.fetchall(
            "UPDATE outbox SET claimed_until = %s"  # noqa: S608 - placeholders only
            f" WHERE id IN ({_in_list(row_ids)}) AND claimed_by = %s"
            " AND state = 'delivering' RETURNING id",
            [to_db_time(lease_until), *row_ids, worker],
        )
    return {int(row[0]) for row in rows}


async def release(store: SqlStore, row_id: int, worker: str, now: datetime) -> None:
    """Give a claimed row back untried (its sink was disabled meanwhile)."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE outbox SET state = 'pending', next_attempt_at = %s, claimed_by = NULL,"
            " claimed_until = NULL WHERE id = %s AND claimed_by = %s AND state = 'delivering'",
            (to_db_time(now), row_id, worker),
        )


async def requeue_dead(store: SqlStore, sink: str, now: datetime) -> int:
    """Put a sink's dead rows back in the queue (after the operator fixed the receiver)."""
    async with store.transaction() as tx:
        return await tx.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = %s"
            " WHERE sink = %s AND state = 'dead'",
            (to_db_time(now), sink),
        )


async def outbox_backlog(store: SqlStore) -> dict[tuple[str, str], int]:
    """Rows not yet delivered, by (sink, state): pending, delivering and dead."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT sink, state, COUNT(*) FROM outbox"
            " WHERE state IN ('pending', 'delivering', 'dead') GROUP BY sink, state"
        )
    return {(str(row[0]), str(row[1])): int(row[2]) for row in rows}


async def next_due(store: SqlStore, sinks: Sequence[str]) -> datetime | None:
    """When the earliest pending row of `sinks` is due (None when nothing waits)."""
    if not sinks:
        return None
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT MIN(CASE WHEN state = 'pending' THEN next_attempt_at"  # noqa: S608 - placeholders only
            " ELSE claimed_until END) FROM outbox"
            f" WHERE state IN ('pending', 'delivering') AND sink IN ({_in_list(sinks)})",
            list(sinks),
        )
    return from_ts(row[0]) if row else None


# -- sinks -------------------------------------------------------------------


async def disabled_sinks(store: SqlStore) -> dict[str, str]:
    """Sinks disabled at run time, with the reason."""
    async with store.reading() as tx:
        rows = await tx.fetchall("SELECT name, reason FROM sink_status WHERE disabled")
    return {str(row[0]): str(row[1] or "") for row in rows}


async def set_sink_disabled(
    store: SqlStore, name: str, disabled: bool, reason: str | None, now: datetime
) -> None:
    """Disable (with a reason) or re-enable a sink."""
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO sink_status (name, disabled, reason, updated_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
            " disabled = EXCLUDED.disabled, reason = EXCLUDED.reason,"
            " updated_at = EXCLUDED.updated_at",
            (name, disabled, reason, to_db_time(now)),
        )


async def sink_states(store: SqlStore, names: Sequence[str]) -> list[SinkState]:
    """Status and backlog per configured sink."""
    async with store.reading() as tx:
        status_rows = await tx.fetchall(
            "SELECT name, disabled, reason, updated_at FROM sink_status"
        )
        count_rows = await tx.fetchall(
            "SELECT sink, state, COUNT(*) FROM outbox GROUP BY sink, state"
        )
    status = {str(r[0]): r for r in status_rows}
    counts: dict[str, dict[str, int]] = {}
    for sink, state, count in count_rows:
        counts.setdefault(str(sink), {})[str(state)] = int(count)
    states = []
    for name in names:
        row = status.get(name)
        states.append(
            SinkState(
                name=name,
                disabled=bool(row[1]) if row else False,
                reason=row[2] if row else None,
                updated_at=from_ts(row[3]) if row else None,
                counts=counts.get(name, {}),
            )
        )
    return states
