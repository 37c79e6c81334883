"""Alarm value types refuse bad values at the edge."""

from __future__ import annotations

import dataclasses
from datetime import timedelta, timezone
from typing import Any

import pytest

from alarms import Alarm, AlarmAction, AlarmState, HistoryEntry, Location, Priority
from tests.unit.alarm_factories import ALARM_ID, T0, new_alarm


def test_priority_accepts_one_to_four_and_sorts_p1_first() -> None:
    assert sorted([Priority(3), Priority(1), Priority(4), Priority(2)]) == [
        Priority(1),
        Priority(2),
        Priority(3),
        Priority(4),
    ]
    assert Priority(1) < Priority(2)
    assert str(Priority(2)) == "P2"
    assert Priority.parse("P3") == Priority.parse("3") == Priority.parse(3) == Priority(3)
    assert Priority(3).raised() == Priority(2)
    assert Priority(1).raised() == Priority(1)
    assert Priority(1).is_highest and not Priority(2).is_highest


@pytest.mark.parametrize("bad", [0, 5, -1, True, 2.0, "1"])
def test_priority_refuses_other_values(bad: object) -> None:
    with pytest.raises(ValueError, match="priority must be"):
        Priority(bad)  # type: ignore[arg-type]


def test_priority_parse_refuses_garbage() -> None:
    with pytest.raises(ValueError, match=r"P1\.\.P4"):
        Priority.parse("urgent")
    with pytest.raises(ValueError, match=r"1\.\.4"):
        Priority.parse("P0")


def test_alarm_state_values() -> None:
    assert [s.value for s in AlarmState] == [
        "new",
        "acknowledged",
        "dispatched",
        "resolved",
        "closed",
        "false_alarm",
    ]


def test_alarm_is_frozen() -> None:
    alarm, _ = new_alarm()
    with pytest.raises(dataclasses.FrozenInstanceError):
        alarm.state = AlarmState.CLOSED  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"opened_at": T0.replace(tzinfo=None)}, "timezone-aware"),
        ({"opened_at": T0.astimezone(timezone(timedelta(hours=8)))}, "must be in UTC"),
        ({"last_seen_at": T0 - timedelta(seconds=1)}, "last_seen_at must not be before"),
        ({"count": 0}, "count must be >= 1"),
        ({"revision": 0}, "revision must be >= 1"),
        ({"escalation_level": -1}, "escalation_level"),
        ({"device_id": "cam 1"}, "invalid device id"),
        ({"type": "Intrusion!"}, "invalid alarm type"),
        ({"title": " "}, "title must not be empty"),
        ({"state": AlarmState.CLOSED}, "needs a closed_reason"),
        ({"closed_reason": "done"}, "cannot have a closed_reason"),
        ({"state": AlarmState.DISPATCHED}, "needs an assignee or a department"),
        ({"state": "bogus"}, "'bogus' is not a valid AlarmState"),
    ],
)
def test_alarm_refuses_inconsistent_values(changes: dict[str, Any], message: str) -> None:
    alarm, _ = new_alarm()
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(alarm, **changes)


def test_history_entry_checks_values_and_freezes_details() -> None:
    details = {"count": 2}
    entry = HistoryEntry(
        alarm_id=ALARM_ID,
        at=T0,
        actor="op",
        action="repeat",  # type: ignore[arg-type]
        from_state="new",  # type: ignore[arg-type]
        to_state="new",  # type: ignore[arg-type]
        details=details,
        revision=2,
    )
    details["count"] = 99
    assert entry.details["count"] == 2
    assert entry.from_state is AlarmState.NEW
    with pytest.raises(ValueError, match="only an 'open' entry may have no from_state"):
        HistoryEntry(
            alarm_id=ALARM_ID,
            at=T0,
            actor="op",
            action=AlarmAction.NOTE,
            from_state=None,
            to_state=AlarmState.NEW,
        )
    with pytest.raises(ValueError, match="actor must not be empty"):
        dataclasses.replace(entry, actor="")


def test_location_checks_coordinates() -> None:
    assert Location(31.23, 121.47).radius_m == 50.0
    with pytest.raises(ValueError, match="latitude"):
        Location(91, 0)
    with pytest.raises(ValueError, match="longitude"):
        Location(0, 181)


def test_alarm_is_active_only_while_handled() -> None:
    alarm, _ = new_alarm()
    assert alarm.is_active
    closed = Alarm(
        **{
            **{f.name: getattr(alarm, f.name) for f in dataclasses.fields(alarm)},
            "state": AlarmState.FALSE_ALARM,
            "closed_reason": "wind",
        }
    )
    assert not closed.is_active


@pytest.mark.parametrize(
    "changes",
    [
        {"count": 0},
        {"count": True},
        {"revision": 0},
        {"escalation_level": -1},
        {"last_seen_at": T0 - timedelta(seconds=1)},
        {"last_seen_at": T0.replace(tzinfo=None)},
        {"ack_due": T0.astimezone(timezone(timedelta(hours=8)))},
        {"state": "nonsense"},
        {"state": AlarmState.CLOSED},  # closed without a reason
        {"closed_reason": "done"},  # a reason on an open alarm
        {"state": AlarmState.DISPATCHED},  # dispatched to nobody
        {"assignee": "x" * 129},
        {"title": "  "},
    ],
)
def test_evolve_refuses_what_construction_refuses(changes: dict[str, Any]) -> None:
    alarm, _ = new_alarm()
    with pytest.raises(ValueError):
        dataclasses.replace(alarm, **changes)
    with pytest.raises(ValueError):
        alarm.evolve(**changes)


def test_evolve_is_replace_for_good_changes() -> None:
    alarm, _ = new_alarm()
    changes: dict[str, Any] = {
        "count": 7,
        "last_seen_at": T0 + timedelta(minutes=3),
        "revision": 4,
        "state": "acknowledged",
        "assignee": "op-1",
    }
    evolved = alarm.evolve(**changes)
    assert evolved == dataclasses.replace(alarm, **changes)
    assert evolved.state is AlarmState.ACKNOWLEDGED  # normalised like construction does
    assert alarm.count == 1 and alarm.revision == 1  # the original is untouched
    with pytest.raises(TypeError, match="no field colour"):
        alarm.evolve(colour="red")
