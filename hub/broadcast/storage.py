"""The commands sent to broadcast units: rows, scoping, audit (the units themselves are a
projection of the device storage, `hub.devices.storage.broadcast_units`).

A command row is written (with its audit row) before anything goes out over MQTT, as
`pending`; the unit's ack, its refusal or the timeout closes it with the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.auth import audit_storage as audit
from hub.storage.base import SqlStore, from_json, from_ts, scope_condition, to_db_time

__all__ = [
    "PENDING",
    "CommandRecord",
    "create_commands",
    "expire_pending",
    "finish_command",
    "get_command",
]

#: The outcome of a command that has not ended yet.
PENDING = "pending"

_COMMAND_COLUMNS = (
    "id, correlation_id, unit_id, target_zone, jurisdiction_path, command, requested_by,"
    " requested_at, outcome, attempts, sent_at, finished_at, reason"
)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One broadcast command to one unit, as recorded."""

    id: str
    unit_id: str
    command: Mapping[str, Any]
    requested_by: str
    requested_at: datetime
    outcome: str = PENDING
    attempts: int = 0
    correlation_id: str | None = None
    target_zone: str | None = None
    jurisdiction_path: str | None = None
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None


def _record(row: Sequence[Any]) -> CommandRecord:
    return CommandRecord(
        id=row[0],
        correlation_id=row[1],
        unit_id=row[2],
        target_zone=row[3],
        jurisdiction_path=row[4],
        command=from_json(row[5]) or {},
        requested_by=row[6],
        requested_at=from_ts(row[7]) or datetime.min.replace(tzinfo=UTC),
        outcome=row[8],
        attempts=int(row[9]),
        sent_at=from_ts(row[10]),
        finished_at=from_ts(row[11]),
        reason=row[12],
    )


async def create_commands(
    store: SqlStore,
    records: Sequence[CommandRecord],
    *,
    actor: str,
    remote_addr: str | None,
) -> None:
    """Record new pending commands and one audit row per command, in one transaction."""
    async with store.transaction() as tx:
        await tx.executemany(
            f"INSERT INTO broadcast_commands ({_COMMAND_COLUMNS})"  # noqa: S608
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    r.id,
                    r.correlation_id,
                    r.unit_id,
                    r.target_zone,
                    r.jurisdiction_path,
                    dict(r.command),
                    r.requested_by,
                    to_db_time(r.requested_at),
                    r.outcome,
                    r.attempts,
                    None,
                    None,
                    r.reason,
                )
                for r in records
            ],
        )
        for r in records:
            await audit.record(
                tx,
                actor,
                "broadcast.command",
                target=f"device:{r.unit_id}",
                remote_addr=remote_addr,
                details={
                    "command_id": r.id,
                    "zone": r.target_zone,
                    "command": dict(r.command),
                },
                at=r.requested_at,
            )


async def finish_command(
    store: SqlStore,
    command_id: str,
    *,
    outcome: str,
    attempts: int,
    finished_at: datetime,
    correlation_id: str | None = None,
    sent_at: datetime | None = None,
    reason: str | None = None,
) -> None:
    """Close a pending command with its outcome (a closed one is left as it is)."""
    async with store.transaction() as tx:
        await tx.execute(
            "UPDATE broadcast_commands SET outcome = %s, attempts = %s, finished_at = %s,"
            " correlation_id = %s, sent_at = %s, reason = %s"
            " WHERE id = %s AND outcome = %s",
            (
                outcome,
                attempts,
                to_db_time(finished_at),
                correlation_id,
                to_db_time(sent_at) if sent_at is not None else None,
                reason[:500] if reason is not None else None,
                command_id,
                PENDING,
            ),
        )


async def get_command(
    store: SqlStore, command_id: str, scope_paths: Sequence[str] | None
) -> CommandRecord | None:
    """One command, if it exists and lies within the caller's scope."""
    scope_sql, params = scope_condition(scope_paths, "jurisdiction_path")
    async with store.reading() as tx:
        row = await tx.fetchone(
            f"SELECT {_COMMAND_COLUMNS} FROM broadcast_commands"  # noqa: S608
            f" WHERE id = %s AND {scope_sql}",
            [command_id, *params],
        )
    return _record(row) if row is not None else None


async def expire_pending(store: SqlStore, *, older_than: datetime, now: datetime) -> int:
    """Close commands left pending by a hub that stopped before they ended; return how many."""
    async with store.transaction() as tx:
        return await tx.execute(
            "UPDATE broadcast_commands SET outcome = 'timed_out', finished_at = %s,"
            " reason = 'the hub stopped before the unit answered'"
            " WHERE outcome = %s AND requested_at < %s",
            (to_db_time(now), PENDING, to_db_time(older_than)),
        )
