"""This node in the cluster: heartbeats, the live-node view, work assignment, singleton jobs.

Feature services ask `is_mine(device_id)` and register `on_change` callbacks to
hear when their share of the devices changed (a node joined, died or left, or a
handover finished). On SQLite the hub is a single node: everything is its own,
and it says so at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from hub import __version__
from hub.clock import Clock, utcnow
from hub.cluster import storage
from hub.cluster.config import ClusterSettings
from hub.cluster.ring import Handover
from hub.cluster.singletons import JobRun, Singletons
from hub.cluster.storage import LockSession, NodeRow
from hub.storage.base import SqlStore, StorageError

__all__ = ["Cluster", "NodeState", "NodeStatus"]

log = logging.getLogger(__name__)

NodeState = Literal["alive", "dead", "stopped"]


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node as the membership table tells it."""

    node_id: str
    address: str
    version: str
    state: NodeState
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    jobs: tuple[str, ...]
    this_node: bool


class Cluster:
    """Membership, assignment and singleton jobs of this hub node."""

    def __init__(
        self,
        settings: ClusterSettings,
        *,
        store: SqlStore,
        node_id: str,
        address: str,
        conninfo: str | None,
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self._store = store
        self._address = address
        self._clock = clock
        self.multi_node = store.dialect.is_postgresql
        session = None
        if self.multi_node and conninfo is not None:
            session = LockSession(conninfo, node_id, keepalive_s=settings.node_timeout_s / 4)
        self._singletons = Singletons(session)
        self._handover = Handover(node_id, timedelta(seconds=settings.handover_s))
        self._listeners: list[Callable[[], None]] = []
        self._last_beat: datetime | None = None
        self._dead: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._started = False

    # -- what feature services use ------------------------------------------------

    def is_mine(self, key: str) -> bool:
        """True when this node should work on `key` (a device id) now."""
        if not self.multi_node:
            return True
        return self._handover.is_mine(key)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` (no arguments, never blocking) whenever this node's share may
        have changed; the callee asks `is_mine` again for its devices."""
        self._listeners.append(callback)

    def add_singleton(self, name: str, run: JobRun) -> None:
        """Run `run()` on exactly one node of the cluster (before `start`)."""
        self._singletons.add(name, run)

    @property
    def live_nodes(self) -> frozenset[str]:
        """The nodes this node last saw alive (itself included while it is healthy)."""
        if not self.multi_node:
            return frozenset({self.node_id})
        return self._handover.live

    @property
    def jobs(self) -> list[str]:
        """The singleton jobs running on this node."""
        return self._singletons.running

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Join: first heartbeat, first view, first try at the singleton locks."""
        if self._started:
            return
        self._started = True
        if not self.multi_node:
            log.info(
                "cluster: SQLite storage — a single node (%s); every job and device runs here",
                self.node_id,
            )
        await self._tick(starting=True)
        self._task = asyncio.create_task(self._run(), name="cluster-heartbeat")

    async def stop(self) -> None:
        """Leave: stop the jobs, let the locks go, mark this node stopped."""
        if not self._started:
            return
        self._started = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._singletons.close()
        if self.multi_node and self._handover.see(frozenset(), self._clock()):
            self._announce()
        try:
            await storage.leave(self._store, self.node_id, now=self._clock())
        except (StorageError, OSError) as exc:
            log.warning("cluster: could not mark %s stopped (%s); it times out", self.node_id, exc)

    async def others_alive(self) -> bool:
        """True when another node's heartbeat is fresh (read from the database; usable
        before this node joins). A node starting beside live ones keeps their state."""
        if not self.multi_node:
            return False
        try:
            rows = await storage.list_nodes(self._store, now=self._clock())
        except (StorageError, OSError) as exc:
            log.warning("cluster: membership not readable (%s); assuming no other node", exc)
            return False
        return any(r.node_id != self.node_id and self._state(r) == "alive" for r in rows)

    async def nodes(self) -> list[NodeStatus]:
        """Every node in the membership table with its state."""
        rows = await storage.list_nodes(self._store, now=self._clock())
        return [self._status(row) for row in rows]

    # -- the heartbeat ---------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self._tick(starting=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: heartbeat failed; will retry")

    async def _tick(self, *, starting: bool) -> None:
        now = self._clock()
        live: frozenset[str] | None = None
        try:
            await storage.beat(
                self._store,
                self.node_id,
                address=self._address,
                version=__version__,
                jobs=self._singletons.running,
                starting=starting,
                now=now,
            )
            self._last_beat = now
            rows = await storage.list_nodes(self._store, now=now)
            live = frozenset(r.node_id for r in rows if self._state(r) == "alive")
            self._dead = {r.node_id for r in rows if self._state(r) != "alive"}
        except Exception as exc:
            if starting:
                raise
            log.warning("cluster: heartbeat not written (%s: %s)", type(exc).__name__, exc)
        fence_after = timedelta(seconds=self.settings.node_timeout_s - self.settings.heartbeat_s)
        healthy = self._last_beat is not None and now - self._last_beat < fence_after
        if self.multi_node:
            if not healthy:
                # The others will call this node dead soon: let go of everything first.
                live = frozenset()
            if live is not None and self._handover.see(live, now):
                self._announce()
        await self._singletons.settle(healthy=healthy, dead_nodes=self._dead)

    def _announce(self) -> None:
        log.info(
            "cluster: live nodes %s%s",
            ", ".join(sorted(self._handover.live)) or "(none: this node is out)",
            " (handing over)" if self._handover.waiting else "",
        )
        for callback in self._listeners:
            try:
                callback()
            except Exception:
                log.exception("cluster: a membership listener failed")

    def _state(self, row: NodeRow) -> NodeState:
        if row.stopped_at is not None:
            return "stopped"
        age = (row.read_at - row.heartbeat_at).total_seconds()
        return "alive" if age < self.settings.node_timeout_s else "dead"

    def _status(self, row: NodeRow) -> NodeStatus:
        return NodeStatus(
            node_id=row.node_id,
            address=row.address,
            version=row.version,
            state=self._state(row),
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            heartbeat_age_s=max(0.0, (row.read_at - row.heartbeat_at).total_seconds()),
            jobs=row.jobs,
            this_node=row.node_id == self.node_id,
        )
