"""The change log's notifications on PostgreSQL: one dedicated LISTEN connection per node.

Schema 18's trigger sends `NOTIFY gridwatch_alarm_changes, '<highest seq>'` inside
every transaction that appends change-log rows; PostgreSQL delivers it only after
that transaction commits. The connection is never a pooled one (a pool hands
connections around, and a LISTEN belongs to its session). Notifications sent while
the connection is down are lost, which is why the reader keeps a `seq` cursor and
catches up by reading the log after every (re)connect instead of trusting them.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from hub.storage.base import StorageError

__all__ = ["CHANNEL", "ChangeListener"]

log = logging.getLogger(__name__)

#: The channel the schema's trigger notifies (see m0018).
CHANNEL = "gridwatch_alarm_changes"


class ChangeListener:
    """A LISTEN session on the change log's channel; errors surface as `StorageError`."""

    def __init__(
        self, conninfo: str, *, name: str = "gridwatch-feed", keepalive_s: int = 5
    ) -> None:
        self._conninfo = conninfo
        self._name = name[:63]
        self._keepalive_s = max(1, keepalive_s)
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def connected(self) -> bool:
        """True while the LISTEN session is believed alive."""
        return self._conn is not None and not self._conn.closed

    async def connect(self) -> None:
        """Open the session and LISTEN (closing any previous one)."""
        await self.close()
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                application_name=self._name,
                connect_timeout=10,
                keepalives=1,
                keepalives_idle=self._keepalive_s,
                keepalives_interval=self._keepalive_s,
                keepalives_count=3,
            )
            await conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise StorageError(f"cannot listen for change-log notifications: {exc}") from exc
        self._conn = conn

    async def wait(self, timeout: float) -> int | None:  # noqa: ASYNC109 - a bounded wait
        """The highest seq announced within `timeout` s (waiting for the first, then
        taking whatever else is already queued); None when nothing was announced."""
        conn = self._conn
        if conn is None or conn.closed:
            raise StorageError("the change-log LISTEN session is not open")
        highest: int | None = None
        try:
            async for notify in conn.notifies(timeout=timeout, stop_after=1):
                highest = _seq(notify.payload)
            if highest is not None:
                async for notify in conn.notifies(timeout=0.0):
                    highest = max(highest, _seq(notify.payload))
            elif timeout > 0:
                # notifies() returns quietly when the connection broke: ask it.
                await conn.execute("SELECT 1")
        except psycopg.Error as exc:
            await self.close()
            raise StorageError(f"the change-log LISTEN session was lost: {exc}") from exc
        return highest

    async def close(self) -> None:
        """End the session."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error:
                log.debug("closing the change-log LISTEN session failed", exc_info=True)


def _seq(payload: str) -> int:
    try:
        return int(payload)
    except ValueError:
        return 0
