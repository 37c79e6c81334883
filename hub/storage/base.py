"""The storage interface both backends implement, and the SQL they share.

SQL here is written once with `%s` placeholders; the SQLite backend turns them
into `?`. Values cross the boundary through `to_db`/`from_*` helpers so that
the shared code sees the same Python types from either backend.
"""

from __future__ import annotations

import json
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from camera_registry.events import DeviceEvent, RejectedMessage, Severity
from hub.storage.dialect import Dialect
from hub.storage.migration import OptionalStep, render
from hub.storage.migrations import MIGRATIONS, latest_version

__all__ = [
    "Backend",
    "IngestResult",
    "Json",
    "SchemaTooNew",
    "SqlStore",
    "Statement",
    "StatementResult",
    "StorageError",
    "StoredRejection",
    "Tx",
    "from_json",
    "from_ts",
    "from_uuid",
    "scope_condition",
]

log = logging.getLogger(__name__)

Backend = Literal["sqlite", "postgresql", "timescaledb"]
Row = tuple[Any, ...]


class StorageError(Exception):
    """Storage is unreachable or refused an operation."""


class SchemaTooNew(StorageError):
    """The database was migrated by a newer GridWatch than this one."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a `Tx.run_all` group."""

    sql: str
    params: Sequence[Any] = ()
    #: Give back the rows (a query, or RETURNING); else the affected row count.
    rows: bool = False


#: What `Tx.run_all` gives back per statement: its rows, or its affected row count.
StatementResult = list[Row] | int


class Tx(Protocol):
    """A transaction (or read-only session) on one connection."""

    async def run_all(self, statements: Sequence[Statement]) -> list[StatementResult]:
        """Run `statements` in order in one trip to the database (a single hop to
        SQLite's thread, one PostgreSQL pipeline); one result per statement.

        A failing statement raises and the rest do not take effect (the caller's
        transaction fails as a whole)."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the affected row count."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return all rows."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """Run a query and return its first row, if any."""
        ...


@dataclass(frozen=True)
class IngestResult:
    """What one committed batch did."""

    stored: list[DeviceEvent] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0
    #: What the `in_transaction` hook returned for the committed attempt.
    hook_result: object = None


@dataclass(frozen=True)
class StoredRejection:
    """A rejected message as read back from storage."""

    id: uuid.UUID
    time: datetime
    source: str
    origin: str
    device_id: str | None
    reason: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Json:
    """A value for a JSON column (dicts are recognised without it; lists need it,
    since a bare list is a SQL array parameter on PostgreSQL)."""

    value: Any


InTransaction = Callable[[Tx, list[DeviceEvent]], Awaitable[object]]


def scope_condition(scope_paths: Sequence[str] | None, column: str) -> tuple[str, list[str]]:
    """SQL restricting `column` (a materialized jurisdiction path) to a caller's subtrees.

    `None` or a scope containing `/` means everything; an empty scope means nothing.
    """
    if scope_paths is None or "/" in scope_paths:
        return "1 = 1", []
    if not scope_paths:
        return "1 = 0", []
    clause = " OR ".join(f"{column} LIKE %s" for _ in scope_paths)
    return f"({clause})", [path + "%" for path in scope_paths]


def to_db_time(value: datetime) -> datetime:
    """Normalise a timestamp to aware UTC (naive values are refused)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime passed to storage")
    return value.astimezone(UTC)


def from_ts(value: Any) -> datetime | None:
    """A stored timestamp (datetime or ISO text) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def from_json(value: Any) -> Any:
    """A stored JSON value (decoded already, or text)."""
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8")
    return json.loads(value)


def from_uuid(value: Any) -> uuid.UUID:
    """A stored UUID (native or text)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def dedupe_batch(
    events: Sequence[DeviceEvent], fresh_keys: set[str]
) -> tuple[list[DeviceEvent], int]:
    """Keep events without a key, and the first event of each key that was new to the store."""
    keep: list[DeviceEvent] = []
    seen: set[str] = set()
    for event in events:
        key = event.dedup_key
        if key is None:
            keep.append(event)
        elif key in fresh_keys and key not in seen:
            seen.add(key)
            keep.append(event)
    return keep, len(events) - len(keep)


def first_per_key(events: Sequence[DeviceEvent]) -> list[DeviceEvent]:
    """The first event of each dedup key in a batch, in order."""
    keys = [event.dedup_key for event in events]
    if len(set(keys)) == len(keys) and None not in keys:
        return list(events)  # the bulk case: every event keyed, no key twice
    seen: set[str] = set()
    firsts: list[DeviceEvent] = []
    for event in events:
        if event.dedup_key is not None and event.dedup_key not in seen:
            seen.add(event.dedup_key)
            firsts.append(event)
    return firsts


def latest_per_device(events: Sequence[DeviceEvent]) -> dict[str, datetime]:
    """Per device, the time of its newest event in the batch."""
    latest: dict[str, datetime] = {}
    for event in events:
        current = latest.get(event.device_id)
        if current is None or event.time > current:
            latest[event.device_id] = event.time
    return latest


def event_from_row(row: Row) -> DeviceEvent:
    """Rebuild a `DeviceEvent` from a row of the `_EVENT_COLUMNS` columns."""
    time, event_id, device_id, kind, severity, source, dedup_key, payload = row
    return DeviceEvent(
        time=from_ts(time) or datetime.min.replace(tzinfo=UTC),
        event_id=from_uuid(event_id),
        device_id=device_id,
        kind=kind,
        severity=Severity(severity),
        source=source,
        dedup_key=dedup_key,
        payload=from_json(payload) or {},
    )


EVENT_COLUMNS = "time, event_id, device_id, kind, severity, source, dedup_key, payload"


class SqlStore(ABC):
    """Operations shared by the SQLite and PostgreSQL backends."""

    dialect: Dialect

    @property
    @abstractmethod
    def backend(self) -> Backend:
        """Which storage engine is in use, as told to operators at start-up."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A read-write transaction, committed when the block ends without error."""

    @abstractmethod
    def reading(self) -> AbstractAsyncContextManager[Tx]:
        """A read-only session for queries."""

    @abstractmethod
    async def _insert_events(self, tx: Tx, events: Sequence[DeviceEvent]) -> None:
        """Bulk-write events in the backend's fastest way."""

    @abstractmethod
    async def _claim_keys(self, tx: Tx, events: Sequence[DeviceEvent]) -> set[str]:
        """Record the batch's dedup keys; return those that were not stored before."""

    @abstractmethod
    async def apply_retention(self, now: datetime) -> int:
        """Drop events older than the retention period; return how many went (if known)."""

    # -- lifecycle helpers ------------------------------------------------

    async def __aenter__(self) -> SqlStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ping(self) -> None:
        """Raise StorageError unless a trivial query succeeds."""
        try:
            async with self.reading() as tx:
                await tx.fetchone("SELECT 1")
        except Exception as exc:
            raise StorageError(f"storage unreachable: {type(exc).__name__}") from exc

    async def schema_version(self) -> int:
        """The highest migration applied to this database (0 when empty)."""
        async with self.reading() as tx:
            row = await tx.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(row[0]) if row else 0

    async def _migrate(self, tx: Tx, *, timescale: bool, now: datetime) -> list[int]:
        """Apply pending migrations inside `tx` (the caller holds any needed lock)."""
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        rows = await tx.fetchall("SELECT version FROM schema_version")
        done = {int(r[0]) for r in rows}
        current = max(done, default=0)
        if current > latest_version():
            raise SchemaTooNew(
                f"database schema is version {current}, this GridWatch knows up to "
                f"{latest_version()}; upgrade GridWatch instead of downgrading the database"
            )
        applied = []
        for migration in MIGRATIONS:
            # By membership, not by the highest number: a migration numbered below
            # one already applied (features merged out of order) still runs.
            if migration.version in done:
                continue
            for statement in migration.statements_for(self.dialect):
                await tx.execute(render(statement, self.dialect))
            if timescale:
                for statement in migration.timescale:
                    await tx.execute(statement)
            if self.dialect.is_postgresql:
                for step in migration.optional_postgresql:
                    await self._optional_step(tx, step)
            await tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, now.isoformat()),
            )
            applied.append(migration.version)
        return applied

    @staticmethod
    async def _optional_step(tx: Tx, step: OptionalStep) -> bool:
        """Run an optional PostgreSQL step in a savepoint; log and skip it if it fails."""
        if step.extension is not None:
            row = await tx.fetchone(
                "SELECT 1 FROM pg_available_extensions WHERE name = %s", (step.extension,)
            )
            if row is None:
                log.warning(
                    "PostgreSQL extension %s is not available; going on without %s",
                    step.extension,
                    step.purpose,
                )
                return False
        await tx.execute("SAVEPOINT gw_optional_step")
        try:
            for statement in step.statements:
                await tx.execute(statement)
        except Exception as exc:
            # Optional by definition: the schema works without it, only slower.
            await tx.execute("ROLLBACK TO SAVEPOINT gw_optional_step")
            log.warning("going on without %s: %s: %s", step.purpose, type(exc).__name__, exc)
            return False
        await tx.execute("RELEASE SAVEPOINT gw_optional_step")
        return True

    # -- events -------------------------------------------------------------

    async def ingest(
        self,
        items: Sequence[DeviceEvent | RejectedMessage],
        *,
        in_transaction: InTransaction | None = None,
    ) -> IngestResult:
        """Store a batch in one transaction; duplicates by dedup key are stored once.

        `in_transaction`, when given, runs inside the same transaction with the
        events that were new, so that state derived from them (device state,
        alarms, outbox rows) commits or fails together with them. What it
        returns comes back as `IngestResult.hook_result`, only once committed.
        """
        events = [item for item in items if isinstance(item, DeviceEvent)]
        rejected = [item for item in items if isinstance(item, RejectedMessage)]
        hook_result: object = None
        async with self.transaction() as tx:
            stored, duplicates = await self._store_events(tx, events)
            if rejected:
                await self._insert_rejected(tx, rejected)
            if in_transaction is not None:
                hook_result = await in_transaction(tx, stored)
        return IngestResult(
            stored=stored, duplicates=duplicates, rejected=len(rejected), hook_result=hook_result
        )

    async def store_derived(self, tx: Tx, events: Sequence[DeviceEvent]) -> list[DeviceEvent]:
        """Store events a commit hook derived from its batch (device health changes),
        inside the batch's transaction; the ones stored (new by dedup key)."""
        if not events:
            return []
        stored, _ = await self._store_events(tx, events)
        return stored

    async def _store_events(
        self, tx: Tx, events: Sequence[DeviceEvent]
    ) -> tuple[list[DeviceEvent], int]:
        """Store the events not stored before (by dedup key) and move their devices'
        last-seen times; (the events stored, how many were duplicates)."""
        keyed = first_per_key(events)
        fresh = await self._claim_keys(tx, keyed) if keyed else set()
        if len(fresh) == len(events):  # every event keyed, once each, and new
            stored, duplicates = list(events), 0
        else:
            stored, duplicates = dedupe_batch(events, fresh)
        if stored:
            await self._insert_events(tx, stored)
            await self._touch_devices(tx, latest_per_device(stored))
        return stored, duplicates

    async def _touch_devices(self, tx: Tx, latest: Mapping[str, datetime]) -> None:
        rows = [(to_db_time(at), device_id) for device_id, at in latest.items()]
        await tx.executemany(
            "UPDATE device_state SET"
            " last_event_at = CASE WHEN last_event_at IS NULL OR last_event_at < %s"
            " THEN %s ELSE last_event_at END,"
            " last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < %s"
            " THEN %s ELSE last_seen_at END"
            " WHERE device_id = %s",
            [(at, at, at, at, device_id) for at, device_id in rows],
        )

    async def _insert_rejected(self, tx: Tx, rejected: Sequence[RejectedMessage]) -> None:
        await tx.executemany(
            "INSERT INTO rejected_messages (id, time, source, origin, device_id, reason, payload)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            [
                (
                    item.message_id,
                    to_db_time(item.time),
                    item.source,
                    item.origin,
                    item.device_id,
                    item.reason,
                    item.payload,
                )
                for item in rejected
            ],
        )

    async def events(
        self,
        *,
        device_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[DeviceEvent]:
        """Stored events, newest first, filtered by device, kind and time range."""
        where, params = self._event_filter(device_id, kind, since, until)
        sql = f"SELECT {EVENT_COLUMNS} FROM events{where} ORDER BY time DESC LIMIT %s"  # noqa: S608
        async with self.reading() as tx:
            rows = await tx.fetchall(sql, [*params, limit])
        return [event_from_row(row) for row in rows]

    async def count_events(
        self,
        *,
        device_id: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many stored events match the filter."""
        where, params = self._event_filter(device_id, kind, since, until)
        async with self.reading() as tx:
            row = await tx.fetchone(f"SELECT COUNT(*) FROM events{where}", params)  # noqa: S608
        return int(row[0]) if row else 0

    @staticmethod
    def _event_filter(
        device_id: str | None,
        kind: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("device_id = %s", device_id),
            ("kind = %s", kind),
            ("time >= %s", to_db_time(since) if since else None),
            ("time < %s", to_db_time(until) if until else None),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    async def rejected_messages(self, *, limit: int = 100) -> list[StoredRejection]:
        """Rejected input, newest first."""
        async with self.reading() as tx:
            rows = await tx.fetchall(
                "SELECT id, time, source, origin, device_id, reason, payload"
                " FROM rejected_messages ORDER BY time DESC LIMIT %s",
                (limit,),
            )
        return [
            StoredRejection(
                id=from_uuid(r[0]),
                time=from_ts(r[1]) or datetime.min.replace(tzinfo=UTC),
                source=r[2],
                origin=r[3],
                device_id=r[4],
                reason=r[5],
                payload=bytes(r[6]),
            )
            for r in rows
        ]

    async def _delete_expired_events(self, tx: Tx, cutoff: datetime) -> int:
        deleted = await tx.execute("DELETE FROM events WHERE time < %s", (cutoff,))
        await tx.execute("DELETE FROM event_keys WHERE time < %s", (cutoff,))
        return deleted
