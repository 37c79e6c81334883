"""Assembly: builds every service from settings, starts them in order, stops them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI

from camera_registry.events import DeviceEvent
from hub.api import create_app
from hub.bus import EventBus
from hub.config import Settings
from hub.metrics import Metrics
from hub.storage import SqlStore, open_store
from hub.writer import EventWriter

__all__ = ["Hub", "serve"]

log = logging.getLogger(__name__)

_RETENTION_EVERY_S = 3600.0


class Hub:
    """One GridWatch node: storage, writer, bus and the HTTP app over them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.events: EventBus[DeviceEvent] = EventBus("events")
        self.store: SqlStore = open_store(
            settings.storage_url(),
            pool_size=settings.storage.pool_size,
            retention_days=settings.storage.retention_days,
            compress_after_days=settings.storage.compress_after_days,
        )
        self.writer = EventWriter(
            self.store,
            bus=self.events,
            metrics=self.metrics,
            queue_size=settings.writer.queue_size,
            batch_max=settings.writer.batch_max,
            batch_delay=settings.writer.batch_delay_ms / 1000,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def app(self) -> FastAPI:
        """The HTTP API bound to this hub's services."""
        return create_app(
            self.settings,
            store=self.store,
            writer=self.writer,
            events=self.events,
            metrics=self.metrics,
        )

    async def start(self) -> None:
        """Open storage (migrating it), then start the writer and housekeeping."""
        await self.store.open()
        await self.writer.start()
        self._tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))
        log.info("hub started: storage=%s", self.store.backend)

    async def stop(self) -> None:
        """Stop housekeeping, drain the writer (nothing queued is lost), close storage."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        pending = self.writer.pending
        if pending:
            log.info("draining %d queued events before exit", pending)
        await self.writer.stop()
        await self.store.close()
        log.info("hub stopped")

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _retention_loop(self) -> None:
        while True:
            try:
                removed = await self.store.apply_retention(datetime.now(UTC))
                if removed:
                    log.info("retention removed %d old event rows/chunks", removed)
            except Exception:
                log.exception("retention run failed; will retry")
            await asyncio.sleep(_RETENTION_EVERY_S)


async def serve(settings: Settings) -> None:
    """Run the hub and its HTTP server until SIGINT/SIGTERM, then shut down cleanly."""
    async with Hub(settings) as hub:
        config = uvicorn.Config(
            hub.app(),
            host=settings.http.host,
            port=settings.http.port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.request_exit, signum)
        log.info("GridWatch listening on http://%s:%d", settings.http.host, settings.http.port)
        try:
            await server.serve()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal capture: it re-raises the signal after serving,
    which would kill the process before the writer is drained."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self, signum: int) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        self.should_exit = True
