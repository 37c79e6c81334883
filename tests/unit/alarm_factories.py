"""Small builders of alarm values shared by the alarm unit tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from alarms import Alarm, AlarmCategory, HistoryEntry, Priority, open_alarm

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
ALARM_ID = uuid.UUID("11111111-2222-3333-4444-555555555555")


def new_alarm(
    *,
    priority: int = 2,
    category: AlarmCategory = AlarmCategory.SECURITY,
    type: str = "intrusion",
    at: datetime = T0,
    ack_after: timedelta | None = timedelta(minutes=5),
    resolve_after: timedelta | None = timedelta(hours=4),
    **extra: Any,
) -> tuple[Alarm, HistoryEntry]:
    """A fresh alarm in state new, with deadlines relative to `at`."""
    return open_alarm(
        alarm_id=extra.pop("alarm_id", ALARM_ID),
        type=type,
        priority=Priority(priority),
        category=category,
        device_id=extra.pop("device_id", "cam-001"),
        jurisdiction=extra.pop("jurisdiction", "310101001"),
        title=extra.pop("title", "Intrusion detected: gate camera"),
        sop=extra.pop("sop", "Look at the camera."),
        dedup_key=extra.pop("dedup_key", f"{type}:cam-001"),
        at=at,
        ack_due=None if ack_after is None else at + ack_after,
        resolve_due=None if resolve_after is None else at + resolve_after,
        **extra,
    )
