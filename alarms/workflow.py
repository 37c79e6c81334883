"""The alarm lifecycle as a pure state machine.

Valid transitions (anything else raises `InvalidTransition`):

=============  ====================================  ==============================
action         allowed from                          result
=============  ====================================  ==============================
acknowledge    new                                   acknowledged
assign         new, acknowledged, dispatched         same state, assignee/department
dispatch       acknowledged                          dispatched (needs assignee or
                                                     department, given or present)
resolve        acknowledged, dispatched              resolved
close          resolved                              closed
false_alarm    new, acknowledged, dispatched         false_alarm
reopen         resolved, closed, false_alarm         acknowledged
note           any                                   same state
escalate       new, acknowledged, dispatched         same state, level + 1
auto_close     new, acknowledged, dispatched,        closed (maintenance alarms only)
               resolved
repeat         new, acknowledged, dispatched         same state, count + 1
=============  ====================================  ==============================

A reopened alarm goes back to *acknowledged*, not *new*: a person reopened it,
so it has been seen, and the acknowledge deadline must not fire a second time.
Every accepted action returns the next alarm (revision + 1) and exactly one
history entry; nothing here reads the clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alarms.models import (
    ACTIVE_STATES,
    Alarm,
    AlarmAction,
    AlarmCategory,
    AlarmState,
    HistoryEntry,
    Priority,
    require_utc,
)

__all__ = ["TRANSITIONS", "InvalidTransition", "allowed_actions", "apply", "open_alarm"]

_ALL_STATES = frozenset(AlarmState)
_FINISHED_OR_RESOLVED = frozenset({AlarmState.RESOLVED, AlarmState.CLOSED, AlarmState.FALSE_ALARM})


class InvalidTransition(ValueError):
    """An action that the alarm's current state does not allow."""

    def __init__(self, action: AlarmAction, state: AlarmState, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.state = state


@dataclass(frozen=True, slots=True)
class _Request:
    note: str | None
    assignee: str | None
    department: str | None
    priority: Priority | None
    ack_due: datetime | None
    resolve_due: datetime | None
    at: datetime


_Handler = Callable[[Alarm, _Request], tuple[dict[str, Any], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class _Transition:
    allowed: frozenset[AlarmState]
    accepts: frozenset[str]
    handler: _Handler


#: action -> the states it is allowed from; see the module docstring.
TRANSITIONS: dict[AlarmAction, frozenset[AlarmState]] = {}
_HANDLERS: dict[AlarmAction, _Transition] = {}


def _transition(
    action: AlarmAction, allowed: frozenset[AlarmState], accepts: frozenset[str] = frozenset()
) -> Callable[[_Handler], _Handler]:
    def register(handler: _Handler) -> _Handler:
        _HANDLERS[action] = _Transition(allowed, accepts | {"note"}, handler)
        TRANSITIONS[action] = allowed
        return handler

    return register


#: A finished (or resolved) alarm has no running deadline; the first ones stay.
_NO_DEADLINE: dict[str, Any] = {"ack_due": None, "resolve_due": None}


def _assignment(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    changes: dict[str, Any] = {}
    if request.assignee is not None:
        changes["assignee"] = request.assignee
    if request.department is not None:
        changes["department"] = request.department
    return changes, dict(changes)


@_transition(
    AlarmAction.ACKNOWLEDGE, frozenset({AlarmState.NEW}), frozenset({"assignee", "department"})
)
def _acknowledge(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    changes, details = _assignment(alarm, request)
    changes["state"] = AlarmState.ACKNOWLEDGED
    return changes, details


@_transition(AlarmAction.ASSIGN, ACTIVE_STATES, frozenset({"assignee", "department"}))
def _assign(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    if not (request.assignee or request.department):
        raise ValueError("assign needs an assignee or a department")
    return _assignment(alarm, request)


@_transition(
    AlarmAction.DISPATCH,
    frozenset({AlarmState.ACKNOWLEDGED}),
    frozenset({"assignee", "department"}),
)
def _dispatch(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    changes, details = _assignment(alarm, request)
    if not (changes.get("assignee") or changes.get("department")) and not (
        alarm.assignee or alarm.department
    ):
        raise InvalidTransition(
            AlarmAction.DISPATCH,
            alarm.state,
            "cannot dispatch an alarm with no assignee or department; assign it first",
        )
    changes["state"] = AlarmState.DISPATCHED
    return changes, details


@_transition(AlarmAction.RESOLVE, frozenset({AlarmState.ACKNOWLEDGED, AlarmState.DISPATCHED}))
def _resolve(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"state": AlarmState.RESOLVED, **_NO_DEADLINE}, {}


@_transition(AlarmAction.CLOSE, frozenset({AlarmState.RESOLVED}))
def _close(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    return {
        "state": AlarmState.CLOSED,
        "closed_reason": request.note or "closed",
        **_NO_DEADLINE,
    }, {}


@_transition(AlarmAction.FALSE_ALARM, ACTIVE_STATES)
def _false_alarm(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    reason = request.note or "false alarm"
    return {"state": AlarmState.FALSE_ALARM, "closed_reason": reason, **_NO_DEADLINE}, {}


@_transition(AlarmAction.REOPEN, _FINISHED_OR_RESOLVED, frozenset({"resolve_due", "assignee"}))
def _reopen(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    changes: dict[str, Any] = {"state": AlarmState.ACKNOWLEDGED, "closed_reason": None}
    details: dict[str, Any] = {}
    if alarm.closed_reason is not None:
        details["previous_closed_reason"] = alarm.closed_reason
    if request.assignee is not None:
        changes["assignee"] = details["assignee"] = request.assignee
    if request.resolve_due is not None:
        changes["resolve_due"] = request.resolve_due
        details["resolve_due"] = request.resolve_due.isoformat()
    return changes, details


@_transition(AlarmAction.NOTE, _ALL_STATES)
def _note(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    if not (request.note and request.note.strip()):
        raise ValueError("a note needs text")
    return {}, {}


@_transition(AlarmAction.ESCALATE, ACTIVE_STATES, frozenset({"priority", "ack_due", "resolve_due"}))
def _escalate(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    level = alarm.escalation_level + 1
    changes: dict[str, Any] = {"escalation_level": level}
    details: dict[str, Any] = {"escalation_level": level}
    if request.priority is not None and request.priority != alarm.priority:
        if request.priority > alarm.priority:
            raise ValueError(
                f"escalation cannot lower the priority from {alarm.priority} to {request.priority}"
            )
        changes["priority"] = request.priority
        details["priority"] = str(request.priority)
        details["previous_priority"] = str(alarm.priority)
    for name in ("ack_due", "resolve_due"):
        due = getattr(request, name)
        if due is not None:
            changes[name] = due
            details[name] = due.isoformat()
    return changes, details


@_transition(AlarmAction.AUTO_CLOSE, ACTIVE_STATES | {AlarmState.RESOLVED})
def _auto_close(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    if alarm.category is not AlarmCategory.MAINTENANCE:
        raise InvalidTransition(
            AlarmAction.AUTO_CLOSE,
            alarm.state,
            f"cannot auto-close a {alarm.category} alarm; only maintenance alarms close "
            "themselves when the device recovers",
        )
    return {
        "state": AlarmState.CLOSED,
        "closed_reason": request.note or "auto-closed: device recovered",
        **_NO_DEADLINE,
    }, {"auto_closed": True}


@_transition(AlarmAction.REPEAT, ACTIVE_STATES)
def _repeat(alarm: Alarm, request: _Request) -> tuple[dict[str, Any], dict[str, Any]]:
    count = alarm.count + 1
    # Out-of-order repeats must not move last_seen_at backwards.
    last_seen = max(alarm.last_seen_at, request.at)
    return {"count": count, "last_seen_at": last_seen}, {"count": count}


def _hint(action: AlarmAction, state: AlarmState) -> str:
    """Say what the operator should do instead; the message is shown as is."""
    if state is AlarmState.NEW and action in (AlarmAction.DISPATCH, AlarmAction.RESOLVE):
        return "acknowledge it first"
    if action is AlarmAction.CLOSE and state in ACTIVE_STATES:
        return "resolve it first or mark it a false alarm"
    if action is AlarmAction.REOPEN:
        return "it is still open"
    if action is AlarmAction.ACKNOWLEDGE:
        return "only new alarms can be acknowledged"
    if action is AlarmAction.REPEAT:
        return "a repeat of a finished alarm opens a new alarm"
    if action is AlarmAction.AUTO_CLOSE:
        return "it is already finished"
    if action is AlarmAction.RESOLVE and state is AlarmState.RESOLVED:
        return "it is already resolved"
    return "reopen it first"


def _invalid(action: AlarmAction, state: AlarmState) -> InvalidTransition:
    verb = action.value.replace("_", " ")
    if action is AlarmAction.FALSE_ALARM:
        verb = "mark as a false alarm"
    elif action is AlarmAction.AUTO_CLOSE:
        verb = "auto-close"
    return InvalidTransition(
        action,
        state,
        f"cannot {verb} an alarm that is {state.value.replace('_', ' ')}; {_hint(action, state)}",
    )


def allowed_actions(alarm: Alarm) -> frozenset[AlarmAction]:
    """Actions whose state precondition `alarm` meets (what the console may offer)."""
    found = {action for action, rule in _HANDLERS.items() if alarm.state in rule.allowed}
    if alarm.category is not AlarmCategory.MAINTENANCE:
        found.discard(AlarmAction.AUTO_CLOSE)
    return frozenset(found)


#: The optional arguments of `apply`, in its order, for "does not take" errors.
_ARGUMENT_NAMES = ("note", "assignee", "department", "priority", "ack_due", "resolve_due")


def apply(
    alarm: Alarm,
    action: AlarmAction | str,
    actor: str,
    at: datetime,
    *,
    note: str | None = None,
    assignee: str | None = None,
    department: str | None = None,
    priority: Priority | None = None,
    ack_due: datetime | None = None,
    resolve_due: datetime | None = None,
    details: Mapping[str, Any] | None = None,
    revision: int | None = None,
) -> tuple[Alarm, HistoryEntry]:
    """Apply `action` by `actor` at `at`; return the next alarm and its history entry.

    The change makes the alarm's next revision unless `revision` says which (a
    repeat joining a revision already made in the same batch keeps its number).

    Raises `InvalidTransition` when the state forbids the action and
    `ValueError` when an argument is missing or does not belong to the action.
    """
    action = AlarmAction(action)
    require_utc(at, "at")
    rule = _HANDLERS.get(action)
    if rule is None:
        raise ValueError(f"{action} is not applied to an existing alarm; use open_alarm")
    arguments = (note, assignee, department, priority, ack_due, resolve_due)
    if arguments.count(None) != len(arguments):
        given = {
            name
            for name, value in zip(_ARGUMENT_NAMES, arguments, strict=True)
            if value is not None
        }
        unexpected = given - rule.accepts
        if unexpected:
            raise ValueError(f"{action} does not take {', '.join(sorted(unexpected))}")
    if alarm.state not in rule.allowed:
        raise _invalid(action, alarm.state)
    for name, due in (("ack_due", ack_due), ("resolve_due", resolve_due)):
        if due is not None:
            require_utc(due, name)
    request = _Request(note, assignee, department, priority, ack_due, resolve_due, at)
    changes, change_details = rule.handler(alarm, request)
    changes["revision"] = alarm.revision + 1 if revision is None else revision
    updated = alarm.evolve(**changes)
    entry = HistoryEntry(
        alarm_id=alarm.id,
        at=at,
        actor=actor,
        action=action,
        from_state=alarm.state,
        to_state=updated.state,
        note=note,
        details={**change_details, **(details or {})},
        revision=updated.revision,
    )
    return updated, entry


def open_alarm(
    *,
    alarm_id: uuid.UUID,
    type: str,  # same name as the Alarm field it fills
    priority: Priority,
    category: AlarmCategory,
    device_id: str,
    jurisdiction: str | None,
    title: str,
    sop: str,
    dedup_key: str,
    at: datetime,
    ack_due: datetime | None = None,
    resolve_due: datetime | None = None,
    is_drill: bool = False,
    actor: str = "rules",
    details: Mapping[str, Any] | None = None,
) -> tuple[Alarm, HistoryEntry]:
    """Create a new alarm (revision 1, state new) and its first history entry; its
    deadlines are also its first deadlines (`ack_due_first`, `resolve_due_first`)."""
    alarm = Alarm(
        id=alarm_id,
        type=type,
        priority=priority,
        state=AlarmState.NEW,
        category=category,
        device_id=device_id,
        jurisdiction=jurisdiction,
        title=title,
        sop=sop,
        dedup_key=dedup_key,
        opened_at=at,
        last_seen_at=at,
        ack_due=ack_due,
        resolve_due=resolve_due,
        is_drill=is_drill,
        ack_due_first=ack_due,
        resolve_due_first=resolve_due,
    )
    entry = HistoryEntry(
        alarm_id=alarm_id,
        at=at,
        actor=actor,
        action=AlarmAction.OPEN,
        from_state=None,
        to_state=AlarmState.NEW,
        details=dict(details or {}),
        revision=1,
    )
    return alarm, entry
