"""An HTTP receiver for outbox tests: slow on purpose, it records every idempotency key.

It tells apart a repeat (the same key again, after the first attempt ended)
from a concurrent duplicate (the same key arriving while an earlier request
with that key is still being handled), and remembers which keys it answered
with a 2xx, so a test can check that nothing counts as delivered that the
receiver never got. It answers only on its own random path, so a delivery
from another test that happens to target the same port is refused, not counted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from tests.integration.alarm_support import verify_signature

__all__ = ["KeyedReceiver", "serve_receiver"]


@dataclass
class KeyedReceiver:
    """Answers `status` (204) after `delay_s`; checks signatures when `signed`."""

    delay_s: float = 0.3
    signed: bool = True
    status: int = 204
    #: Monotonic time of each request's arrival, in arrival order.
    arrived_at: list[float] = field(default_factory=list)
    #: Monotonic time the first answer other than 2xx was given (None before).
    first_refusal_at: float | None = None
    #: Every request's key, in arrival order.
    arrivals: list[str] = field(default_factory=list)
    #: Keys answered 2xx (the receiver took the incident).
    answered: set[str] = field(default_factory=set)
    #: Body of the first request per key.
    bodies: dict[str, bytes] = field(default_factory=dict)
    #: Requests whose body differed from the first one with the same key.
    changed_bodies: list[str] = field(default_factory=list)
    #: Keys that arrived while a request with the same key was in flight.
    concurrent_duplicates: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    in_flight: Counter[str] = field(default_factory=Counter)
    content_types: set[str] = field(default_factory=set)
    path: str = field(default_factory=lambda: f"/hook/{uuid.uuid4().hex}")

    def url(self, port: int) -> str:
        """Where a sink delivers to this receiver on `port`."""
        return f"http://127.0.0.1:{port}{self.path}"

    def count(self, key: str) -> int:
        """How many requests carried `key`."""
        return self.arrivals.count(key)

    async def handle(self, request: web.Request) -> web.Response:
        """Record, wait, answer."""
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = headers.get("webhook-id", "")
        self.content_types.add(headers.get("content-type", ""))
        if self.in_flight[key]:
            self.concurrent_duplicates.append(key)
        self.in_flight[key] += 1
        self.arrivals.append(key)
        self.arrived_at.append(time.monotonic())
        first = self.bodies.setdefault(key, body)
        if first != body:
            self.changed_bodies.append(key)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight[key] -= 1
        if self.signed and not verify_signature(headers, body):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.status >= 300:
            if self.first_refusal_at is None:
                self.first_refusal_at = time.monotonic()
            return web.Response(status=self.status)
        self.answered.add(key)
        return web.Response(status=self.status)


@asynccontextmanager
async def serve_receiver(receiver: KeyedReceiver, port: int) -> AsyncIterator[KeyedReceiver]:
    """Serve `receiver` at `receiver.url(port)` until the block ends."""
    app = web.Application()
    app.router.add_post(receiver.path, receiver.handle)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield receiver
    finally:
        await runner.cleanup()
