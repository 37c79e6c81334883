"""The batched event writer: the one path from adapters into storage.

Producers `submit` events (and rejected messages) into a bounded queue and
wait when it is full — backpressure, never a drop. The writer takes what is
queued (up to `batch_max`) and commits it in one transaction. Only a writer
that found its queue empty (a trickle) waits up to `batch_delay` for company
before committing, unless a critical event (a panic press) is among what it
holds; a writer that comes back from a commit to a queue that filled meanwhile
commits what is there at once, so under load the batch size follows the commit
time instead of adding the delay to every event's latency. Only after the
commit does it call each item's `on_committed` callback and announce the stored
events on the bus. A failed commit is retried with backoff until it succeeds
or the writer is stopped; the callbacks of an uncommitted batch never fire, so
the producer's source (an MQTT broker, say) redelivers after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from camera_registry.events import DeviceEvent, RejectedMessage, Severity
from hub.bus import EventBus
from hub.metrics import Metrics
from hub.storage.base import IngestResult, InTransaction, SqlStore

__all__ = ["AfterCommit", "EventWriter", "OnCommitted", "WriterStopped"]

log = logging.getLogger(__name__)

OnCommitted = Callable[[], None]
#: Told about each committed batch (with what `in_transaction` returned), once.
AfterCommit = Callable[[IngestResult], None]
Item = DeviceEvent | RejectedMessage


class WriterStopped(Exception):
    """The writer no longer accepts events (it is stopping or stopped)."""


@dataclass(slots=True)
class _Entry:
    item: Item
    on_committed: OnCommitted | None


class _Backlog:
    """The writer's bounded FIFO: `asyncio.Queue`'s contract for one consumer that
    takes whole batches, at a fraction of its cost per event (no getter futures,
    no per-item bookkeeping; a submit that finds room does not yield)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: deque[_Entry] = deque()
        self._unfinished = 0
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._room: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    async def put(self, entry: _Entry) -> None:
        while len(self._entries) >= self._size:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    self._room.remove(waiter)
                if waiter.done() and not waiter.cancelled():
                    self._make_room()  # pass the wake-up on
                raise
        entries = self._entries
        entries.append(entry)
        self._unfinished += 1
        if self._unfinished == 1:
            self._drained.clear()
        if len(entries) == 1:  # the consumer waits only on an empty backlog
            self._arrived.set()

    async def wait(self) -> None:
        """Until something is queued."""
        while not self._entries:
            self._arrived.clear()
            await self._arrived.wait()

    def take(self, limit: int) -> list[_Entry]:
        """Up to `limit` entries, oldest first; wakes producers waiting for room."""
        entries = self._entries
        count = min(limit, len(entries))
        batch = [entries.popleft() for _ in range(count)]
        for _ in range(count):
            if not self._make_room():
                break
        return batch

    def _make_room(self) -> bool:
        while self._room:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def done(self, count: int) -> None:
        """`count` taken entries are committed (or given up)."""
        self._unfinished -= count
        if self._unfinished <= 0:
            self._unfinished = 0
            self._drained.set()

    async def join(self) -> None:
        """Until every entry queued so far is done."""
        await self._drained.wait()


def _critical(entries: list[_Entry]) -> bool:
    return any(
        isinstance(entry.item, DeviceEvent) and entry.item.severity is Severity.CRITICAL
        for entry in entries
    )


class EventWriter:
    """Bounded queue → batched transactional commits → callbacks → bus."""

    def __init__(
        self,
        store: SqlStore,
        *,
        bus: EventBus[DeviceEvent] | None = None,
        metrics: Metrics | None = None,
        queue_size: int = 20_000,
        batch_max: int = 2_000,
        batch_delay: float = 0.005,
        in_transaction: InTransaction | None = None,
        after_commit: AfterCommit | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._queue = _Backlog(queue_size)
        self._batch_max = batch_max
        self._batch_delay = batch_delay
        self._in_transaction = in_transaction
        self._after_commit_hook = after_commit
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self.committed_batches = 0

    async def submit(self, item: Item, on_committed: OnCommitted | None = None) -> None:
        """Queue one event; waits while the queue is full. `on_committed` runs after commit."""
        if not self._accepting:
            raise WriterStopped("the event writer is not running")
        await self._queue.put(_Entry(item, on_committed))

    async def submit_many(self, items: Sequence[Item]) -> None:
        """Queue several events in order (each may wait for room)."""
        for item in items:
            await self.submit(item)

    async def flush(self) -> None:
        """Wait until everything queued so far is committed (and its callbacks ran)."""
        await self._queue.join()

    @property
    def pending(self) -> int:
        """Events queued and not yet committed."""
        return len(self._queue)

    async def start(self) -> None:
        """Start the writer task."""
        if self._task is not None:
            return
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="event-writer")

    async def stop(self, *, drain_timeout: float | None = None) -> None:
        """Stop accepting, commit everything already queued, then end the task.

        With `drain_timeout`, give up draining after that many seconds (storage
        down, say): what is left was never acknowledged to its source, whose
        callbacks never fired, so the source delivers it again later.
        """
        self._accepting = False
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        except TimeoutError:
            log.error(
                "%d events not committed within %.0f s of shutdown; their sources were "
                "not acknowledged and will deliver them again",
                len(self._queue),
                drain_timeout,
            )
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def __aenter__(self) -> EventWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _next_batch(self, *, behind: bool) -> list[_Entry]:
        """What is queued; unless the writer is `behind` (events queued up while
        the last batch committed), also whatever else arrives within the batch delay,
        up to the first critical event (a panic press does not wait for company).

        One timeout covers the whole collection: a per-entry `wait_for` would
        cost a task per event under a steady trickle."""
        queue = self._queue
        limit = self._batch_max
        await queue.wait()
        batch = queue.take(limit)
        if self._metrics is not None:
            self._metrics.writer_queue.set(len(queue))
        if behind or len(batch) >= limit or self._batch_delay <= 0 or _critical(batch):
            return batch
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + self._batch_delay):
                while len(batch) < limit:
                    await queue.wait()
                    more = queue.take(limit - len(batch))
                    batch.extend(more)
                    if _critical(more):
                        break
        except TimeoutError:
            pass
        return batch

    async def _run(self) -> None:
        behind = False
        while True:
            batch = await self._next_batch(behind=behind)
            result = await self._commit_until_done(batch)
            # Whatever arrived during the commit has waited long enough already.
            behind = len(self._queue) > 0
            self._after_commit(batch, result)
            self._queue.done(len(batch))

    async def _commit_until_done(self, batch: list[_Entry]) -> IngestResult:
        delay = 0.05
        items = [entry.item for entry in batch]
        while True:
            started = time.perf_counter()
            try:
                result = await self._store.ingest(items, in_transaction=self._in_transaction)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._metrics is not None:
                    self._metrics.writer_failures.inc()
                log.exception(
                    "committing a batch of %d events failed; retrying in %.2fs", len(items), delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.committed_batches += 1
            if self._metrics is not None:
                self._metrics.writer_commit_seconds.observe(time.perf_counter() - started)
                self._metrics.writer_batch.observe(len(items))
            return result

    def _after_commit(self, batch: list[_Entry], result: IngestResult) -> None:
        for entry in batch:
            if entry.on_committed is None:
                continue
            try:
                entry.on_committed()
            except Exception:
                log.exception("a committed-callback failed (the event is stored)")
        if self._metrics is not None:
            self._record(result, batch)
        if self._bus is not None:
            self._bus.publish_all(result.stored)
        if self._after_commit_hook is not None:
            # Only the committed attempt's result arrives here, so a retried
            # batch announces its alarm changes once.
            try:
                self._after_commit_hook(result)
            except Exception:
                log.exception("the after-commit hook failed (the batch is stored)")

    def _record(self, result: IngestResult, batch: list[_Entry]) -> None:
        assert self._metrics is not None  # noqa: S101 - checked by the caller
        # One labelled increment per source, not per event: a batch holds thousands.
        for source, stored in Counter(event.source for event in result.stored).items():
            self._metrics.events_stored.labels(source).inc(stored)
        self._metrics.events_duplicate.inc(result.duplicates)
        rejected = Counter(
            entry.item.source for entry in batch if isinstance(entry.item, RejectedMessage)
        )
        for source, count in rejected.items():
            self._metrics.messages_rejected.labels(source).inc(count)
        self._metrics.writer_queue.set(len(self._queue))
