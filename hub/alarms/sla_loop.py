"""The SLA loop: escalates alarms whose stored deadline passed.

Deadlines are stored on the alarm, so escalation happens on time across
restarts: the loop compares them with the clock every `alarms.escalation_check_s`.
An escalation raises the level, moves the running deadline on (never the first
one), re-notifies, and can raise the priority or reach the supervisor sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from alarms.sla import SlaPolicy, check_escalation, escalate
from hub.alarms.query_storage import due_for_escalation
from hub.alarms.recording import Recorder, location_from
from hub.alarms.storage import get_alarm, update_alarm
from hub.clock import Clock, utcnow
from hub.metrics import Metrics
from hub.storage.base import SqlStore

__all__ = ["SlaLoop"]

log = logging.getLogger(__name__)


class SlaLoop:
    """Escalates overdue alarms, once now (`escalate_due`) or in a loop (`start`)."""

    def __init__(
        self,
        store: SqlStore,
        recorder: Recorder,
        policy: SlaPolicy,
        *,
        every_s: float,
        clock: Clock = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._policy = policy
        self._every_s = every_s
        self._clock = clock
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start checking deadlines in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="alarm-sla")

    async def stop(self) -> None:
        """Stop checking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def escalate_due(self, now: datetime | None = None) -> int:
        """Escalate every alarm whose stored deadline has passed; return how many."""
        now = now or self._clock()
        policy = self._policy
        escalated = 0
        for alarm_id in await due_for_escalation(
            self._store, now, max_level=policy.escalation.max_level
        ):
            async with self._store.transaction() as tx:
                stored = await get_alarm(tx, self._store.dialect, alarm_id, for_update=True)
                if stored is None:
                    continue
                due = check_escalation(stored.alarm, now, policy)
                if due is None:
                    continue
                updated, entry = escalate(stored.alarm, due)
                await update_alarm(tx, updated, previous_revision=stored.alarm.revision, now=now)
                change, queued = await self._recorder.record(
                    tx,
                    updated,
                    entry,
                    jurisdiction_path=stored.jurisdiction_path,
                    location=location_from(stored.details),
                    notify=due.renotify,
                    now=now,
                    supervisor=due.supervisor,
                )
            self._recorder.announce([change], queued)
            escalated += 1
            if self._metrics is not None:
                self._metrics.alarm_escalations.labels(
                    priority=str(updated.priority.level), level=str(updated.escalation_level)
                ).inc()
            log.warning(
                "alarm %s escalated to level %d (%s overdue)",
                alarm_id,
                updated.escalation_level,
                due.overdue_by,
            )
        return escalated

    async def run(self) -> None:
        """Check deadlines every `every_s` until cancelled (a cluster runs it on one node)."""
        while True:
            try:
                await self.escalate_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SLA check failed; will retry")
            await asyncio.sleep(self._every_s)
