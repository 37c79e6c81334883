"""Broadcast API bodies: commands in, command records and units out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from adapters.mqtt import BroadcastCommand
from hub.broadcast.service import UnitView
from hub.broadcast.storage import CommandRecord

__all__ = [
    "BroadcastCommandIn",
    "BroadcastUnitOut",
    "CommandOut",
    "ZoneCommandsOut",
]


class BroadcastCommandIn(BroadcastCommand):
    """A command to a broadcast unit: play a file/URL, speak text, stop, or set the volume."""


class CommandOut(BaseModel):
    """A broadcast command and, once it ended, how."""

    id: str = Field(description="Command id; GET /api/broadcast/commands/{id}.")
    unit_id: str
    zone: str | None = Field(None, description="The zone the request addressed, if any.")
    command: dict[str, Any]
    requested_by: str
    requested_at: datetime
    outcome: Literal["pending", "acked", "failed", "timed_out"]
    attempts: int
    correlation_id: str | None = Field(None, description="Sent in the MQTT command and its ack.")
    sent_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None

    @classmethod
    def of(cls, record: CommandRecord) -> CommandOut:
        """From a stored record."""
        return cls(
            id=record.id,
            unit_id=record.unit_id,
            zone=record.target_zone,
            command=dict(record.command),
            requested_by=record.requested_by,
            requested_at=record.requested_at,
            outcome=record.outcome,  # checked by pydantic
            attempts=record.attempts,
            correlation_id=record.correlation_id,
            sent_at=record.sent_at,
            finished_at=record.finished_at,
            reason=record.reason,
        )


class ZoneCommandsOut(BaseModel):
    """The commands a zone request started, one per unit in the zone."""

    zone: str
    commands: list[CommandOut]


class BroadcastUnitOut(BaseModel):
    """A broadcast unit and what it is doing."""

    id: str
    name: str
    mqtt_device_id: str | None
    jurisdiction_path: str | None
    tags: list[str]
    status: Literal["online", "busy", "fault", "offline", "unknown"]
    health: str = Field(description="Stored health state (unknown/online/degraded/offline).")
    last_seen_at: datetime | None

    @classmethod
    def of(cls, view: UnitView) -> BroadcastUnitOut:
        """From a unit view."""
        unit = view.unit
        return cls(
            id=unit.device_id,
            name=unit.name,
            mqtt_device_id=unit.mqtt_device_id,
            jurisdiction_path=unit.jurisdiction_path,
            tags=list(unit.tags),
            status=view.status,  # checked by pydantic
            health=unit.health,
            last_seen_at=unit.last_seen_at,
        )
