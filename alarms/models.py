"""Alarm value types: priority, state, category, the alarm itself and its history.

Every type here is frozen and checks its values when built, so the rest of the
domain never re-validates what it receives.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import uuid
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar

from camera_registry.events import validate_device_id

__all__ = [
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "Alarm",
    "AlarmAction",
    "AlarmCategory",
    "AlarmState",
    "HistoryEntry",
    "Location",
    "Priority",
    "require_utc",
]

_TYPE_PATTERN = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")
_MAX_TEXT = 4000
_MAX_KEY = 200


def require_utc(value: datetime, name: str) -> datetime:
    """Return `value` if it is timezone-aware UTC, else raise ValueError naming `name`."""
    if value.__class__ is datetime and value.tzinfo is UTC:
        return value
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware UTC datetime")
    if value.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be in UTC, got offset {value.utcoffset()}")
    return value


@dataclass(frozen=True, slots=True, order=True)
class Priority:
    """Alarm priority 1..4, 1 the most urgent (GB/T 28181 alarm priority levels).

    Ordering follows the level number, so `sorted()` puts P1 first and
    `Priority(1) < Priority(2)` reads "P1 comes before P2".
    """

    level: int

    HIGHEST: ClassVar[int] = 1
    LOWEST: ClassVar[int] = 4

    def __post_init__(self) -> None:
        # bool is an int subclass; True as a priority is a config mistake, not P1.
        if isinstance(self.level, bool) or not isinstance(self.level, int):
            raise ValueError(f"priority must be an integer 1..4, got {self.level!r}")
        if not self.HIGHEST <= self.level <= self.LOWEST:
            raise ValueError(f"priority must be 1..4 (1 highest), got {self.level}")

    @classmethod
    def parse(cls, value: int | str | Priority) -> Priority:
        """Build a priority from 1..4, "1".."4", "P1".."P4" or a Priority."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            text = value.strip().upper().removeprefix("P")
            if not text.isdigit():
                raise ValueError(f"priority must be P1..P4 or 1..4, got {value!r}")
            return cls(int(text))
        return cls(value)

    def raised(self) -> Priority:
        """One step more urgent (P1 stays P1)."""
        return Priority(max(self.HIGHEST, self.level - 1))

    @property
    def is_highest(self) -> bool:
        """True for P1, the priority that is never delayed or grouped."""
        return self.level == self.HIGHEST

    def __str__(self) -> str:
        return f"P{self.level}"


class AlarmState(StrEnum):
    """Where an alarm is in its lifecycle."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CLOSED = "closed"
    FALSE_ALARM = "false_alarm"


#: States in which the condition is still being handled: repeats, SLA and
#: escalation apply only here.
ACTIVE_STATES: frozenset[AlarmState] = frozenset(
    {AlarmState.NEW, AlarmState.ACKNOWLEDGED, AlarmState.DISPATCHED}
)
#: States that carry a `closed_reason`.
FINISHED_STATES: frozenset[AlarmState] = frozenset({AlarmState.CLOSED, AlarmState.FALSE_ALARM})


class AlarmCategory(StrEnum):
    """What kind of response an alarm calls for."""

    SECURITY = "security"
    EMERGENCY = "emergency"
    MAINTENANCE = "maintenance"


class AlarmAction(StrEnum):
    """What happened to an alarm; each history entry names one."""

    OPEN = "open"
    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    DISPATCH = "dispatch"
    RESOLVE = "resolve"
    CLOSE = "close"
    FALSE_ALARM = "false_alarm"
    REOPEN = "reopen"
    NOTE = "note"
    ESCALATE = "escalate"
    AUTO_CLOSE = "auto_close"
    REPEAT = "repeat"


def _check_text(value: str | None, name: str, *, required: bool, limit: int = _MAX_TEXT) -> None:
    if value is None:
        if required:
            raise ValueError(f"{name} is required")
        return
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if required and not value.strip():
        raise ValueError(f"{name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")


@dataclass(frozen=True, slots=True)
class Location:
    """Where an alarm happened: WGS 84 point, an uncertainty radius, and a description."""

    latitude: float
    longitude: float
    radius_m: float = 50.0
    description: str | None = None

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"latitude must be -90..90, got {self.latitude}")
        if not -180.0 <= self.longitude <= 180.0:
            raise ValueError(f"longitude must be -180..180, got {self.longitude}")
        if not 0.0 <= self.radius_m <= 1_000_000.0:
            raise ValueError(f"radius_m must be 0..1000000, got {self.radius_m}")
        _check_text(self.description, "description", required=False, limit=500)


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm: a condition on a device that people must handle.

    `revision` starts at 1 and grows by one with every change; together with
    the id it names exactly one version of the alarm (outbox idempotency).
    `ack_due`/`resolve_due` are the running SLA deadlines; escalation compares
    them with the current time (so they survive a restart) and moves them on.
    `ack_due_first`/`resolve_due_first` are the deadlines the alarm opened with,
    never moved: how long an ignored alarm is overdue counts from them. A finished
    alarm has no running deadline.
    """

    id: uuid.UUID
    type: str
    priority: Priority
    state: AlarmState
    category: AlarmCategory
    device_id: str
    jurisdiction: str | None
    title: str
    sop: str
    dedup_key: str
    opened_at: datetime
    last_seen_at: datetime
    count: int = 1
    assignee: str | None = None
    department: str | None = None
    ack_due: datetime | None = None
    resolve_due: datetime | None = None
    escalation_level: int = 0
    revision: int = 1
    is_drill: bool = False
    closed_reason: str | None = None
    ack_due_first: datetime | None = None
    resolve_due_first: datetime | None = None

    def __post_init__(self) -> None:
        self._check(None)

    def evolve(self, **changes: Any) -> Alarm:
        """This alarm with `changes`, as `dataclasses.replace` would make it.

        Only the changed fields and the rules between fields are checked again:
        the rest were checked when this alarm was made. A repeated press in a
        burst changes three fields of twenty-one, and checking all of them again
        was a third of its cost.
        """
        unknown = changes.keys() - _ALARM_FIELDS
        if unknown:
            raise TypeError(f"Alarm has no field {', '.join(sorted(unknown))}")
        values = _ALARM_VALUES(self)
        evolved = object.__new__(Alarm)
        for name, setter, value in zip(_ALARM_FIELDS_IN_ORDER, _ALARM_SETTERS, values, strict=True):
            setter(evolved, changes.get(name, value))
        evolved._check(changes.keys())
        return evolved

    def _check(self, changed: AbstractSet[str] | None) -> None:
        """Check the fields named in `changed` (all when None), then the rules between
        fields; normalise enum fields."""
        for name in _ALARM_FIELDS_IN_ORDER if changed is None else changed:
            check = _FIELD_CHECKS.get(name)
            if check is not None:
                check(self)
        if self.last_seen_at < self.opened_at:
            raise ValueError("last_seen_at must not be before opened_at")
        if self.state in FINISHED_STATES and not self.closed_reason:
            raise ValueError(f"an alarm in state {self.state} needs a closed_reason")
        if self.state not in FINISHED_STATES and self.closed_reason is not None:
            raise ValueError(f"an alarm in state {self.state} cannot have a closed_reason")
        if self.state is AlarmState.DISPATCHED and not (self.assignee or self.department):
            raise ValueError("a dispatched alarm needs an assignee or a department")

    @property
    def is_active(self) -> bool:
        """True while the condition is being handled (new, acknowledged, dispatched)."""
        return self.state in ACTIVE_STATES


_ALARM_FIELDS_IN_ORDER = tuple(f.name for f in dataclasses.fields(Alarm))
_ALARM_FIELDS = frozenset(_ALARM_FIELDS_IN_ORDER)
#: All field values of an alarm at once, in field order.
_ALARM_VALUES = operator.attrgetter(*_ALARM_FIELDS_IN_ORDER)
#: Each field's slot writer (a frozen dataclass refuses plain assignment).
_ALARM_SETTERS = tuple(getattr(Alarm, name).__set__ for name in _ALARM_FIELDS_IN_ORDER)
#: Text fields of an alarm: (name, required, longest).
_TEXT_FIELDS: tuple[tuple[str, bool, int], ...] = (
    ("jurisdiction", False, 64),
    ("title", True, 500),
    ("sop", False, _MAX_TEXT),
    ("dedup_key", True, _MAX_KEY),
    ("assignee", False, 128),
    ("department", False, 128),
    ("closed_reason", False, _MAX_TEXT),
)


def _check_type(alarm: Alarm) -> None:
    if not _TYPE_PATTERN.fullmatch(alarm.type) or len(alarm.type) > 64:
        raise ValueError(f"invalid alarm type {alarm.type!r}: expected dotted lower-case")


def _check_id(alarm: Alarm) -> None:
    if not isinstance(alarm.id, uuid.UUID):
        raise ValueError("alarm id must be a UUID")


def _check_device(alarm: Alarm) -> None:
    validate_device_id(alarm.device_id)


def _check_priority(alarm: Alarm) -> None:
    if not isinstance(alarm.priority, Priority):
        raise ValueError("priority must be a Priority")


def _text_check(name: str, required: bool, limit: int) -> Callable[[Alarm], None]:
    def check(alarm: Alarm) -> None:
        _check_text(getattr(alarm, name), name, required=required, limit=limit)

    return check


def _time_check(name: str, *, optional: bool) -> Callable[[Alarm], None]:
    def check(alarm: Alarm) -> None:
        value = getattr(alarm, name)
        if value is not None or not optional:
            require_utc(value, name)

    return check


def _count_check(name: str, lowest: int) -> Callable[[Alarm], None]:
    def check(alarm: Alarm) -> None:
        value = getattr(alarm, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {value!r}")

    return check


#: What each field must be (and the enum fields' normalisation), by field name.
_FIELD_CHECKS: dict[str, Callable[[Alarm], None]] = {
    "id": _check_id,
    "type": _check_type,
    "priority": _check_priority,
    "state": lambda a: object.__setattr__(a, "state", AlarmState(a.state)),
    "category": lambda a: object.__setattr__(a, "category", AlarmCategory(a.category)),
    "device_id": _check_device,
    **{name: _text_check(name, required, limit) for name, required, limit in _TEXT_FIELDS},
    "opened_at": _time_check("opened_at", optional=False),
    "last_seen_at": _time_check("last_seen_at", optional=False),
    "ack_due": _time_check("ack_due", optional=True),
    "resolve_due": _time_check("resolve_due", optional=True),
    "ack_due_first": _time_check("ack_due_first", optional=True),
    "resolve_due_first": _time_check("resolve_due_first", optional=True),
    "count": _count_check("count", 1),
    "revision": _count_check("revision", 1),
    "escalation_level": _count_check("escalation_level", 0),
}


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of an alarm's append-only history: who did what, when.

    `revision` is the alarm revision this entry produced, so the history of an
    alarm is numbered 1, 2, 3, ... without gaps.
    """

    alarm_id: uuid.UUID
    at: datetime
    actor: str
    action: AlarmAction
    from_state: AlarmState | None
    to_state: AlarmState
    note: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    revision: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.alarm_id, uuid.UUID):
            raise ValueError("alarm_id must be a UUID")
        require_utc(self.at, "at")
        _check_text(self.actor, "actor", required=True, limit=128)
        # Enum members as given are kept; anything else is converted (or refused).
        if self.action.__class__ is not AlarmAction:
            object.__setattr__(self, "action", AlarmAction(self.action))
        if self.from_state is not None:
            if self.from_state.__class__ is not AlarmState:
                object.__setattr__(self, "from_state", AlarmState(self.from_state))
        elif self.action is not AlarmAction.OPEN:
            raise ValueError("only an 'open' entry may have no from_state")
        if self.to_state.__class__ is not AlarmState:
            object.__setattr__(self, "to_state", AlarmState(self.to_state))
        _check_text(self.note, "note", required=False)
        if isinstance(self.revision, bool) or self.revision < 1:
            raise ValueError(f"revision must be >= 1, got {self.revision}")
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
