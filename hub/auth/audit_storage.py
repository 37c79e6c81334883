"""The audit log: who did what, when, from where — written in the caller's transaction.

Every operator action (logins, alarm actions, device changes, live-view starts,
user and key changes) is recorded with `record(tx, …)` inside the same
transaction as the change it describes, so an action and its audit row commit
or fail together. Rows are kept at least `MIN_RETENTION_DAYS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.auth.principal import check_actor
from hub.storage.base import SqlStore, Tx, from_json, from_ts, to_db_time

__all__ = [
    "MIN_RETENTION_DAYS",
    "AuditEntry",
    "purge",
    "query",
    "record",
]

#: The shortest period audit rows are kept, whatever the configuration says.
MIN_RETENTION_DAYS = 180
_MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit row as read back."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    remote_addr: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


async def record(
    tx: Tx,
    actor: str,
    action: str,
    target: str | None = None,
    remote_addr: str | None = None,
    details: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> None:
    """Append one audit row inside `tx` (actor `user:alice`, action `alarm.acknowledge`).

    The actor must be `user:<name>`, `key:<name>` or `system:<component>`
    (`hub.auth.principal`), so an auditor can filter by who without guessing forms.
    """
    if not action:
        raise ValueError("an audit row needs an action")
    check_actor(actor)
    when = to_db_time(at) if at is not None else datetime.now(UTC)
    await tx.execute(
        "INSERT INTO audit_log (at, actor, action, target, remote_addr, details)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            when,
            actor[:_MAX_TEXT],
            action[:_MAX_TEXT],
            target[:_MAX_TEXT] if target is not None else None,
            remote_addr[:_MAX_TEXT] if remote_addr is not None else None,
            dict(details or {}),
        ),
    )


async def query(
    store: SqlStore,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Audit rows, newest first, filtered; page with `before_id` (the last id seen)."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("at >= %s", to_db_time(since) if since else None),
        ("at < %s", to_db_time(until) if until else None),
        ("actor = %s", actor),
        ("target = %s", target),
        ("id < %s", before_id),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if action is not None:
        # `alarm.` matches every alarm action; an exact name matches itself.
        if action.endswith("."):
            clauses.append("action LIKE %s")
            params.append(action + "%")
        else:
            clauses.append("action = %s")
            params.append(action)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    sql = (
        "SELECT id, at, actor, action, target, remote_addr, details FROM audit_log"  # noqa: S608
        f"{where} ORDER BY id DESC LIMIT %s"
    )
    async with store.reading() as tx:
        rows = await tx.fetchall(sql, [*params, max(1, min(limit, 1000))])
    return [
        AuditEntry(
            id=int(row[0]),
            at=from_ts(row[1]) or datetime.min.replace(tzinfo=UTC),
            actor=row[2],
            action=row[3],
            target=row[4],
            remote_addr=row[5],
            details=from_json(row[6]) or {},
        )
        for row in rows
    ]


async def purge(store: SqlStore, now: datetime, keep_days: int) -> int:
    """Delete rows older than `keep_days` (never fewer than MIN_RETENTION_DAYS); return count."""
    days = max(keep_days, MIN_RETENTION_DAYS)
    cutoff = to_db_time(now) - timedelta(days=days)
    async with store.transaction() as tx:
        return await tx.execute("DELETE FROM audit_log WHERE at < %s", (cutoff,))
