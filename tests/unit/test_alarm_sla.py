"""SLA deadlines and escalation over stored values (what survives a restart)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from alarms import (
    DEFAULT_SLA_POLICY,
    Alarm,
    AlarmAction,
    Breach,
    EscalationPolicy,
    Priority,
    SlaPolicy,
    apply,
    check_escalation,
    deadlines_for,
    escalate,
)
from tests.unit.alarm_factories import T0, new_alarm


@pytest.mark.parametrize(
    ("level", "ack", "resolve"),
    [
        (1, timedelta(seconds=60), timedelta(minutes=30)),
        (2, timedelta(minutes=5), timedelta(hours=4)),
        (3, timedelta(minutes=30), timedelta(hours=24)),
        (4, timedelta(hours=4), timedelta(hours=72)),
    ],
)
def test_default_deadlines_per_priority(level: int, ack: timedelta, resolve: timedelta) -> None:
    deadlines = deadlines_for(Priority(level), T0)
    assert (deadlines.ack_due, deadlines.resolve_due) == (T0 + ack, T0 + resolve)


def _p1_unacknowledged() -> Alarm:
    d = deadlines_for(Priority(1), T0)
    alarm, _ = new_alarm(priority=1, ack_after=d.ack_due - T0, resolve_after=d.resolve_due - T0)
    return alarm


def test_nothing_escalates_before_the_deadline() -> None:
    alarm = _p1_unacknowledged()
    assert check_escalation(alarm, T0 + timedelta(seconds=59)) is None


def test_unacknowledged_p1_escalates_at_sixty_seconds() -> None:
    alarm = _p1_unacknowledged()
    esc = check_escalation(alarm, T0 + timedelta(seconds=61))
    assert esc is not None
    assert esc.breaches == (Breach.ACKNOWLEDGE,)
    assert esc.level == 1
    assert esc.supervisor
    assert esc.renotify
    assert esc.overdue_by == timedelta(seconds=1)
    assert esc.priority == Priority(1)
    # Next escalation one ack-interval later, so a ticking checker does not re-fire every tick.
    assert esc.next_ack_due == T0 + timedelta(seconds=121)
    assert esc.next_resolve_due is None

    escalated, entry = escalate(alarm, esc)
    assert escalated.escalation_level == 1
    assert escalated.ack_due == T0 + timedelta(seconds=121)
    assert escalated.revision == alarm.revision + 1
    assert entry.action is AlarmAction.ESCALATE
    assert entry.actor == "sla"
    assert entry.details["breaches"] == ["acknowledge"]
    assert entry.details["supervisor"] is True
    assert check_escalation(escalated, T0 + timedelta(seconds=90)) is None
    assert check_escalation(escalated, T0 + timedelta(seconds=121)) is not None


def test_deadlines_are_stored_so_a_restart_changes_nothing() -> None:
    alarm = _p1_unacknowledged()
    # A "restarted" checker sees only the stored alarm value and the current time.
    rebuilt = type(alarm)(**{f: getattr(alarm, f) for f in alarm.__dataclass_fields__})
    assert check_escalation(rebuilt, T0 + timedelta(minutes=5)) == check_escalation(
        alarm, T0 + timedelta(minutes=5)
    )


def test_acknowledged_alarm_escalates_only_on_the_resolve_deadline() -> None:
    alarm, _ = new_alarm(priority=2)
    acked, _ = apply(alarm, "acknowledge", "op", T0 + timedelta(minutes=1))
    assert check_escalation(acked, T0 + timedelta(hours=1)) is None
    esc = check_escalation(acked, T0 + timedelta(hours=4, seconds=1))
    assert esc is not None
    assert esc.breaches == (Breach.RESOLVE,)


def test_both_deadlines_missed_during_downtime_escalate_once() -> None:
    alarm, _ = new_alarm(priority=2)
    esc = check_escalation(alarm, T0 + timedelta(hours=5))
    assert esc is not None
    assert esc.breaches == (Breach.ACKNOWLEDGE, Breach.RESOLVE)
    assert esc.overdue_by == timedelta(hours=4, minutes=55)
    escalated, _ = escalate(alarm, esc)
    assert check_escalation(escalated, T0 + timedelta(hours=5, minutes=1)) is None


def test_finished_alarms_and_the_level_cap_stop_escalation() -> None:
    alarm, _ = new_alarm(priority=2)
    resolved, _ = apply(apply(alarm, "acknowledge", "op", T0)[0], "resolve", "op", T0)
    assert check_escalation(resolved, T0 + timedelta(days=30)) is None

    policy = SlaPolicy(escalation=EscalationPolicy(max_level=2))
    now = T0 + timedelta(hours=5)
    for _ in range(2):
        esc = check_escalation(alarm, now, policy)
        assert esc is not None
        alarm, _ = escalate(alarm, esc)
        now += timedelta(hours=1)
    assert alarm.escalation_level == 2
    assert check_escalation(alarm, now + timedelta(days=1), policy) is None


def test_escalation_can_raise_priority_and_involve_the_supervisor_later() -> None:
    policy = SlaPolicy(
        escalation=EscalationPolicy(
            raise_priority=True, supervisor_from_level=2, renotify_every=timedelta(minutes=10)
        )
    )
    alarm, _ = new_alarm(priority=3, ack_after=timedelta(minutes=30))
    first = check_escalation(alarm, T0 + timedelta(minutes=31), policy)
    assert first is not None
    assert (first.priority, first.previous_priority, first.supervisor) == (
        Priority(2),
        Priority(3),
        False,
    )
    alarm, entry = escalate(alarm, first)
    assert alarm.priority == Priority(2)
    assert entry.details["previous_priority"] == "P3"
    assert alarm.ack_due == T0 + timedelta(minutes=41)
    second = check_escalation(alarm, T0 + timedelta(minutes=41), policy)
    assert second is not None
    assert (second.level, second.priority, second.supervisor) == (2, Priority(1), True)


def test_sla_policy_needs_all_four_priorities_and_positive_times() -> None:
    with pytest.raises(ValidationError, match="must name priorities 1, 2, 3 and 4"):
        SlaPolicy.model_validate({"targets": {"1": {"ack": 60, "resolve": 600}}})
    targets = DEFAULT_SLA_POLICY.model_dump()["targets"]
    targets[2]["ack"] = 0
    with pytest.raises(ValidationError, match="greater than"):
        SlaPolicy.model_validate({"targets": targets})
    with pytest.raises(ValidationError, match="Extra inputs"):
        SlaPolicy.model_validate({"grace": 5})
