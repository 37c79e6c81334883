"""Dispatch by rule without anyone asking: each alarm an automatic rule covers is
dispatched as soon as it opens, and at start the open alarms of the last day that have
no task (opened while no hub node was dispatching) are caught up with."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from alarms.models import AlarmAction
from hub.alarms.storage import AlarmChange, StoredAlarm
from hub.auth.principal import system_actor
from hub.bus import Subscription, SubscriptionOverflow
from hub.departments.errors import DepartmentError, TaskConflict, TaskNotFound

if TYPE_CHECKING:
    from hub.departments.service import DepartmentService

__all__ = ["RuleDispatch"]

log = logging.getLogger(__name__)

_SYSTEM = system_actor("tasks")
#: How far back the start-up catch-up looks for open alarms without tasks.
_CATCH_UP = timedelta(days=1)


def _everyone(stored: StoredAlarm) -> bool:
    """The hub itself sees every alarm."""
    return True


class RuleDispatch:
    """The automatic rules of one department service, applied as alarms open."""

    def __init__(self, service: DepartmentService) -> None:
        self.service = service

    def start(self) -> list[asyncio.Task[None]]:
        """Subscribe to the alarm stream (before returning, so no opening is missed) and
        start following it and the catch-up; the caller owns the returned tasks."""
        subscription = self.service.bus.subscribe(maxsize=10_000, name="task-rules")
        return [
            asyncio.create_task(self._auto_dispatch(subscription), name="task-rules"),
            asyncio.create_task(self._catch_up_once(), name="task-catch-up"),
        ]

    async def _auto_dispatch(self, subscription: Subscription[AlarmChange]) -> None:
        """Dispatch newly opened alarms that an automatic rule covers."""
        while True:
            try:
                while True:
                    change = await subscription.get()
                    if change.action == AlarmAction.OPEN.value:
                        await self._dispatch_opened(change)
            except SubscriptionOverflow:
                log.error(
                    "automatic dispatch fell behind the alarm stream; "
                    "alarms opened meanwhile need dispatching by hand"
                )
            except StopAsyncIteration:
                return
            finally:
                subscription.close()
            subscription = self.service.bus.subscribe(maxsize=10_000, name="task-rules")

    async def catch_up(self) -> int:
        """Dispatch by the automatic rules the open alarms of the last day that have no task
        (opened while no hub node was dispatching); return how many tasks went out."""
        since = self.service.now() - _CATCH_UP
        dispatched = 0
        for alarm_id, alarm_type, is_drill in await self.service.repo.open_alarms_without_tasks(
            since
        ):
            if not self.service.rules_for(alarm_type, is_drill, auto=True):
                continue
            try:
                created = await self.service.dispatch_by_rule(
                    alarm_id, _SYSTEM, visible=_everyone, auto=True
                )
            except (TaskNotFound, TaskConflict, DepartmentError) as exc:
                log.warning("no automatic dispatch of alarm %s: %s", alarm_id, exc)
                continue
            dispatched += len(created)
        if dispatched:
            log.info("dispatched %d tasks of alarms opened while none were dispatched", dispatched)
        return dispatched

    async def _catch_up_once(self) -> None:
        try:
            await self.catch_up()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("catching up with undispatched alarms failed")

    async def _dispatch_opened(self, change: AlarmChange) -> None:
        alarm = change.payload.get("alarm") or {}
        if not self.service.rules_for(
            str(alarm.get("type", "")), bool(alarm.get("is_drill")), auto=True
        ):
            return
        try:
            await self.service.dispatch_by_rule(
                change.alarm_id, _SYSTEM, visible=_everyone, auto=True
            )
        except (TaskNotFound, TaskConflict, DepartmentError) as exc:
            log.warning("no automatic dispatch of alarm %s: %s", change.alarm_id, exc)
        except Exception:
            log.exception("automatic dispatch of alarm %s failed", change.alarm_id)
