"""The dedup key a batch looks up before evaluating is the one evaluation then uses."""

from __future__ import annotations

from typing import Any

from alarms import DEFAULT_RULES, DeviceContext, OpenAlarm, RuleSet, dedup_key_for, evaluate
from camera_registry.events import DeviceEvent
from tests.unit.alarm_factories import T0

BUTTON = DeviceContext(device_id="panic-sch03-01", kind="panic", jurisdiction="310101003")


def press(**payload: Any) -> DeviceEvent:
    return DeviceEvent(time=T0, device_id=BUTTON.device_id, kind="panic.press", payload=payload)


def test_the_looked_up_key_is_the_key_of_the_opened_alarm() -> None:
    for event in (press(), press(drill=True)):
        (decision,) = evaluate(event, BUTTON, {}, DEFAULT_RULES, T0)
        assert isinstance(decision, OpenAlarm)
        assert dedup_key_for(event, BUTTON, DEFAULT_RULES) == decision.alarm.dedup_key
    assert dedup_key_for(press(drill=True), BUTTON, DEFAULT_RULES) == "drill:panic:panic-sch03-01"


def test_a_key_template_may_group_devices_and_unmatched_events_have_none() -> None:
    rules = RuleSet.model_validate(
        {
            "rules": [
                {
                    "name": "school_panic",
                    "match": {"kinds": ["panic.press"]},
                    "type": "panic",
                    "priority": 1,
                    "category": "emergency",
                    "title": "Panic alarm",
                    "dedup_key": "{type}:{jurisdiction}",
                }
            ]
        }
    )
    assert dedup_key_for(press(), BUTTON, rules) == "panic:310101003"
    other = DeviceEvent(time=T0, device_id=BUTTON.device_id, kind="onvif.motion", payload={})
    assert dedup_key_for(other, BUTTON, rules) is None
