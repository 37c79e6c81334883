"""SQL of the node membership table and the singleton jobs' advisory-lock session.

Heartbeats are compared with the database's clock on PostgreSQL (`now()`), so a
node whose own clock drifts is still judged by one clock. SQLite keeps the one
node's row with the node's clock.

The advisory locks live on one dedicated connection per node (never a pooled
one: a session lock belongs to the connection, and a pool hands connections
around). When that connection is lost, PostgreSQL has released every lock it
held; the session notices at its next check and the jobs stop.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from hub.storage.base import Json, SqlStore, StorageError, from_json, from_ts

__all__ = [
    "LockHolder",
    "LockSession",
    "NodeRow",
    "beat",
    "leave",
    "list_nodes",
]

log = logging.getLogger(__name__)

#: The first key of every GridWatch singleton lock ("gw"); the second is the job's CRC.
_LOCK_CLASS = 0x6777
_APPLICATION = "gridwatch-node:"


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node's membership row, with the database's time when it was read."""

    node_id: str
    address: str
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    jobs: tuple[str, ...]
    read_at: datetime


def _now(store: SqlStore) -> str:
    return "now()" if store.dialect.is_postgresql else "%s"


async def beat(
    store: SqlStore,
    node_id: str,
    *,
    address: str,
    version: str,
    jobs: list[str],
    starting: bool,
    now: datetime,
) -> None:
    """Write this node's heartbeat (and on `starting`, its start time)."""
    clock = _now(store)
    started = clock if starting else "cluster_nodes.started_at"
    sql = (
        "INSERT INTO cluster_nodes (node_id, address, version, jobs, started_at, heartbeat_at)"  # noqa: S608
        f" VALUES (%s, %s, %s, %s, {clock}, {clock})"
        " ON CONFLICT (node_id) DO UPDATE SET address = excluded.address,"
        f" version = excluded.version, jobs = excluded.jobs, started_at = {started},"
        f" heartbeat_at = {clock}, stopped_at = NULL"
    )
    params: list[Any] = [node_id, address, version, Json(jobs)]
    if not store.dialect.is_postgresql:
        # SQLite: the node's clock fills every time placeholder, in order.
        params += [now] * (4 if starting else 3)
    async with store.transaction() as tx:
        await tx.execute(sql, params)


async def leave(store: SqlStore, node_id: str, *, now: datetime) -> None:
    """Mark this node stopped: the others take its work at once instead of after the timeout."""
    clock = _now(store)
    params: list[Any] = [] if store.dialect.is_postgresql else [now]
    async with store.transaction() as tx:
        await tx.execute(
            f"UPDATE cluster_nodes SET stopped_at = {clock}, jobs = '[]' WHERE node_id = %s",  # noqa: S608
            [*params, node_id],
        )


async def list_nodes(store: SqlStore, *, now: datetime) -> list[NodeRow]:
    """Every node that has ever joined, with the time (database clock) of the read."""
    clock = _now(store)
    params: list[Any] = [] if store.dialect.is_postgresql else [now]
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT node_id, address, version, started_at, heartbeat_at, stopped_at, jobs,"  # noqa: S608
            f" {clock} FROM cluster_nodes ORDER BY node_id",
            params,
        )
    nodes = []
    for row in rows:
        jobs = from_json(row[6]) or []
        read_at = from_ts(row[7])
        started_at, heartbeat_at = from_ts(row[3]), from_ts(row[4])
        if read_at is None or started_at is None or heartbeat_at is None:
            continue
        nodes.append(
            NodeRow(
                node_id=str(row[0]),
                address=str(row[1]),
                version=str(row[2]),
                started_at=started_at,
                heartbeat_at=heartbeat_at,
                stopped_at=from_ts(row[5]),
                jobs=tuple(str(job) for job in jobs),
                read_at=read_at,
            )
        )
    return nodes


def lock_key(job: str) -> int:
    """The second key of `job`'s advisory lock (a signed 32-bit CRC of its name)."""
    crc = zlib.crc32(job.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@dataclass(frozen=True, slots=True)
class LockHolder:
    """The session holding a job's lock: its backend pid and the node it says it is."""

    pid: int
    node_id: str | None


@contextmanager
def _as_storage_error(what: str) -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, OSError) as exc:
        raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc


class LockSession:
    """One node's dedicated PostgreSQL connection holding its singleton jobs' locks."""

    def __init__(self, conninfo: str, node_id: str, *, keepalive_s: float) -> None:
        self._conninfo = conninfo
        self._node_id = node_id
        self._keepalive_s = max(1, int(keepalive_s))
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def connected(self) -> bool:
        """True while the connection (and so every lock it holds) is believed alive."""
        return self._conn is not None and not self._conn.closed

    async def connect(self) -> None:
        """Open the connection; the server drops it (and its locks) when the node vanishes."""
        await self.close()
        with _as_storage_error("cannot open the singleton lock connection"):
            await self._open()

    async def _open(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            application_name=_APPLICATION + self._node_id[:40],
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=self._keepalive_s,
            keepalives_interval=self._keepalive_s,
            keepalives_count=3,
        )
        # The server probes a silent client too, so a node whose machine is gone
        # loses its locks within about three keepalive periods.
        for setting in ("tcp_keepalives_idle", "tcp_keepalives_interval"):
            await self._conn.execute(f"SET {setting} = {self._keepalive_s}")
        await self._conn.execute("SET tcp_keepalives_count = 3")

    async def check(self) -> bool:
        """Ask the server whether this session is alive; False (and closed) when it is lost."""
        if self._conn is None or self._conn.closed:
            return False
        try:
            await self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            log.warning("cluster: the singleton lock connection is lost (%s)", exc)
            await self.close()
            return False
        return True

    async def try_lock(self, job: str) -> bool:
        """Take `job`'s lock if nobody holds it (never waits)."""
        conn = self._require()
        with _as_storage_error("advisory lock"):
            cursor = await conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_CLASS, lock_key(job))
            )
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def unlock(self, job: str) -> None:
        """Let `job`'s lock go."""
        conn = self._require()
        with _as_storage_error("advisory unlock"):
            await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, lock_key(job)))

    async def holder(self, job: str) -> LockHolder | None:
        """Who holds `job`'s lock in this database, if anyone."""
        conn = self._require()
        with _as_storage_error("lock holder"):
            cursor = await conn.execute(
                "SELECT l.pid, a.application_name FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::bigint::oid"
                " AND l.objid = %s::bigint::oid AND l.objsubid = 2"
                " AND l.database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())",
                (_LOCK_CLASS, lock_key(job) & 0xFFFFFFFF),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        name = str(row[1] or "")
        node = name.removeprefix(_APPLICATION) if name.startswith(_APPLICATION) else None
        return LockHolder(pid=int(row[0]), node_id=node)

    async def terminate(self, pid: int) -> bool:
        """End another node's lock session (that node is dead by its heartbeat)."""
        conn = self._require()
        with _as_storage_error("terminate"):
            cursor = await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def close(self) -> None:
        """Close the connection (its locks go with it)."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error:
                log.debug("cluster: closing the lock connection failed", exc_info=True)

    def _require(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            raise StorageError("the singleton lock connection is not open")
        return self._conn
