"""Every hub node's committed alarm changes, in change-log order, on this node's bus.

A console stream on one node must show what any node commits. On PostgreSQL the
`ChangeFeed` keeps one `seq` cursor per node and one LISTEN session: each
notification (sent by schema 18's trigger inside the committing transaction, so
delivered only after the commit) makes it read the change log after its cursor and
publish the rows it finds, in `seq` order, on its bus. Sequence numbers are handed
out under the change log's transaction lock (`hub.alarms.batch_storage`), so they
commit in order: a cursor never skips a row that commits later. Nothing is missed
when a notification is (the connection was down, say): after every reconnect, and
every `poll_s` regardless, the feed reads the log anyway. Nothing is published
twice: the cursor only moves forward.

This node's own changes need no notification and no read: `committed_here` gets
each right after its commit, and publishes it at once when it is the next in the
log (`seq` = cursor + 1). One that is not (another node committed in between, or a
rolled-back transaction left a gap in the sequence) is left to the log read, which
publishes it in order; the notification of a change already published this way
causes no read.

The streams (`/api/alarms/ws`, `/api/alarms/stream`) subscribe to this bus and keep
their own `since` cursor semantics on top: replay from the log, then live changes
with a `seq` above the replayed ones. This node's own changes come the same way
(one path, one order). Evidence follows this bus too (the node that buffers a
camera cuts its clips, whichever node opened the alarm); automatic task rules
keep the immediate local bus. On SQLite there is one node and no feed: the streams
use the local bus as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hub.alarms.feed_storage import ChangeListener
from hub.alarms.query_storage import changes, last_change_seq
from hub.alarms.row_storage import AlarmChange
from hub.bus import EventBus
from hub.storage.base import SqlStore, StorageError

__all__ = ["ChangeFeed"]

log = logging.getLogger(__name__)

_PAGE = 500
_RETRY_MAX_S = 5.0


class ChangeFeed:
    """Publishes every node's committed alarm changes on `bus`, in `seq` order, once."""

    def __init__(
        self,
        store: SqlStore,
        listener: ChangeListener,
        bus: EventBus[AlarmChange],
        *,
        poll_s: float = 5.0,
    ) -> None:
        self._store = store
        self._listener = listener
        self.bus = bus
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        #: The highest `seq` published (or present when the feed started).
        self.cursor = 0
        self.published = 0
        #: Of `published`, this node's own changes published without reading the log.
        self.published_here = 0
        self.reconnects = 0

    async def start(self) -> None:
        """Start after the log's current end (the streams replay older changes themselves)."""
        if self._task is not None:
            return
        self.cursor = await last_change_seq(self._store)
        try:
            await self._listener.connect()
        except StorageError:
            log.exception("alarm change feed: cannot listen yet; polling until it can")
        self._task = asyncio.create_task(self._run(), name="alarm-change-feed")

    async def stop(self) -> None:
        """Stop following and close the LISTEN session."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._listener.close()

    def committed_here(self, change: AlarmChange) -> None:
        """This node's own change, just committed: published now when it is next in `seq`."""
        if self._task is None or change.seq != self.cursor + 1:
            return
        self.cursor = change.seq
        self.bus.publish(change)
        self.published += 1
        self.published_here += 1

    async def catch_up(self) -> int:
        """Read the log after the cursor and publish what is there; how many were published."""
        published = 0
        while True:
            page = await changes(self._store, self.cursor, limit=_PAGE, scope_paths=None)
            for change in page:
                if change.seq > self.cursor:
                    self.cursor = change.seq
                    self.bus.publish(change)
                    published += 1
            if len(page) < _PAGE:
                break
        self.published += published
        return published

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                if not self._listener.connected:
                    await self._listener.connect()
                    self.reconnects += 1
                    log.info("alarm change feed: listening again; catching up from %d", self.cursor)
                    await self.catch_up()
                announced = await self._listener.wait(self._poll_s)
                if announced is None or announced > self.cursor:
                    await self.catch_up()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except StorageError as exc:
                log.warning("alarm change feed: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                await self._poll_quietly()
            except Exception:
                log.exception("alarm change feed failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                await self._poll_quietly()

    async def _poll_quietly(self) -> None:
        """Keep the streams moving by reading the log while the LISTEN session is away."""
        try:
            await self.catch_up()
        except StorageError as exc:
            log.debug("alarm change feed: reading the log failed too: %s", exc)
        except Exception as exc:  # the database is away: psycopg's errors, pool timeouts
            log.debug("alarm change feed: reading the log failed too: %r", exc)
