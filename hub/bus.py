"""Typed in-process fan-out of committed changes to live subscribers.

Each subscriber has its own bounded queue, so one slow WebSocket cannot hold up
the writer or any other subscriber. A subscriber that falls a whole queue
behind is cut off with `SubscriptionOverflow`: it must re-read from storage
(the source of truth) and subscribe again, which is what the console's
re-sync does. Only committed data is ever published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["EventBus", "Subscription", "SubscriptionOverflow"]

log = logging.getLogger(__name__)
M = TypeVar("M")


class SubscriptionOverflow(Exception):
    """The subscriber fell too far behind and missed messages; re-sync from storage."""


class _Closed:
    pass


_CLOSED = _Closed()


class Subscription(Generic[M]):
    """One subscriber's bounded queue; iterate it with `async for`."""

    def __init__(self, bus: EventBus[M], maxsize: int, name: str) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[M | _Closed] = asyncio.Queue(maxsize)
        self.name = name
        self.overflowed = False

    def _offer(self, message: M) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning(
                "subscriber %s fell behind by %d messages; cut off", self.name, self._queue.maxsize
            )
            self._bus.unsubscribe(self)

    def _close(self) -> None:
        # A cut-off subscriber must re-sync from storage anyway, so what it still
        # holds is dropped and it learns at once; a closed one wakes its reader.
        while self.overflowed and not self._queue.empty():
            self._queue.get_nowait()
        while self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)

    async def get(self) -> M:
        """The next message; raises SubscriptionOverflow or StopAsyncIteration when cut off."""
        if self.overflowed and self._queue.empty():
            raise SubscriptionOverflow(self.name)
        item = await self._queue.get()
        if isinstance(item, _Closed):
            if self.overflowed:
                raise SubscriptionOverflow(self.name)
            raise StopAsyncIteration
        return item

    def __aiter__(self) -> AsyncIterator[M]:
        return self

    async def __anext__(self) -> M:
        return await self.get()

    def close(self) -> None:
        """Stop receiving messages."""
        self._bus.unsubscribe(self)


class EventBus(Generic[M]):
    """Fan-out of one message type to any number of subscribers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Subscription[M]] = []
        self._listeners: list[Callable[[M], None]] = []

    def subscribe(self, *, maxsize: int = 1000, name: str = "subscriber") -> Subscription[M]:
        """A new subscription receiving every message published from now on."""
        sub = Subscription(self, maxsize, f"{self.name}/{name}")
        self._subscribers.append(sub)
        return sub

    def on_publish(self, listener: Callable[[M], None]) -> None:
        """Call `listener` with each message as it is published, after the subscribers'
        queues have it. It runs inside `publish` and must not block."""
        self._listeners.append(listener)

    def unsubscribe(self, sub: Subscription[M]) -> None:
        """Remove a subscription and wake its reader."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)
            sub._close()

    def publish(self, message: M) -> None:
        """Hand a committed message to every subscriber without waiting."""
        for sub in list(self._subscribers):
            sub._offer(message)
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:
                log.exception("a listener of %s failed", self.name)

    def publish_all(self, messages: Iterable[M]) -> None:
        """Publish several messages in order."""
        for message in messages:
            self.publish(message)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are live."""
        return len(self._subscribers)
