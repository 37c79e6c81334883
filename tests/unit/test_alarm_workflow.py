"""The alarm lifecycle: what operators may do in each state, and what history records."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from alarms import (
    FINISHED_STATES,
    TRANSITIONS,
    Alarm,
    AlarmAction,
    AlarmCategory,
    AlarmState,
    HistoryEntry,
    InvalidTransition,
    Priority,
    allowed_actions,
    apply,
)
from tests.unit.alarm_factories import T0, new_alarm


def walk(alarm: Alarm, *steps: tuple[str, dict[str, object]]) -> list[tuple[Alarm, HistoryEntry]]:
    out = []
    at = T0
    for action, kwargs in steps:
        at += timedelta(seconds=10)
        alarm, entry = apply(alarm, action, "op-zhang", at, **kwargs)  # type: ignore[arg-type]
        out.append((alarm, entry))
    return out


def test_full_cycle_new_to_closed_records_every_step() -> None:
    alarm, opened = new_alarm()
    steps = walk(
        alarm,
        ("acknowledge", {}),
        ("assign", {"department": "Police station Nanjing Rd"}),
        ("dispatch", {}),
        ("resolve", {"note": "suspect left, gate locked"}),
        ("close", {}),
    )
    final, _ = steps[-1]
    assert final.state is AlarmState.CLOSED
    assert final.revision == 6
    assert final.closed_reason == "closed"
    assert final.department == "Police station Nanjing Rd"
    history = [opened, *(entry for _, entry in steps)]
    assert [e.action for e in history] == [
        AlarmAction.OPEN,
        AlarmAction.ACKNOWLEDGE,
        AlarmAction.ASSIGN,
        AlarmAction.DISPATCH,
        AlarmAction.RESOLVE,
        AlarmAction.CLOSE,
    ]
    assert [e.revision for e in history] == [1, 2, 3, 4, 5, 6]
    assert [(e.from_state, e.to_state) for e in history][3] == (
        AlarmState.ACKNOWLEDGED,
        AlarmState.DISPATCHED,
    )
    assert history[4].note == "suspect left, gate locked"
    assert all(e.actor == "op-zhang" for e in history[1:])


def test_resolving_a_new_alarm_is_refused_with_a_clear_message() -> None:
    alarm, _ = new_alarm()
    with pytest.raises(InvalidTransition) as caught:
        apply(alarm, "resolve", "op", T0)
    assert str(caught.value) == "cannot resolve an alarm that is new; acknowledge it first"
    assert caught.value.state is AlarmState.NEW
    assert caught.value.action is AlarmAction.RESOLVE


@pytest.mark.parametrize(
    ("path", "action", "message"),
    [
        ([], "dispatch", "cannot dispatch an alarm that is new; acknowledge it first"),
        (
            ["acknowledge"],
            "acknowledge",
            "cannot acknowledge an alarm that is acknowledged; only new alarms can be acknowledged",
        ),
        (
            ["acknowledge"],
            "close",
            "cannot close an alarm that is acknowledged; resolve it first or mark it a false alarm",
        ),
        ([], "reopen", "cannot reopen an alarm that is new; it is still open"),
        (
            ["false_alarm"],
            "dispatch",
            "cannot dispatch an alarm that is false alarm; reopen it first",
        ),
        (
            ["acknowledge", "resolve", "close"],
            "false_alarm",
            "cannot mark as a false alarm an alarm that is closed; reopen it first",
        ),
    ],
)
def test_invalid_transitions_name_state_and_remedy(
    path: list[str], action: str, message: str
) -> None:
    alarm, _ = new_alarm()
    for step in path:
        alarm, _ = apply(alarm, step, "op", T0)
    with pytest.raises(InvalidTransition, match="^" + message + "$"):
        apply(alarm, action, "op", T0)


def test_dispatch_needs_someone_to_dispatch_to() -> None:
    alarm, _ = new_alarm()
    alarm, _ = apply(alarm, "acknowledge", "op", T0)
    with pytest.raises(InvalidTransition, match="assign it first"):
        apply(alarm, "dispatch", "op", T0)
    dispatched, entry = apply(alarm, "dispatch", "op", T0, department="Fire brigade 3")
    assert dispatched.state is AlarmState.DISPATCHED
    assert entry.details["department"] == "Fire brigade 3"


def test_acknowledge_may_take_the_alarm_for_oneself() -> None:
    alarm, _ = new_alarm()
    alarm, entry = apply(alarm, "acknowledge", "op-li", T0, assignee="op-li")
    assert alarm.assignee == "op-li"
    assert entry.details["assignee"] == "op-li"


def test_arguments_that_do_not_belong_to_an_action_are_refused() -> None:
    alarm, _ = new_alarm()
    with pytest.raises(ValueError, match="resolve does not take priority"):
        apply(alarm, "resolve", "op", T0, priority=Priority(1))
    with pytest.raises(ValueError, match="assign needs an assignee or a department"):
        apply(alarm, "assign", "op", T0)
    with pytest.raises(ValueError, match="a note needs text"):
        apply(alarm, "note", "op", T0, note="  ")
    with pytest.raises(ValueError, match="use open_alarm"):
        apply(alarm, "open", "op", T0)


def test_note_is_allowed_in_every_state_and_keeps_it() -> None:
    alarm, _ = new_alarm()
    for path in ([], ["acknowledge", "resolve", "close"], ["false_alarm"]):
        current = alarm
        for step in path:
            current, _ = apply(current, step, "op", T0)
        noted, entry = apply(current, "note", "op", T0, note="called the school")
        assert noted.state is current.state
        assert noted.revision == current.revision + 1
        assert entry.note == "called the school"


def test_false_alarm_and_reopen_back_to_acknowledged() -> None:
    alarm, _ = new_alarm()
    marked, entry = apply(alarm, "false_alarm", "op", T0, note="cat on the fence")
    assert marked.state is AlarmState.FALSE_ALARM
    assert marked.closed_reason == "cat on the fence"
    reopened, entry = apply(marked, "reopen", "supervisor", T0 + timedelta(minutes=1))
    assert reopened.state is AlarmState.ACKNOWLEDGED
    assert reopened.closed_reason is None
    assert entry.details["previous_closed_reason"] == "cat on the fence"


def test_reopen_can_set_a_new_resolve_deadline() -> None:
    alarm, _ = new_alarm()
    walked = walk(alarm, ("acknowledge", {}), ("resolve", {}))
    resolved = walked[-1][0]
    due = T0 + timedelta(hours=9)
    reopened, _ = apply(resolved, "reopen", "op", T0 + timedelta(hours=1), resolve_due=due)
    assert reopened.resolve_due == due


def test_repeat_counts_and_never_moves_last_seen_backwards() -> None:
    alarm, _ = new_alarm()
    later, entry = apply(alarm, "repeat", "rules", T0 + timedelta(minutes=3))
    assert (later.count, later.last_seen_at) == (2, T0 + timedelta(minutes=3))
    assert entry.details["count"] == 2
    earlier, _ = apply(later, "repeat", "rules", T0 + timedelta(minutes=1))
    assert (earlier.count, earlier.last_seen_at) == (3, T0 + timedelta(minutes=3))


def test_repeat_of_finished_alarm_is_refused() -> None:
    alarm, _ = new_alarm()
    closed, _ = apply(alarm, "false_alarm", "op", T0)
    with pytest.raises(InvalidTransition, match="a repeat of a finished alarm opens a new alarm"):
        apply(closed, "repeat", "rules", T0)


def test_auto_close_only_for_maintenance_alarms() -> None:
    security, _ = new_alarm()
    with pytest.raises(InvalidTransition, match="only maintenance alarms close themselves"):
        apply(security, "auto_close", "system", T0)
    offline, _ = new_alarm(category=AlarmCategory.MAINTENANCE, type="device_offline", priority=3)
    closed, entry = apply(offline, "auto_close", "system", T0 + timedelta(minutes=7))
    assert closed.state is AlarmState.CLOSED
    assert closed.closed_reason == "auto-closed: device recovered"
    assert entry.action is AlarmAction.AUTO_CLOSE
    assert entry.details["auto_closed"] is True


def test_escalate_raises_level_and_priority_but_never_lowers_it() -> None:
    alarm, _ = new_alarm(priority=3)
    up, entry = apply(alarm, "escalate", "sla", T0, priority=Priority(2))
    assert (up.escalation_level, up.priority) == (1, Priority(2))
    assert entry.details["previous_priority"] == "P3"
    with pytest.raises(ValueError, match="cannot lower the priority"):
        apply(up, "escalate", "sla", T0, priority=Priority(4))


def test_allowed_actions_match_the_transition_table() -> None:
    alarm, _ = new_alarm()
    assert allowed_actions(alarm) == {
        AlarmAction.ACKNOWLEDGE,
        AlarmAction.ASSIGN,
        AlarmAction.FALSE_ALARM,
        AlarmAction.NOTE,
        AlarmAction.ESCALATE,
        AlarmAction.REPEAT,
    }
    assert TRANSITIONS[AlarmAction.REOPEN] == {
        AlarmState.RESOLVED,
        AlarmState.CLOSED,
        AlarmState.FALSE_ALARM,
    }


def test_naive_time_is_refused() -> None:
    alarm, _ = new_alarm()
    with pytest.raises(ValueError, match="timezone-aware"):
        apply(alarm, "acknowledge", "op", T0.replace(tzinfo=None))


# --- properties -------------------------------------------------------------

_APPLIED_ACTIONS = [a for a in AlarmAction if a is not AlarmAction.OPEN]
_ACTION_ARGS = st.fixed_dictionaries(
    {},
    optional={
        "note": st.sampled_from(["checked", "called the school", " "]),
        "assignee": st.sampled_from(["op-li", "op-wang"]),
        "department": st.sampled_from(["police", "maintenance"]),
        "priority": st.integers(1, 4).map(Priority),
    },
)


def _check_alarm_consistent(alarm: Alarm) -> None:
    assert alarm.state in set(AlarmState)
    assert (alarm.closed_reason is not None) == (alarm.state in FINISHED_STATES)
    if alarm.state is AlarmState.DISPATCHED:
        assert alarm.assignee or alarm.department
    assert alarm.count >= 1
    assert alarm.last_seen_at >= alarm.opened_at


@settings(max_examples=300)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(_APPLIED_ACTIONS), _ACTION_ARGS),
        max_size=25,
    ),
    category=st.sampled_from(list(AlarmCategory)),
)
def test_any_action_sequence_keeps_alarm_valid_and_history_complete(
    steps: list[tuple[AlarmAction, dict[str, object]]], category: AlarmCategory
) -> None:
    alarm, opened = new_alarm(category=category, priority=4)
    history = [opened]
    at = T0
    for action, kwargs in steps:
        at += timedelta(seconds=1)
        before = alarm
        try:
            alarm, entry = apply(alarm, action, "op", at, **kwargs)  # type: ignore[arg-type]
        except (InvalidTransition, ValueError):
            assert alarm is before  # a refused action changes nothing
            continue
        history.append(entry)
        assert alarm.revision == before.revision + 1
        assert (entry.from_state, entry.to_state) == (before.state, alarm.state)
        assert entry.action is action
        if entry.from_state != entry.to_state:
            assert before.state in TRANSITIONS[action]
        _check_alarm_consistent(alarm)
    # Complete and gap-free: one entry per revision, in order, all about this alarm.
    assert [e.revision for e in history] == list(range(1, alarm.revision + 1))
    assert {e.alarm_id for e in history} == {alarm.id}
    chained = [e.to_state for e in history[:-1]] == [e.from_state for e in history[1:]]
    assert chained


class AlarmLifecycle(RuleBasedStateMachine):
    """An operator console hammering one alarm with any action in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.alarm, opened = new_alarm(category=AlarmCategory.MAINTENANCE, priority=3)
        self.history: list[HistoryEntry] = [opened]
        self.at = T0

    def _try(self, action: AlarmAction, **kwargs: object) -> None:
        self.at += timedelta(seconds=5)
        before = self.alarm
        if before.state not in TRANSITIONS[action]:
            with pytest.raises(InvalidTransition):
                apply(before, action, "op", self.at, **kwargs)  # type: ignore[arg-type]
            return
        try:
            self.alarm, entry = apply(before, action, "op", self.at, **kwargs)  # type: ignore[arg-type]
        except InvalidTransition as refused:
            # Only the dispatch-without-assignee precondition refuses from an allowed state.
            assert action is AlarmAction.DISPATCH
            assert "assign it first" in str(refused)
            return
        self.history.append(entry)

    @rule()
    def acknowledge(self) -> None:
        self._try(AlarmAction.ACKNOWLEDGE)

    @rule(department=st.sampled_from(["police", "maintenance"]))
    def assign(self, department: str) -> None:
        self._try(AlarmAction.ASSIGN, department=department)

    @rule()
    def dispatch(self) -> None:
        self._try(AlarmAction.DISPATCH)

    @rule()
    def resolve(self) -> None:
        self._try(AlarmAction.RESOLVE)

    @rule()
    def close(self) -> None:
        self._try(AlarmAction.CLOSE)

    @rule()
    def false_alarm(self) -> None:
        self._try(AlarmAction.FALSE_ALARM, note="wind")

    @rule()
    def reopen(self) -> None:
        self._try(AlarmAction.REOPEN)

    @rule()
    def note(self) -> None:
        self._try(AlarmAction.NOTE, note="still looking")

    @rule()
    def escalate(self) -> None:
        self._try(AlarmAction.ESCALATE)

    @rule()
    def auto_close(self) -> None:
        self._try(AlarmAction.AUTO_CLOSE)

    @rule()
    def repeat(self) -> None:
        self._try(AlarmAction.REPEAT)

    @precondition(lambda self: self.alarm.state is AlarmState.CLOSED)
    @rule()
    def closed_alarm_rejects_work(self) -> None:
        for action in (AlarmAction.DISPATCH, AlarmAction.RESOLVE, AlarmAction.REPEAT):
            with pytest.raises(InvalidTransition):
                apply(self.alarm, action, "op", self.at)

    @invariant()
    def alarm_is_consistent(self) -> None:
        _check_alarm_consistent(self.alarm)

    @invariant()
    def history_is_append_only_and_complete(self) -> None:
        assert [e.revision for e in self.history] == list(range(1, self.alarm.revision + 1))
        assert self.history[-1].to_state is self.alarm.state
        assert all(a.at <= b.at for a, b in zip(self.history, self.history[1:], strict=False))

    @invariant()
    def entries_are_immutable(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            self.history[-1].note = "rewritten"  # type: ignore[misc]
        with pytest.raises(TypeError):
            self.history[-1].details["x"] = 1  # type: ignore[index]


TestAlarmLifecycle = AlarmLifecycle.TestCase
TestAlarmLifecycle.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
