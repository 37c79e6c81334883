"""The writer's bounded queue: order, backpressure, and producers cancelled while waiting."""

from __future__ import annotations

import asyncio
import contextlib

from camera_registry.events import DeviceEvent
from hub.writer import _Backlog, _Entry
from tests.helpers import make_event


def entry(n: int) -> _Entry:
    return _Entry(make_event(n, key=f"b{n}"), None)


def numbers(batch: list[_Entry]) -> list[int]:
    return [int((e.item.dedup_key or "")[1:]) for e in batch if isinstance(e.item, DeviceEvent)]


async def test_entries_come_out_in_order_in_batches_of_the_limit() -> None:
    backlog = _Backlog(10)
    for n in range(5):
        await backlog.put(entry(n))
    assert numbers(backlog.take(3)) == [0, 1, 2]
    assert numbers(backlog.take(3)) == [3, 4]
    assert len(backlog) == 0


async def test_a_full_backlog_holds_producers_until_room_is_made() -> None:
    backlog = _Backlog(2)
    await backlog.put(entry(0))
    await backlog.put(entry(1))
    waiting = asyncio.create_task(backlog.put(entry(2)))
    await asyncio.sleep(0.01)
    assert not waiting.done() and len(backlog) == 2
    assert numbers(backlog.take(1)) == [0]
    await asyncio.wait_for(waiting, 1)
    assert numbers(backlog.take(5)) == [1, 2]


async def test_a_producer_cancelled_as_it_is_woken_passes_its_room_on() -> None:
    """Room for one: the producer woken for it is cancelled (its client went away)
    before it runs; the next waiting producer gets the room instead of all stalling."""
    backlog = _Backlog(2)
    await backlog.put(entry(0))
    await backlog.put(entry(1))
    first, second, third = (asyncio.create_task(backlog.put(entry(n))) for n in (2, 3, 4))
    await asyncio.sleep(0.01)
    backlog.take(1)  # wakes `first` only
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    await asyncio.sleep(0.01)
    assert not third.done()
    assert numbers(backlog.take(5)) == [1, 3]
    await asyncio.wait_for(third, 1)


async def test_join_waits_for_every_entry_taken_to_be_done() -> None:
    backlog = _Backlog(10)
    await backlog.join()  # nothing queued: returns at once
    for n in range(3):
        await backlog.put(entry(n))
    joined = asyncio.create_task(backlog.join())
    batch = backlog.take(10)
    await asyncio.sleep(0.01)
    assert not joined.done()
    backlog.done(len(batch))
    await asyncio.wait_for(joined, 1)
