"""Broadcast commands from operators to MQTT broadcast units: scope, record, send, close.

A request is checked against the caller's jurisdiction scope, recorded as `pending` with
its audit row, then sent in the background (publish at QoS 1, wait for the unit's ack,
retry); when it ends (acked, failed, timed out) the outcome is written to its row. The
caller gets the command id at once and may poll it, or wait for the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.mqtt import BroadcastCommand, CommandOutcome, UnitStatus, UnknownUnitError
from hub.broadcast.storage import (
    CommandRecord,
    create_commands,
    expire_pending,
    finish_command,
    get_command,
)
from hub.clock import utcnow
from hub.devices.storage import BroadcastUnit, broadcast_units
from hub.mqtt.service import MqttService
from hub.storage import SqlStore

__all__ = ["BroadcastService", "BroadcastUnavailable", "UnitView", "unit_status_label"]

log = logging.getLogger(__name__)

_STATUS_BY_ADAPTER: dict[UnitStatus, str] = {
    UnitStatus.ONLINE: "online",
    UnitStatus.IDLE: "online",
    UnitStatus.BUSY: "busy",
    UnitStatus.FAULT: "fault",
    UnitStatus.OFFLINE: "offline",
}
_STATUS_BY_HEALTH: dict[str, str] = {
    "online": "online",
    "degraded": "fault",
    "offline": "offline",
}


class BroadcastUnavailable(Exception):
    """Commands cannot be sent: MQTT is disabled on this hub."""


@dataclass(frozen=True, slots=True)
class UnitView:
    """A broadcast unit with the status an operator sees."""

    unit: BroadcastUnit
    status: str


def unit_status_label(adapter_status: UnitStatus, stored_health: str) -> str:
    """online / busy / fault / offline / unknown: live MQTT status first, stored health next."""
    live = _STATUS_BY_ADAPTER.get(adapter_status)
    if live is not None:
        return live
    return _STATUS_BY_HEALTH.get(stored_health, "unknown")


class BroadcastService:
    """Sends, records and reports broadcast commands."""

    def __init__(
        self,
        store: SqlStore,
        mqtt: MqttService,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._mqtt = mqtt
        self._clock = clock
        self._running: dict[str, asyncio.Task[None]] = {}
        settings = mqtt.settings
        # The longest a command can take; older pending rows belong to a stopped hub.
        self._max_duration = timedelta(
            seconds=settings.command_timeout_s * (settings.command_retries + 1) + 60
        )

    async def start(self) -> None:
        """Close commands a previous run left pending."""
        now = self._clock()
        closed = await expire_pending(self._store, older_than=now - self._max_duration, now=now)
        if closed:
            log.warning("closed %d broadcast commands left pending by a stopped hub", closed)

    async def stop(self) -> None:
        """Stop waiting for acks; unfinished commands are closed as timed out."""
        running = dict(self._running)
        for task in running.values():
            task.cancel()
        for task in running.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        now = self._clock()
        for command_id in running:
            await finish_command(
                self._store,
                command_id,
                outcome=CommandOutcome.TIMED_OUT.value,
                attempts=0,
                finished_at=now,
                reason="the hub stopped before the unit answered",
            )

    async def units(
        self, scope_paths: Sequence[str] | None, *, zone: str | None = None
    ) -> list[UnitView]:
        """Broadcast units within the scope, with their status."""
        rows = await broadcast_units(self._store, scope_paths, zone=zone)
        return [
            UnitView(row, unit_status_label(self._mqtt.unit_status(row.device_id), row.health))
            for row in rows
        ]

    async def command_unit(
        self,
        unit_id: str,
        command: BroadcastCommand,
        *,
        scope_paths: Sequence[str] | None,
        actor: str,
        remote_addr: str | None,
    ) -> CommandRecord | None:
        """Record and start a command to one unit; None if no such unit within the scope."""
        units = await broadcast_units(self._store, scope_paths, unit_id=unit_id)
        if not units:
            return None
        records = await self._start(units, command, None, actor, remote_addr)
        return records[0]

    async def command_zone(
        self,
        zone: str,
        command: BroadcastCommand,
        *,
        scope_paths: Sequence[str] | None,
        actor: str,
        remote_addr: str | None,
    ) -> list[CommandRecord]:
        """Record and start one command per unit tagged `zone` within the scope."""
        units = await broadcast_units(self._store, scope_paths, zone=zone)
        if not units:
            return []
        return await self._start(units, command, zone, actor, remote_addr)

    async def get(self, command_id: str, scope_paths: Sequence[str] | None) -> CommandRecord | None:
        """A command within the scope."""
        return await get_command(self._store, command_id, scope_paths)

    async def wait(self, command_ids: Sequence[str]) -> None:
        """Wait until the commands this hub is sending have ended."""
        tasks = [self._running[i] for i in command_ids if i in self._running]
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True)

    async def _start(
        self,
        units: Sequence[BroadcastUnit],
        command: BroadcastCommand,
        zone: str | None,
        actor: str,
        remote_addr: str | None,
    ) -> list[CommandRecord]:
        if not self._mqtt.enabled:
            raise BroadcastUnavailable("MQTT is disabled on this hub (mqtt.enabled)")
        now = self._clock()
        body = command.model_dump(mode="json", exclude_none=True)
        records = [
            CommandRecord(
                id=uuid.uuid4().hex,
                unit_id=unit.device_id,
                command=body,
                requested_by=actor,
                requested_at=now,
                target_zone=zone,
                jurisdiction_path=unit.jurisdiction_path,
            )
            for unit in units
        ]
        await create_commands(self._store, records, actor=actor, remote_addr=remote_addr)
        for record in records:
            task = asyncio.create_task(self._send(record, command), name=f"broadcast-{record.id}")
            self._running[record.id] = task
            task.add_done_callback(self._forget)
        return records

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._running.items()):
            if running is task:
                del self._running[key]

    async def _send(self, record: CommandRecord, command: BroadcastCommand) -> None:
        try:
            await self._send_and_record(record, command)
        except Exception:
            # A background task: nobody else would see the error.
            log.exception("broadcast command %s to %s failed", record.id, record.unit_id)

    async def _send_and_record(self, record: CommandRecord, command: BroadcastCommand) -> None:
        try:
            result = await self._mqtt.send_command(record.unit_id, command)
        except (UnknownUnitError, RuntimeError) as exc:
            log.warning("broadcast command %s to %s not sent: %s", record.id, record.unit_id, exc)
            await finish_command(
                self._store,
                record.id,
                outcome=CommandOutcome.FAILED.value,
                attempts=0,
                finished_at=self._clock(),
                reason=f"not sent: {exc}",
            )
            return
        log.info(
            "broadcast command %s to %s: %s after %d attempt(s)",
            record.id,
            record.unit_id,
            result.outcome.value,
            result.attempts,
        )
        await finish_command(
            self._store,
            record.id,
            outcome=result.outcome.value,
            attempts=result.attempts,
            finished_at=result.finished_at,
            correlation_id=result.correlation_id,
            sent_at=result.sent_at,
            reason=result.reason,
        )
