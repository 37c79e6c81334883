"""Department tasks: lifecycle, clocks, escalation, dispatch by rule, close guard."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.models import Priority
from alarms.task_rules import DepartmentRef, DispatchRule, departments_for_rule
from alarms.task_sla import TaskSlaPolicy
from alarms.tasks import (
    InvalidTaskTransition,
    Stage,
    Task,
    TaskAction,
    TaskState,
    apply_task,
    check_task_escalation,
    close_blockers,
    dispatch_task,
    escalate_task,
    task_is_on_time,
)
from hub.departments.report import percentile

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
ALARM = uuid.UUID(int=1)


def new_task(priority: int = 1, department: str = "police-a") -> Task:
    task, _ = dispatch_task(
        task_id=uuid.uuid4(),
        alarm_id=ALARM,
        department_id=department,
        priority=Priority(priority),
        at=T0,
        actor="user:center",
    )
    return task


def test_a_p1_task_gets_its_three_deadlines_from_the_dispatch() -> None:
    task, entry = dispatch_task(
        task_id=uuid.uuid4(),
        alarm_id=ALARM,
        department_id="police-a",
        priority=Priority(1),
        at=T0,
        actor="user:center",
        jurisdiction_path="/150207/150207001/",
    )
    assert task.state is TaskState.DISPATCHED
    assert task.report_in_due == T0 + timedelta(minutes=5)
    assert task.on_site_due == T0 + timedelta(minutes=20)
    assert task.feedback_due == T0 + timedelta(hours=2)
    assert entry.action is TaskAction.DISPATCH and entry.from_state is None
    assert entry.details["department_id"] == "police-a"


def test_full_cycle_with_one_send_back() -> None:
    task = new_task()
    steps: list[tuple[str, dict[str, object]]] = [
        ("report_in", {}),
        ("arrive", {}),
        ("submit_feedback", {"note": "学生已安全疏散"}),
        ("send_back", {"note": "缺少现场照片"}),
        ("submit_feedback", {"note": "已补充照片"}),
        ("accept", {}),
    ]
    at = T0
    states = []
    for action, kwargs in steps:
        at += timedelta(minutes=1)
        task, entry = apply_task(task, action, "user:x", at, **kwargs)  # type: ignore[arg-type]
        states.append(entry.to_state)
        assert entry.revision == task.revision
    assert states == [
        TaskState.REPORTED_IN,
        TaskState.ON_SITE,
        TaskState.FEEDBACK_SUBMITTED,
        TaskState.ON_SITE,
        TaskState.FEEDBACK_SUBMITTED,
        TaskState.ACCEPTED,
    ]
    assert task.sent_back == 1
    assert task.revision == 7
    assert task.reported_in_at == T0 + timedelta(minutes=1)
    # The first feedback time is kept for the reports; the text is the latest.
    assert task.feedback_at == T0 + timedelta(minutes=3)
    assert task.feedback == "已补充照片"
    assert task.finished_at == T0 + timedelta(minutes=6)
    assert task_is_on_time(task, at)


def test_send_back_to_reported_in_renews_the_on_site_and_feedback_clocks() -> None:
    task = new_task()
    for action, note in (("report_in", None), ("arrive", None), ("submit_feedback", "done")):
        task, _ = apply_task(task, action, "user:x", T0 + timedelta(minutes=2), note=note)
    back_at = T0 + timedelta(minutes=30)
    task, entry = apply_task(
        task, "send_back", "user:c", back_at, note="再去", back_to="reported_in"
    )
    assert task.state is TaskState.REPORTED_IN
    assert task.on_site_due == back_at + timedelta(minutes=15)
    assert task.feedback_due == back_at + timedelta(minutes=115)
    assert entry.details["sent_back"] == 1


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("arrive", {}, "cannot arrive a task that is dispatched"),
        ("accept", {}, "cannot accept a task that is dispatched"),
        ("send_back", {"note": "x"}, "cannot send back a task that is dispatched"),
    ],
)
def test_out_of_order_actions_are_refused(
    action: str, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidTaskTransition, match=message):
        apply_task(new_task(), action, "user:x", T0, **kwargs)  # type: ignore[arg-type]


def test_feedback_send_back_and_withdraw_need_text() -> None:
    task, _ = apply_task(new_task(), "report_in", "key:police", T0)
    task, _ = apply_task(task, "arrive", "key:police", T0)
    with pytest.raises(ValueError, match="feedback needs text"):
        apply_task(task, "submit_feedback", "key:police", T0, note="  ")
    task, _ = apply_task(task, "submit_feedback", "key:police", T0, note="ok")
    with pytest.raises(ValueError, match="needs a reason"):
        apply_task(task, "send_back", "user:c", T0)
    with pytest.raises(ValueError, match="needs a reason"):
        apply_task(task, "withdraw", "user:c", T0)
    with pytest.raises(ValueError, match="sent back to on_site or reported_in"):
        apply_task(task, "send_back", "user:c", T0, note="x", back_to="dispatched")


def test_missed_report_in_escalates_to_supervisor_then_center() -> None:
    task = new_task()
    assert check_task_escalation(task, T0 + timedelta(minutes=4)) is None
    first = check_task_escalation(task, T0 + timedelta(minutes=6))
    assert first is not None and first.level == 1 and first.to == "supervisor"
    assert first.stage is Stage.REPORT_IN and first.overdue_by == timedelta(minutes=1)
    task, entry = escalate_task(task, first)
    assert entry.details == {"stage": "report_in", "level": 1, "to": "supervisor", "overdue_s": 60}
    assert Stage.REPORT_IN in task.missed
    # Not again before center_after (10 min) has passed.
    assert check_task_escalation(task, T0 + timedelta(minutes=15)) is None
    second = check_task_escalation(task, T0 + timedelta(minutes=16))
    assert second is not None and second.level == 2 and second.to == "center"
    task, _ = escalate_task(task, second)
    assert check_task_escalation(task, T0 + timedelta(hours=5)) is None
    # Reporting in starts the next stage at level 0; it is late but was already counted.
    task, entry = apply_task(task, "report_in", "key:police", T0 + timedelta(minutes=17))
    assert task.escalation_level == 0 and task.next_escalation_at is None
    assert "late" not in entry.details
    assert not task_is_on_time(task, T0 + timedelta(minutes=17))


def test_a_late_report_in_without_escalation_is_counted_late() -> None:
    task, entry = apply_task(new_task(), "report_in", "key:p", T0 + timedelta(minutes=7))
    assert entry.details["late"] == ["report_in"]
    assert not task_is_on_time(task, T0 + timedelta(minutes=7))


def test_close_blockers_are_the_unfinished_tasks() -> None:
    done, _ = apply_task(new_task(), "withdraw", "user:c", T0, note="center override")
    waiting = new_task(department="edu")
    assert close_blockers([done, waiting]) == [waiting]


def test_dispatch_by_rule_picks_the_closest_department_of_each_kind() -> None:
    rule = DispatchRule(
        name="school_panic", alarm_types=["panic"], kinds=["police_station", "education_bureau"]
    )
    departments = [
        DepartmentRef("police-district", "police_station", ("/150207/",)),
        DepartmentRef("police-a", "police_station", ("/150207/150207001/",)),
        DepartmentRef("police-b", "police_station", ("/150207/150207002/",)),
        DepartmentRef("edu", "education_bureau", ("/150207/",)),
        DepartmentRef("edu-off", "education_bureau", ("/150207/150207001/",), enabled=False),
    ]
    assert departments_for_rule(rule, "/150207/150207001/15020700101/", departments) == [
        "police-a",
        "edu",
    ]
    assert departments_for_rule(rule, "/150207/150207009/", departments) == [
        "police-district",
        "edu",
    ]
    assert departments_for_rule(rule, "/150102/", departments) == []
    assert departments_for_rule(rule, None, departments) == []


def test_rules_and_sla_refuse_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown department kinds"):
        DispatchRule(name="x", alarm_types=["panic"], kinds=["army"])
    with pytest.raises(ValueError, match="report_in <= on_site <= feedback"):
        TaskSlaPolicy.model_validate(
            {
                "targets": {
                    str(p): {"report_in": 600, "on_site": 60, "feedback": 900} for p in range(1, 5)
                }
            }
        )
    with pytest.raises(ValueError, match="invalid department id"):
        new_task(department="Police A")


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([30.0, 10.0, 20.0], 0.5) == 20.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.9) == 40.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 20.0


_ACTIONS = st.sampled_from(list(TaskAction))


@settings(max_examples=300)
@given(st.lists(st.tuples(_ACTIONS, st.integers(0, 3600)), max_size=25))
def test_any_sequence_keeps_history_numbered_and_finished_tasks_final(
    steps: list[tuple[TaskAction, int]],
) -> None:
    task = new_task(priority=2)
    at = T0
    revisions = [1]
    for action, seconds in steps:
        at += timedelta(seconds=seconds)
        before = task
        try:
            if action is TaskAction.ESCALATE:
                due = check_task_escalation(task, at)
                if due is None:
                    continue
                task, entry = escalate_task(task, due)
            else:
                task, entry = apply_task(task, action, "user:x", at, note="text")
        except (InvalidTaskTransition, ValueError):
            assert task is before
            continue
        revisions.append(entry.revision)
        assert entry.from_state is before.state and entry.to_state is task.state
        if before.is_finished:
            assert action is TaskAction.NOTE
        # Missed stages only grow, the first feedback time never moves.
        assert before.missed <= task.missed
        if before.feedback_at is not None:
            assert task.feedback_at == before.feedback_at
        assert task.escalation_level <= 2
    assert revisions == list(range(1, len(revisions) + 1))
