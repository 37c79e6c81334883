"""SLA deadlines and escalation, as pure functions over stored values.

Deadlines are computed once, stored on the alarm (`ack_due`, `resolve_due`),
and compared with a time the caller passes in. A restarted hub therefore
escalates on time: nothing waits in an in-memory timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alarms.models import Alarm, AlarmState, HistoryEntry, Priority, require_utc
from alarms.workflow import apply

__all__ = [
    "DEFAULT_SLA_POLICY",
    "Breach",
    "Deadlines",
    "Escalation",
    "EscalationPolicy",
    "SlaPolicy",
    "SlaTarget",
    "check_escalation",
    "deadlines_for",
    "escalate",
]

_PositiveDuration = Annotated[timedelta, Field(gt=timedelta(0))]


class SlaTarget(BaseModel):
    """How long one priority may wait to be acknowledged and to be resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ack: _PositiveDuration = Field(
        description="Time from opening until an operator must acknowledge "
        "(seconds or ISO 8601 duration)."
    )
    resolve: _PositiveDuration = Field(
        description="Time from opening until the alarm must be resolved "
        "(seconds or ISO 8601 duration)."
    )


class EscalationPolicy(BaseModel):
    """What happens when a deadline passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    renotify_every: _PositiveDuration | None = Field(
        default=None,
        description="After a breach, escalate again if still unhandled after this long. "
        "Empty means the priority's acknowledge time (P1: every minute).",
    )
    raise_priority: bool = Field(
        default=False, description="Raise the priority one step (P3 -> P2) at each escalation."
    )
    supervisor_from_level: int = Field(
        default=1,
        ge=1,
        description="From this escalation level on, the supervisor sink is notified too.",
    )
    max_level: int = Field(default=3, ge=1, le=10, description="No escalation beyond this level.")


def _default_targets() -> dict[int, SlaTarget]:
    return {
        1: SlaTarget(ack=timedelta(seconds=60), resolve=timedelta(minutes=30)),
        2: SlaTarget(ack=timedelta(minutes=5), resolve=timedelta(hours=4)),
        3: SlaTarget(ack=timedelta(minutes=30), resolve=timedelta(hours=24)),
        4: SlaTarget(ack=timedelta(hours=4), resolve=timedelta(hours=72)),
    }


class SlaPolicy(BaseModel):
    """Per-priority deadlines and the escalation policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[int, SlaTarget] = Field(
        default_factory=_default_targets,
        description="Deadlines per priority level 1..4; all four levels must be given.",
    )
    escalation: EscalationPolicy = Field(
        default_factory=EscalationPolicy, description="What a missed deadline triggers."
    )

    @field_validator("targets")
    @classmethod
    def _all_levels(cls, value: dict[int, SlaTarget]) -> dict[int, SlaTarget]:
        if set(value) != {1, 2, 3, 4}:
            raise ValueError(f"targets must name priorities 1, 2, 3 and 4, got {sorted(value)}")
        return value

    def target(self, priority: Priority) -> SlaTarget:
        """The deadlines for `priority`."""
        return self.targets[priority.level]


#: P1 ack 60 s / resolve 30 min, P2 5 min / 4 h, P3 30 min / 24 h, P4 4 h / 72 h.
DEFAULT_SLA_POLICY = SlaPolicy()


@dataclass(frozen=True, slots=True)
class Deadlines:
    """When an alarm must be acknowledged and resolved."""

    ack_due: datetime
    resolve_due: datetime


def deadlines_for(
    priority: Priority, opened_at: datetime, policy: SlaPolicy = DEFAULT_SLA_POLICY
) -> Deadlines:
    """Deadlines for an alarm of `priority` opened at `opened_at`."""
    require_utc(opened_at, "opened_at")
    target = policy.target(priority)
    return Deadlines(ack_due=opened_at + target.ack, resolve_due=opened_at + target.resolve)


class Breach(StrEnum):
    """Which deadline was missed."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Escalation:
    """A missed deadline and what to do about it.

    The breached deadlines move to `next_ack_due`/`next_resolve_due` so the
    same breach escalates again only after the re-notify interval.
    """

    at: datetime
    breaches: tuple[Breach, ...]
    level: int
    priority: Priority
    previous_priority: Priority
    supervisor: bool
    overdue_by: timedelta
    next_ack_due: datetime | None
    next_resolve_due: datetime | None
    renotify: bool = True


def check_escalation(
    alarm: Alarm, now: datetime, policy: SlaPolicy = DEFAULT_SLA_POLICY
) -> Escalation | None:
    """Return the escalation due for `alarm` at `now`, or None when none is due."""
    require_utc(now, "now")
    if not alarm.is_active or alarm.escalation_level >= policy.escalation.max_level:
        return None
    breaches: list[Breach] = []
    overdue = timedelta(0)
    # Only a new alarm can miss the acknowledge deadline; after that only resolve counts.
    if alarm.state is AlarmState.NEW and alarm.ack_due is not None and now >= alarm.ack_due:
        breaches.append(Breach.ACKNOWLEDGE)
        overdue = max(overdue, now - alarm.ack_due)
    if alarm.resolve_due is not None and now >= alarm.resolve_due:
        breaches.append(Breach.RESOLVE)
        overdue = max(overdue, now - alarm.resolve_due)
    if not breaches:
        return None
    interval = policy.escalation.renotify_every or policy.target(alarm.priority).ack
    level = alarm.escalation_level + 1
    priority = alarm.priority.raised() if policy.escalation.raise_priority else alarm.priority
    return Escalation(
        at=now,
        breaches=tuple(breaches),
        level=level,
        priority=priority,
        previous_priority=alarm.priority,
        supervisor=level >= policy.escalation.supervisor_from_level,
        overdue_by=overdue,
        next_ack_due=now + interval if Breach.ACKNOWLEDGE in breaches else None,
        next_resolve_due=now + interval if Breach.RESOLVE in breaches else None,
    )


def escalate(
    alarm: Alarm, escalation: Escalation, *, actor: str = "sla"
) -> tuple[Alarm, HistoryEntry]:
    """Apply `escalation` to `alarm`: level + 1, moved deadlines, maybe a raised priority."""
    return apply(
        alarm,
        "escalate",
        actor,
        escalation.at,
        priority=escalation.priority if escalation.priority != alarm.priority else None,
        ack_due=escalation.next_ack_due,
        resolve_due=escalation.next_resolve_due,
        details={
            "breaches": [breach.value for breach in escalation.breaches],
            "supervisor": escalation.supervisor,
            "overdue_s": int(escalation.overdue_by.total_seconds()),
        },
    )
