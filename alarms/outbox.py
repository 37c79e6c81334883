"""Outbox records: one delivery of one alarm revision to one sink.

A record is written in the same transaction as the alarm change it announces;
the dispatcher then moves it pending -> delivering -> delivered, or back to
pending with a backoff after a failure, or to dead after the attempt limit.
Everything here is pure: times and randomness are passed in.
"""

from __future__ import annotations

import dataclasses
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from alarms.models import Alarm, HistoryEntry, Location, require_utc

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "OUTBOX_NAMESPACE",
    "OutboxRecord",
    "OutboxState",
    "after_failure",
    "after_success",
    "alarm_payload",
    "backoff",
    "idempotency_key",
    "mark_delivering",
    "new_outbox_record",
]

#: Namespace for record ids derived from the idempotency key.
OUTBOX_NAMESPACE = uuid.UUID("0b7e6c52-93a1-5f0d-8e44-5d2c7a1f9e60")
#: First retry waits at most this long (full jitter: uniform 0..base).
BACKOFF_BASE = timedelta(seconds=4)
#: No retry waits longer than this.
BACKOFF_CAP = timedelta(minutes=10)
_SINK_PATTERN = re.compile(r"[a-z0-9_\-]{1,64}")
_MAX_ERROR = 1000


class OutboxState(StrEnum):
    """Where a delivery is."""

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    DEAD = "dead"


def idempotency_key(alarm_id: uuid.UUID, revision: int, sink: str) -> str:
    """The key a receiver uses to recognise a repeated delivery: `alarm:revision:sink`."""
    return f"{alarm_id}:{revision}:{sink}"


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One delivery of alarm `alarm_id` at `revision` to the sink named `sink`."""

    id: uuid.UUID
    alarm_id: uuid.UUID
    revision: int
    sink: str
    payload: Mapping[str, Any]
    next_attempt_at: datetime
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    last_error: str | None = None
    delivered_at: datetime | None = None
    idempotency_key: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, uuid.UUID) or not isinstance(self.alarm_id, uuid.UUID):
            raise ValueError("id and alarm_id must be UUIDs")
        if isinstance(self.revision, bool) or self.revision < 1:
            raise ValueError(f"revision must be >= 1, got {self.revision}")
        if not _SINK_PATTERN.fullmatch(self.sink):
            raise ValueError(f"invalid sink name {self.sink!r}: expected [a-z0-9_-]{{1,64}}")
        object.__setattr__(self, "state", OutboxState(self.state))
        if isinstance(self.attempts, bool) or self.attempts < 0:
            raise ValueError(f"attempts must be >= 0, got {self.attempts}")
        require_utc(self.next_attempt_at, "next_attempt_at")
        if self.delivered_at is not None:
            require_utc(self.delivered_at, "delivered_at")
        if (self.state is OutboxState.DELIVERED) != (self.delivered_at is not None):
            raise ValueError("delivered_at is set exactly when the state is delivered")
        if self.last_error is not None and len(self.last_error) > _MAX_ERROR:
            raise ValueError(f"last_error is longer than {_MAX_ERROR} characters")
        object.__setattr__(self, "payload", MappingProxyType(dict(self.payload)))
        object.__setattr__(
            self, "idempotency_key", idempotency_key(self.alarm_id, self.revision, self.sink)
        )


def new_outbox_record(
    alarm: Alarm, sink: str, payload: Mapping[str, Any], now: datetime
) -> OutboxRecord:
    """A pending record for `alarm`'s current revision; its id derives from the key."""
    key = idempotency_key(alarm.id, alarm.revision, sink)
    return OutboxRecord(
        id=uuid.uuid5(OUTBOX_NAMESPACE, key),
        alarm_id=alarm.id,
        revision=alarm.revision,
        sink=sink,
        payload=payload,
        next_attempt_at=now,
    )


def backoff(
    attempt: int,
    rng: random.Random,
    *,
    base: timedelta = BACKOFF_BASE,
    cap: timedelta = BACKOFF_CAP,
) -> timedelta:
    """Wait before retry number `attempt` (1-based): exponential with full jitter.

    Uniform in [0, min(cap, base * 2**(attempt-1))]; full jitter spreads the
    retries of many rows that failed together so a recovering receiver is not
    hit by all of them at once.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Bound the exponent so huge attempt numbers cannot overflow the multiplication.
    ceiling = min(cap, base * (2 ** min(attempt - 1, 32)))
    return timedelta(seconds=rng.uniform(0.0, ceiling.total_seconds()))


def mark_delivering(record: OutboxRecord) -> OutboxRecord:
    """The record claimed by a dispatcher for one attempt."""
    if record.state is not OutboxState.PENDING:
        raise ValueError(f"only pending records can be claimed, this one is {record.state}")
    return dataclasses.replace(record, state=OutboxState.DELIVERING)


def after_success(record: OutboxRecord, now: datetime) -> OutboxRecord:
    """The record after the sink confirmed delivery."""
    require_utc(now, "now")
    if record.state is OutboxState.DEAD:
        raise ValueError("a dead record is not delivered again without being requeued")
    return dataclasses.replace(
        record,
        state=OutboxState.DELIVERED,
        attempts=record.attempts + 1,
        delivered_at=now,
        last_error=None,
    )


def after_failure(
    record: OutboxRecord,
    now: datetime,
    error: str,
    max_attempts: int,
    rng: random.Random,
    *,
    permanent: bool = False,
    base: timedelta = BACKOFF_BASE,
    cap: timedelta = BACKOFF_CAP,
) -> OutboxRecord:
    """The record after a failed attempt: pending with a backoff, or dead.

    It goes dead once `max_attempts` attempts have failed, or at once when
    the failure is `permanent` (e.g. the receiver answered 410 Gone).
    `base` and `cap` bound the backoff as in `backoff`.
    """
    require_utc(now, "now")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if record.state in (OutboxState.DELIVERED, OutboxState.DEAD):
        raise ValueError(f"a {record.state} record cannot fail again")
    attempts = record.attempts + 1
    message = error[:_MAX_ERROR]
    if permanent or attempts >= max_attempts:
        return dataclasses.replace(
            record, state=OutboxState.DEAD, attempts=attempts, last_error=message
        )
    return dataclasses.replace(
        record,
        state=OutboxState.PENDING,
        attempts=attempts,
        last_error=message,
        next_attempt_at=now + backoff(attempts, rng, base=base, cap=cap),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def alarm_payload(
    alarm: Alarm,
    history_entry: HistoryEntry,
    location: Location | None = None,
    *,
    address: Mapping[str, Any] | None = None,
    evidence: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON body every sink sends for one alarm revision.

    `event` is `alarm.<action>` (alarm.open, alarm.acknowledge, ...), so a
    receiver can route on it without diffing revisions. `address` names where
    the device is (jurisdiction names from the district down, the device's
    street address); `evidence` lists the files that became available with
    this revision (clips: url, type, size, sha256).
    """
    if history_entry.alarm_id != alarm.id:
        raise ValueError("the history entry belongs to another alarm")
    if history_entry.revision != alarm.revision:
        raise ValueError(
            f"the history entry is revision {history_entry.revision}, "
            f"the alarm is at revision {alarm.revision}"
        )
    return {
        "event": f"alarm.{history_entry.action.value}",
        "alarm_id": str(alarm.id),
        "revision": alarm.revision,
        "jurisdiction": alarm.jurisdiction,
        "alarm": {
            "id": str(alarm.id),
            "type": alarm.type,
            "priority": alarm.priority.level,
            "state": alarm.state.value,
            "category": alarm.category.value,
            "device_id": alarm.device_id,
            "jurisdiction": alarm.jurisdiction,
            "title": alarm.title,
            "sop": alarm.sop,
            "dedup_key": alarm.dedup_key,
            "opened_at": _iso(alarm.opened_at),
            "last_seen_at": _iso(alarm.last_seen_at),
            "count": alarm.count,
            "assignee": alarm.assignee,
            "department": alarm.department,
            "ack_due": _iso(alarm.ack_due),
            "resolve_due": _iso(alarm.resolve_due),
            "ack_due_first": _iso(alarm.ack_due_first),
            "resolve_due_first": _iso(alarm.resolve_due_first),
            "escalation_level": alarm.escalation_level,
            "revision": alarm.revision,
            "is_drill": alarm.is_drill,
            "closed_reason": alarm.closed_reason,
        },
        "change": {
            "at": _iso(history_entry.at),
            "actor": history_entry.actor,
            "action": history_entry.action.value,
            "from_state": history_entry.from_state.value if history_entry.from_state else None,
            "to_state": history_entry.to_state.value,
            "note": history_entry.note,
            "details": dict(history_entry.details),
        },
        "location": (
            None
            if location is None
            else {
                "latitude": location.latitude,
                "longitude": location.longitude,
                "radius_m": location.radius_m,
                "description": location.description,
            }
        ),
        "address": None if address is None else dict(address),
        "evidence": [dict(item) for item in evidence],
    }
