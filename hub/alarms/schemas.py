"""Request and response bodies of the alarm API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.alarms.storage import AlarmChange, DeliveryRow, MediaRow, SinkState, StoredAlarm

__all__ = [
    "ActionIn",
    "AlarmDetailOut",
    "AlarmOut",
    "AlarmPage",
    "ChangeOut",
    "ChangesPage",
    "DeliveryOut",
    "HistoryOut",
    "MediaOut",
    "SinkStatusOut",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AlarmOut(_Out):
    """One alarm as the console and integrations see it."""

    id: uuid.UUID
    type: str
    priority: int = Field(description="1 (most urgent) .. 4")
    state: str
    category: str
    device_id: str
    jurisdiction: str | None
    jurisdiction_path: str | None
    title: str
    sop: str
    dedup_key: str
    opened_at: datetime
    last_seen_at: datetime
    updated_at: datetime
    count: int
    assignee: str | None
    department: str | None
    ack_due: datetime | None = Field(
        description="Running acknowledge deadline (moved on at each escalation); "
        "empty when the alarm is resolved or finished."
    )
    resolve_due: datetime | None = Field(
        description="Running resolve deadline; empty when the alarm is resolved or finished."
    )
    ack_due_first: datetime | None = Field(
        description="The acknowledge deadline the alarm opened with; escalation never moves "
        "it (overdue counts from here)."
    )
    resolve_due_first: datetime | None = Field(
        description="The resolve deadline the alarm opened with; never moved."
    )
    escalation_level: int = Field(description="How many times the SLA loop escalated it.")
    revision: int
    is_drill: bool
    closed_reason: str | None
    rule: str | None
    allowed_actions: list[str] = Field(description="Operator actions the state allows now.")
    title_i18n: dict[str, str] = Field(
        default_factory=dict,
        description="The title in each language its rule has (zh-CN, en); `title` otherwise.",
    )
    sop_i18n: dict[str, str] = Field(
        default_factory=dict,
        description="The SOP in each language its rule has (zh-CN, en); `sop` otherwise.",
    )

    @classmethod
    def of(
        cls,
        stored: StoredAlarm,
        allowed: list[str],
        texts: Mapping[str, Mapping[str, str]] | None = None,
    ) -> AlarmOut:
        """Build from a stored alarm and the texts it was opened with."""
        a = stored.alarm
        texts = texts or {}
        return cls(
            id=a.id,
            type=a.type,
            priority=a.priority.level,
            state=a.state.value,
            category=a.category.value,
            device_id=a.device_id,
            jurisdiction=a.jurisdiction,
            jurisdiction_path=stored.jurisdiction_path,
            title=a.title,
            sop=a.sop,
            dedup_key=a.dedup_key,
            opened_at=a.opened_at,
            last_seen_at=a.last_seen_at,
            updated_at=stored.updated_at,
            count=a.count,
            assignee=a.assignee,
            department=a.department,
            ack_due=a.ack_due,
            resolve_due=a.resolve_due,
            ack_due_first=a.ack_due_first,
            resolve_due_first=a.resolve_due_first,
            escalation_level=a.escalation_level,
            revision=a.revision,
            is_drill=a.is_drill,
            closed_reason=a.closed_reason,
            rule=stored.rule,
            allowed_actions=allowed,
            title_i18n={lang: t["title"] for lang, t in texts.items() if t.get("title")},
            sop_i18n={lang: t["sop"] for lang, t in texts.items() if "sop" in t},
        )


class AlarmPage(_Out):
    """A page of alarms, newest first."""

    items: list[AlarmOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class HistoryOut(_Out):
    """One history entry."""

    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    note: str | None
    details: dict[str, Any]
    revision: int


class MediaOut(_Out):
    """A snapshot bound to the alarm; download it from `url`."""

    id: uuid.UUID
    device_id: str
    content_type: str
    size: int
    taken_at: datetime
    source: str
    url: str

    @classmethod
    def of(cls, row: MediaRow) -> MediaOut:
        """Build from a stored media row."""
        return cls(
            id=row.id,
            device_id=row.device_id,
            content_type=row.content_type,
            size=row.size,
            taken_at=row.taken_at,
            source=row.source,
            url=f"/api/alarms/{row.alarm_id}/media/{row.id}",
        )


class DeliveryOut(_Out):
    """The delivery receipt of one alarm revision to one sink."""

    sink: str
    revision: int
    idempotency_key: str
    state: str = Field(description="pending, delivering, delivered or dead")
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    receipt: str | None

    @classmethod
    def of(cls, row: DeliveryRow) -> DeliveryOut:
        """Build from a stored outbox row."""
        return cls(
            sink=row.sink,
            revision=row.revision,
            idempotency_key=row.idempotency_key,
            state=row.state,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            last_error=row.last_error,
            delivered_at=row.delivered_at,
            receipt=row.receipt,
        )


class AlarmDetailOut(_Out):
    """An alarm with its history, media and deliveries."""

    alarm: AlarmOut
    history: list[HistoryOut]
    media: list[MediaOut]
    deliveries: list[DeliveryOut]


class ActionIn(BaseModel):
    """What an operator adds to an action."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=4000, description="Free text for history.")
    assignee: str | None = Field(default=None, max_length=128, description="assign/dispatch.")
    department: str | None = Field(default=None, max_length=128, description="assign/dispatch.")


class ChangeOut(_Out):
    """One committed alarm change (pull API and stream)."""

    seq: int = Field(description="Cursor: pass the last one seen as `since`.")
    alarm_id: uuid.UUID
    revision: int
    action: str
    at: datetime
    is_drill: bool = Field(description="The alarm is a drill (console badge, CAP Exercise).")
    payload: dict[str, Any] = Field(description="The same body the sinks receive.")

    @classmethod
    def of(cls, change: AlarmChange) -> ChangeOut:
        """Build from a stored change."""
        alarm = change.payload.get("alarm")
        return cls(
            seq=change.seq,
            alarm_id=change.alarm_id,
            revision=change.revision,
            action=change.action,
            at=change.at,
            is_drill=bool(alarm.get("is_drill")) if isinstance(alarm, Mapping) else False,
            payload=dict(change.payload),
        )


class ChangesPage(_Out):
    """Changes after `since`, oldest first."""

    items: list[ChangeOut]
    next_since: int = Field(description="Pass as `since` for the next call.")


class SinkStatusOut(_Out):
    """A delivery sink's state and backlog."""

    name: str
    type: str
    disabled: bool
    reason: str | None
    updated_at: datetime | None
    counts: dict[str, int]

    @classmethod
    def of(cls, state: SinkState, sink_type: str) -> SinkStatusOut:
        """Build from stored status."""
        return cls(
            name=state.name,
            type=sink_type,
            disabled=state.disabled,
            reason=state.reason,
            updated_at=state.updated_at,
            counts=dict(state.counts),
        )
