"""The batched writer: commit, then announce; backpressure; retries; drain on stop."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from camera_registry.events import DeviceEvent, RejectedMessage, Severity
from hub.bus import EventBus
from hub.metrics import Metrics
from hub.storage import IngestResult, SqlStore
from hub.writer import EventWriter, WriterStopped
from tests.conftest import build_store
from tests.helpers import BASE_TIME, make_event

pytestmark = [pytest.mark.postgres]


@pytest.fixture(params=["sqlite", "postgres"])
async def wstore(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = build_store(request.param, request, tmp_path)
    await store.open()
    yield store
    await store.close()


async def test_callback_fires_only_when_the_event_is_readable(wstore: SqlStore) -> None:
    seen_in_store: list[int] = []

    async with EventWriter(wstore, batch_delay=0.001) as writer:
        done = asyncio.Event()

        def committed() -> None:
            # Runs on the loop right after commit: record, then check from a task.
            done.set()

        await writer.submit(make_event(1, key="press-1"), committed)
        await asyncio.wait_for(done.wait(), 5)
        seen_in_store.append(await wstore.count_events())
    assert seen_in_store == [1]


async def test_bus_announces_committed_events_once(wstore: SqlStore) -> None:
    bus: EventBus[DeviceEvent] = EventBus("events")
    sub = bus.subscribe(maxsize=100)
    async with EventWriter(wstore, bus=bus) as writer:
        for i in range(5):
            await writer.submit(make_event(i, key=f"k{i % 3}"))
    received = [sub._queue.get_nowait() for _ in range(sub._queue.qsize())]
    assert [e.dedup_key for e in received if isinstance(e, DeviceEvent)] == ["k0", "k1", "k2"]


async def test_backpressure_waits_and_loses_nothing(wstore: SqlStore) -> None:
    writer = EventWriter(wstore, queue_size=8, batch_max=4, batch_delay=0.0)
    await writer.start()
    max_seen = 0

    async def produce(offset: int) -> None:
        nonlocal max_seen
        for i in range(150):
            await writer.submit(make_event(offset + i, key=f"p{offset + i}"))
            max_seen = max(max_seen, writer.pending)

    await asyncio.gather(produce(0), produce(1000), produce(2000))
    await writer.stop()
    assert max_seen <= 8
    assert await wstore.count_events() == 450


async def test_stop_drains_the_queue(wstore: SqlStore) -> None:
    writer = EventWriter(wstore, batch_max=10, batch_delay=0.05)
    await writer.start()
    for i in range(95):
        await writer.submit(make_event(i))
    await writer.stop()
    assert await wstore.count_events() == 95
    with pytest.raises(WriterStopped):
        await writer.submit(make_event(999))


class FlakyStore:
    """The project's own store, failing its first commits (as a dropped connection would)."""

    def __init__(self, inner: SqlStore, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def ingest(self, items: Sequence[DeviceEvent | RejectedMessage], **kw: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("server closed the connection unexpectedly")
        result: IngestResult = await self.inner.ingest(items, **kw)
        return result


async def test_failed_commits_are_retried_and_callbacks_wait_for_success(
    wstore: SqlStore,
) -> None:
    flaky = FlakyStore(wstore, failures=3)
    metrics = Metrics()
    writer = EventWriter(flaky, metrics=metrics, batch_delay=0.01)  # type: ignore[arg-type]
    await writer.start()
    acked: list[int] = []
    for i in range(3):
        await writer.submit(make_event(i), lambda i=i: acked.append(i))  # type: ignore[misc]
    await asyncio.sleep(0.05)
    assert acked == []  # nothing acknowledged while commits fail
    await writer.stop()
    assert sorted(acked) == [0, 1, 2]
    assert await wstore.count_events() == 3
    assert flaky.calls >= 4
    assert b"gridwatch_writer_commit_failures_total 3.0" in metrics.render()


async def test_rejected_messages_go_through_the_writer(wstore: SqlStore) -> None:
    metrics = Metrics()
    acked = asyncio.Event()
    async with EventWriter(wstore, metrics=metrics) as writer:
        await writer.submit(
            RejectedMessage(
                time=BASE_TIME, source="mqtt", origin="t", reason="not JSON", payload=b"x"
            ),
            acked.set,
        )
    assert acked.is_set()
    assert [r.reason for r in await wstore.rejected_messages()] == ["not JSON"]
    assert b'gridwatch_messages_rejected_total{source="mqtt"} 1.0' in metrics.render()


async def test_a_cancelled_transaction_leaves_nothing_behind(wstore: SqlStore) -> None:
    """A task cancelled inside (or while opening) a transaction rolls it back."""
    entered = asyncio.Event()

    async def slow_writer() -> None:
        async with wstore.transaction() as tx:
            await tx.execute(
                "INSERT INTO rejected_messages (id, time, source, origin, reason, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (uuid.uuid4(), BASE_TIME, "test", "t", "half-done", b""),
            )
            entered.set()
            await asyncio.sleep(30)

    inside = asyncio.create_task(slow_writer())
    await asyncio.wait_for(entered.wait(), 10)
    inside.cancel()
    with pytest.raises(asyncio.CancelledError):
        await inside
    # Cancelled while its BEGIN is still on its way.
    for spins in range(40):
        opening = asyncio.create_task(wstore.ingest([make_event(99)]))
        for _ in range(spins % 8):
            await asyncio.sleep(0)
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
    result = await wstore.ingest([make_event(1, key="after-cancel")])
    assert len(result.stored) == 1
    assert [r.reason for r in await wstore.rejected_messages()] == []


async def test_events_queued_during_a_commit_do_not_wait_for_the_batch_delay(
    wstore: SqlStore,
) -> None:
    """A lone event waits the batch delay for company; events that queued up while
    a commit ran are committed right after it, in one batch, without that wait."""
    gate = asyncio.Event()
    first_begun = asyncio.Event()
    all_committed = asyncio.Event()
    batches: list[int] = []

    async def slow_first_commit(_tx: Any, events: list[DeviceEvent]) -> None:
        batches.append(len(events))
        if len(batches) == 1:
            first_begun.set()
            await gate.wait()

    loop = asyncio.get_running_loop()
    committed: dict[int, float] = {}

    def mark(n: int) -> Any:
        def record() -> None:
            committed.setdefault(n, loop.time())
            if len(committed) == 4:
                all_committed.set()

        return record

    writer = EventWriter(wstore, batch_delay=2.0, in_transaction=slow_first_commit)
    await writer.start()
    try:
        started = loop.time()
        await writer.submit(make_event(0, key="lone"), mark(0))
        await asyncio.wait_for(first_begun.wait(), 10)  # after the delay
        assert loop.time() - started >= 1.9
        for n in (1, 2, 3):
            await writer.submit(make_event(n, key=f"queued-{n}"), mark(n))
        await asyncio.sleep(0.1)
        released = loop.time()
        gate.set()
        await asyncio.wait_for(all_committed.wait(), 10)
    finally:
        gate.set()
        await writer.stop(drain_timeout=10)
    assert batches == [1, 3]
    # Well under the 2 s delay the lone event waited.
    assert max(committed[n] for n in (1, 2, 3)) - released < 1.0


async def test_a_panic_press_does_not_wait_the_batch_delay_for_company(wstore: SqlStore) -> None:
    """Heartbeats trickling in wait the batch delay for company; a critical event
    (a panic press) among them ends the wait: it commits at once, with them."""
    loop = asyncio.get_running_loop()
    committed: dict[str, float] = {}
    pressed = asyncio.Event()

    def mark(name: str) -> Any:
        def record() -> None:
            committed[name] = loop.time()
            if name == "press":
                pressed.set()

        return record

    async with EventWriter(wstore, batch_delay=3.0) as writer:
        started = loop.time()
        await writer.submit(make_event(0, key="beat-0", kind="mqtt.heartbeat"), mark("beat-0"))
        await asyncio.sleep(0.3)
        assert committed == {}  # a lone heartbeat waits for company
        press = make_event(1, key="press", kind="panic.press", severity=Severity.CRITICAL)
        await writer.submit(press, mark("press"))
        await asyncio.wait_for(pressed.wait(), 10)
        assert committed["press"] - started < 1.5  # well inside the 3 s delay
        assert set(committed) == {"beat-0", "press"}  # in one batch with the heartbeat
