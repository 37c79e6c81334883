"""Singleton jobs: each runs on exactly one node, the one holding its advisory lock.

A job is a coroutine that runs until cancelled (a loop with its own sleep). Every
heartbeat the node checks its lock connection and tries to take the locks of the
jobs it does not run. When the connection is lost, every job stops at once (the
server has already released the locks). When a job's lock is held by a node whose
heartbeat says it is dead (a frozen process keeps its connection open), the
holder's session is ended so the job can move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from hub.cluster.storage import LockSession
from hub.storage.base import StorageError

__all__ = ["JobRun", "Singletons"]

log = logging.getLogger(__name__)

#: A singleton job: a coroutine that runs until it is cancelled.
JobRun = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class _Job:
    name: str
    run: JobRun
    task: asyncio.Task[None] | None = None


class Singletons:
    """The singleton jobs of one node and the lock session that decides where they run."""

    def __init__(self, session: LockSession | None) -> None:
        #: None on SQLite: one node, every job runs here without a lock.
        self._session = session
        self._jobs: dict[str, _Job] = {}

    def add(self, name: str, run: JobRun) -> None:
        """Register a job (before the first `settle`)."""
        if name in self._jobs:
            raise ValueError(f"singleton job {name!r} is registered twice")
        self._jobs[name] = _Job(name, run)

    @property
    def running(self) -> list[str]:
        """The jobs this node runs now."""
        return sorted(job.name for job in self._jobs.values() if job.task is not None)

    async def settle(self, *, healthy: bool, dead_nodes: set[str]) -> None:
        """Stop what this node lost, take what is free (when `healthy`)."""
        session = self._session
        if session is None:
            for job in self._jobs.values():
                self._ensure_running(job)
            return
        if self.running and not await session.check():
            log.warning("cluster: lock connection lost; stopping %s", ", ".join(self.running))
            await self.stop_all(unlock=False)
        if not healthy:
            if self.running:
                log.warning("cluster: this node is out of the cluster; stopping its jobs")
                await self.stop_all(unlock=True)
            return
        try:
            if not session.connected:
                await session.connect()
            for job in self._jobs.values():
                if job.task is not None:
                    self._ensure_running(job)
                    continue
                if await session.try_lock(job.name):
                    log.info("cluster: this node runs the %s job", job.name)
                    self._ensure_running(job)
                    continue
                holder = await session.holder(job.name)
                if holder is not None and holder.node_id in dead_nodes:
                    log.warning(
                        "cluster: ending the lock session of dead node %s (it holds %s)",
                        holder.node_id,
                        job.name,
                    )
                    await session.terminate(holder.pid)
        except StorageError as exc:
            log.warning("cluster: singleton locks not checked (%s); will retry", exc)
            if not session.connected and self.running:
                await self.stop_all(unlock=False)

    def _ensure_running(self, job: _Job) -> None:
        if job.task is not None and job.task.done():
            if not job.task.cancelled() and job.task.exception() is not None:
                log.error(
                    "cluster: job %s ended with an error; restarting it",
                    job.name,
                    exc_info=job.task.exception(),
                )
            job.task = None
        if job.task is None:
            job.task = asyncio.create_task(job.run(), name=f"singleton-{job.name}")

    async def stop_all(self, *, unlock: bool) -> None:
        """Cancel every running job (and let its lock go when the session is still up)."""
        for job in self._jobs.values():
            task, job.task = job.task, None
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if unlock and self._session is not None and self._session.connected:
                try:
                    await self._session.unlock(job.name)
                except StorageError:
                    log.debug("cluster: unlocking %s failed", job.name, exc_info=True)

    async def close(self) -> None:
        """Stop every job and close the lock session."""
        await self.stop_all(unlock=True)
        if self._session is not None:
            await self._session.close()
