"""Rule evaluation: device events of each kind -> open, repeat or auto-close decisions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from alarms import (
    DEFAULT_RULES,
    Alarm,
    AlarmAction,
    AlarmCategory,
    AlarmRule,
    AlarmState,
    CloseAlarm,
    Decision,
    DeviceContext,
    OpenAlarm,
    Priority,
    RuleSet,
    SlaPolicy,
    UpdateAlarm,
    apply,
    evaluate,
)
from camera_registry.events import DeviceEvent
from tests.unit.alarm_factories import T0

SCHOOL_PANIC = DeviceContext(
    device_id="panic-sch03-01",
    kind="panic",
    project="school_panic",
    jurisdiction="310101003",
    name="No.3 Primary School main gate",
    linked_cameras=("cam-sch03-gate", "cam-sch03-yard"),
    linked_speakers=("spk-sch03",),
)
GATE_CAMERA = DeviceContext(
    device_id="cam-0042",
    kind="camera",
    project="sharp_eyes",
    jurisdiction="310101001",
    name="Nanjing Rd crossing",
    linked_cameras=("cam-0043",),
)


def event(
    kind: str, device: str = "cam-0042", after: timedelta = timedelta(0), **payload: Any
) -> DeviceEvent:
    if kind.startswith("onvif.") and "state" not in payload:
        payload["state"] = True  # ONVIF property events carry whether the condition holds
    return DeviceEvent(time=T0 + after, device_id=device, kind=kind, payload=payload)


def run(
    ev: DeviceEvent,
    device: DeviceContext | None,
    open_alarms: Mapping[str, Alarm] | None = None,
    after: timedelta = timedelta(0),
) -> list[Decision]:
    return evaluate(ev, device, open_alarms or {}, DEFAULT_RULES, T0 + after)


def only_open(decisions: list[Decision]) -> OpenAlarm:
    assert len(decisions) == 1
    assert isinstance(decisions[0], OpenAlarm)
    return decisions[0]


def test_panic_press_opens_a_p1_emergency_alarm_with_linked_snapshots() -> None:
    press = event("panic.press", device="panic-sch03-01")
    opened = only_open(run(press, SCHOOL_PANIC))
    alarm = opened.alarm
    assert alarm.priority == Priority(1)
    assert alarm.category is AlarmCategory.EMERGENCY
    assert alarm.type == "panic"
    assert alarm.state is AlarmState.NEW
    assert alarm.title == "Panic alarm: No.3 Primary School main gate"
    assert alarm.jurisdiction == "310101003"
    assert alarm.dedup_key == "panic:panic-sch03-01"
    assert "police" in alarm.sop
    assert alarm.ack_due == T0 + timedelta(seconds=60)
    assert alarm.resolve_due == T0 + timedelta(minutes=30)
    assert not alarm.is_drill
    assert opened.notify
    assert opened.linkage.snapshot_cameras == ("cam-sch03-gate", "cam-sch03-yard")
    assert opened.history.action is AlarmAction.OPEN
    assert opened.history.details["event_id"] == str(press.event_id)
    assert opened.history.details["rule"] == "panic_press"


def test_same_event_evaluated_twice_gives_the_same_alarm_id() -> None:
    press = event("panic.press", device="panic-sch03-01")
    first = only_open(run(press, SCHOOL_PANIC)).alarm.id
    second = only_open(run(press, SCHOOL_PANIC)).alarm.id
    other = only_open(run(event("panic.press", device="panic-sch03-01"), SCHOOL_PANIC)).alarm.id
    assert first == second != other


@pytest.mark.parametrize("kind", ["onvif.intrusion", "onvif.line_crossing"])
def test_onvif_intrusion_opens_p2_security_with_own_snapshot(kind: str) -> None:
    opened = only_open(run(event(kind), GATE_CAMERA))
    assert (opened.alarm.priority, opened.alarm.category) == (Priority(2), AlarmCategory.SECURITY)
    assert opened.alarm.type == "intrusion"
    assert opened.alarm.title == "Intrusion detected: Nanjing Rd crossing"
    assert opened.linkage.snapshot_cameras == ("cam-0042", "cam-0043")


@pytest.mark.parametrize(
    ("kind", "type_"),
    [
        ("onvif.tamper", "tamper"),
        ("onvif.video_loss", "video_loss"),
        ("vqd.signal_loss", "video_loss"),
    ],
)
def test_tamper_and_video_loss_are_p2(kind: str, type_: str) -> None:
    opened = only_open(run(event(kind), GATE_CAMERA))
    assert (opened.alarm.type, opened.alarm.priority) == (type_, Priority(2))


def test_quality_fault_is_p4_maintenance_per_fault_kind() -> None:
    blur = only_open(run(event("vqd.blur"), GATE_CAMERA)).alarm
    dark = only_open(run(event("vqd.too_dark"), GATE_CAMERA)).alarm
    assert (blur.priority, blur.category) == (Priority(4), AlarmCategory.MAINTENANCE)
    assert blur.title == "Picture quality fault (vqd.blur): Nanjing Rd crossing"
    assert blur.dedup_key != dark.dedup_key


def test_recovery_and_unknown_events_open_nothing() -> None:
    for kind in ("vqd.ok", "health.online", "onvif.motion", "broadcast.status"):
        assert run(event(kind), GATE_CAMERA) == []


def test_repeats_within_the_window_update_one_alarm_quietly() -> None:
    opened = only_open(run(event("onvif.intrusion"), GATE_CAMERA)).alarm
    current = {opened.dedup_key: opened}
    for minute in (1, 2, 3):
        after = timedelta(minutes=minute)
        decisions = run(event("onvif.intrusion", after=after), GATE_CAMERA, current, after)
        assert len(decisions) == 1
        update = decisions[0]
        assert isinstance(update, UpdateAlarm)
        assert update.alarm.id == opened.id
        assert not update.notify  # grouped: inside the 5-minute window
        assert update.history.action is AlarmAction.REPEAT
        current = {update.alarm.dedup_key: update.alarm}
    final = current[opened.dedup_key]
    assert (final.count, final.last_seen_at, final.revision) == (4, T0 + timedelta(minutes=3), 4)


def test_repeat_after_a_quiet_spell_is_announced_again() -> None:
    opened = only_open(run(event("onvif.intrusion"), GATE_CAMERA)).alarm
    after = timedelta(minutes=30)
    decisions = run(
        event("onvif.intrusion", after=after), GATE_CAMERA, {opened.dedup_key: opened}, after
    )
    assert isinstance(decisions[0], UpdateAlarm)
    assert decisions[0].notify
    assert decisions[0].alarm.count == 2


def test_p1_repeat_is_never_grouped() -> None:
    press = event("panic.press", device="panic-sch03-01")
    opened = only_open(run(press, SCHOOL_PANIC)).alarm
    again = event("panic.press", device="panic-sch03-01", after=timedelta(seconds=5))
    decisions = run(again, SCHOOL_PANIC, {opened.dedup_key: opened}, timedelta(seconds=5))
    assert isinstance(decisions[0], UpdateAlarm)
    assert decisions[0].notify
    assert decisions[0].alarm.count == 2


def test_a_finished_alarm_with_the_same_key_does_not_swallow_a_new_trigger() -> None:
    opened = only_open(run(event("onvif.intrusion"), GATE_CAMERA)).alarm
    gone, _ = apply(opened, "false_alarm", "op", T0 + timedelta(minutes=1))
    after = timedelta(minutes=2)
    fresh = only_open(
        run(event("onvif.intrusion", after=after), GATE_CAMERA, {gone.dedup_key: gone}, after)
    )
    assert fresh.alarm.id != opened.id
    assert fresh.alarm.count == 1


def test_device_offline_then_online_auto_closes_with_a_recorded_reason() -> None:
    offline = only_open(run(event("health.offline"), GATE_CAMERA)).alarm
    assert (offline.priority, offline.category) == (Priority(3), AlarmCategory.MAINTENANCE)
    acknowledged, _ = apply(offline, "acknowledge", "op", T0 + timedelta(minutes=1))
    after = timedelta(minutes=20)
    decisions = run(
        event("health.online", after=after),
        GATE_CAMERA,
        {acknowledged.dedup_key: acknowledged},
        after,
    )
    assert len(decisions) == 1
    close = decisions[0]
    assert isinstance(close, CloseAlarm)
    assert close.alarm.state is AlarmState.CLOSED
    assert close.alarm.closed_reason == "auto-closed: device recovered (health.online)"
    assert close.history.action is AlarmAction.AUTO_CLOSE
    assert close.history.actor == "system"
    assert close.history.from_state is AlarmState.ACKNOWLEDGED
    assert close.history.details["event_kind"] == "health.online"


def test_recovery_closes_only_that_devices_maintenance_alarms() -> None:
    blur = only_open(run(event("vqd.blur"), GATE_CAMERA)).alarm
    offline = only_open(run(event("health.offline"), GATE_CAMERA)).alarm
    intrusion = only_open(run(event("onvif.intrusion"), GATE_CAMERA)).alarm
    other_cam = only_open(run(event("vqd.blur", device="cam-0099"), None)).alarm
    alarms = {a.dedup_key: a for a in (blur, offline, intrusion, other_cam)}

    closed_by_vqd_ok = run(event("vqd.ok"), GATE_CAMERA, alarms)
    assert [d.alarm.id for d in closed_by_vqd_ok] == [blur.id]

    closed_by_online = run(event("health.online"), GATE_CAMERA, alarms)
    assert {d.alarm.id for d in closed_by_online} == {blur.id, offline.id}
    assert all(isinstance(d, CloseAlarm) for d in closed_by_online)


def test_drill_press_is_flagged_and_kept_apart_from_real_alarms() -> None:
    real = only_open(run(event("panic.press", device="panic-sch03-01"), SCHOOL_PANIC)).alarm
    drill_event = event("panic.press", device="panic-sch03-01", drill=True)
    drill = only_open(run(drill_event, SCHOOL_PANIC, {real.dedup_key: real})).alarm
    assert drill.is_drill
    assert drill.dedup_key == "drill:panic:panic-sch03-01"
    assert drill.id != real.id


def test_drill_flag_must_be_a_real_boolean() -> None:
    opened = only_open(run(event("panic.press", device="panic-sch03-01", drill="yes"), None))
    assert not opened.alarm.is_drill


def test_unknown_device_still_raises_the_alarm_with_its_id_as_name() -> None:
    opened = only_open(run(event("panic.press", device="panic-x"), None))
    assert opened.alarm.title == "Panic alarm: panic-x"
    assert opened.alarm.jurisdiction is None
    assert opened.linkage.snapshot_cameras == ()


def _rules(yaml_text: str) -> RuleSet:
    return RuleSet.model_validate(yaml.safe_load(yaml_text))


SITE_RULES = """
rules:
  - name: perimeter_night
    match:
      kinds: ["onvif.*"]
      exclude_kinds: ["onvif.motion"]
      device_kinds: [camera]
      projects: [sharp_eyes]
      payload_equals: {zone: perimeter, armed: true}
    type: perimeter
    priority: 2
    category: security
    title: "Perimeter {payload.zone} breach at {device_name} ({jurisdiction})"
    dedup_key: "{type}:{device_id}:{payload.zone}"
    dedup_window: 120
    linkage:
      snapshot_device: true
      broadcast:
        message: "Warning: you are in a restricted area at {device_name}."
        speakers: [spk-0001]
        volume: 80
"""


def test_site_rules_from_yaml_filter_by_kind_device_project_and_payload() -> None:
    rules = _rules(SITE_RULES)
    speaker_cam = DeviceContext(
        device_id="cam-0042",
        kind="camera",
        project="sharp_eyes",
        jurisdiction="310101001",
        name="Nanjing Rd crossing",
        linked_speakers=("spk-0042",),
    )
    hit = event("onvif.intrusion", zone="perimeter", armed=True)
    [opened] = evaluate(hit, speaker_cam, {}, rules, T0)
    assert isinstance(opened, OpenAlarm)
    assert opened.alarm.title == "Perimeter perimeter breach at Nanjing Rd crossing (310101001)"
    assert opened.alarm.dedup_key == "perimeter:cam-0042:perimeter"
    assert opened.linkage.broadcast_speakers == ("spk-0001", "spk-0042")
    assert opened.linkage.broadcast_message == (
        "Warning: you are in a restricted area at Nanjing Rd crossing."
    )
    assert opened.linkage.broadcast_volume == 80

    misses = [
        event("onvif.motion", zone="perimeter", armed=True),  # excluded kind
        event("onvif.intrusion", zone="yard", armed=True),  # other payload
        event("onvif.intrusion", zone="perimeter", armed=1),  # 1 is not true
        event("panic.press", zone="perimeter", armed=True),  # kind
    ]
    for ev in misses:
        assert evaluate(ev, speaker_cam, {}, rules, T0) == []
    other_project = DeviceContext(device_id="cam-0042", kind="camera", project="cloud_eye")
    assert evaluate(hit, other_project, {}, rules, T0) == []
    assert evaluate(hit, None, {}, rules, T0) == []


def test_dedup_window_from_yaml_is_seconds() -> None:
    assert _rules(SITE_RULES).rules[0].dedup_window == timedelta(seconds=120)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"title": "Breach at {device.__class__}"}, "unknown placeholder"),
        ({"title": "Breach at {payload}"}, "payload.<field>"),
        ({"title": "Breach at {device_name"}, "malformed braces"),
        ({"priority": 0}, "greater than or equal to 1"),
        ({"priority": 5}, "less than or equal to 4"),
        ({"auto_close_on": ["health.online"]}, "only for maintenance rules"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
        ({"type": "Bad Type"}, "String should match pattern"),
    ],
)
def test_bad_rule_config_is_refused_with_a_reason(patch: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "name": "r1",
        "match": {"kinds": ["onvif.intrusion"]},
        "type": "intrusion",
        "priority": 2,
        "category": "security",
        "title": "Intrusion at {device_name}",
    }
    with pytest.raises(ValidationError, match=message):
        AlarmRule.model_validate({**base, **patch})


def test_rule_names_must_be_unique() -> None:
    rule = DEFAULT_RULES.rules[0].model_dump()
    with pytest.raises(ValidationError, match="used twice"):
        RuleSet.model_validate({"rules": [rule, rule]})


def test_default_rules_round_trip_through_their_config_form() -> None:
    dumped = DEFAULT_RULES.model_dump(mode="json")
    assert RuleSet.model_validate(dumped) == DEFAULT_RULES


def test_first_matching_rule_wins_and_disabled_rules_are_skipped() -> None:
    panic = DEFAULT_RULES.rules[0]
    quiet_copy = panic.model_copy(update={"name": "panic_quiet", "priority": 3})
    disabled = panic.model_copy(update={"name": "panic_off", "enabled": False, "priority": 4})
    decisions = evaluate(
        event("panic.press", device="p1"), None, {}, [disabled, quiet_copy, panic], T0
    )
    assert only_open(decisions).alarm.priority == Priority(3)


def test_sla_policy_sets_the_stored_deadlines() -> None:
    policy = SlaPolicy.model_validate(
        {
            "targets": {
                "1": {"ack": 30, "resolve": 600},
                "2": {"ack": 60, "resolve": 600},
                "3": {"ack": 60, "resolve": 600},
                "4": {"ack": 60, "resolve": "PT2H"},
            }
        }
    )
    [opened] = evaluate(event("panic.press", device="p1"), None, {}, DEFAULT_RULES, T0, sla=policy)
    assert opened.alarm.ack_due == T0 + timedelta(seconds=30)
    assert opened.alarm.resolve_due == T0 + timedelta(minutes=10)


def test_evaluate_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(event("panic.press"), None, {}, DEFAULT_RULES, T0.replace(tzinfo=None))


@pytest.mark.parametrize("kind", ["onvif.intrusion", "onvif.tamper", "onvif.video_loss"])
def test_onvif_condition_ending_opens_nothing(kind: str) -> None:
    assert run(event(kind, state=False), GATE_CAMERA) == []
    assert len(run(event(kind, state=True), GATE_CAMERA)) == 1


def test_retained_message_never_opens_an_alarm_but_still_closes_one() -> None:
    replayed = event("health.offline", retained=True)
    assert run(replayed, GATE_CAMERA) == []
    offline = only_open(run(event("health.offline"), GATE_CAMERA)).alarm
    back = event("health.online", retained=True)
    recovered = run(back, GATE_CAMERA, {offline.dedup_key: offline})
    assert [type(d) for d in recovered] == [CloseAlarm]


def test_rule_set_kind_index_agrees_with_trying_every_rule() -> None:
    from alarms.rules import DEFAULT_RULES, _rules_for_kind

    for kind in ("panic.press", "vqd.blur", "vqd.ok", "health.online", "onvif.tamper", "x.y"):
        indexed = DEFAULT_RULES.for_kind(kind)
        assert indexed == _rules_for_kind(DEFAULT_RULES.rules, kind)
        assert DEFAULT_RULES.for_kind(kind) is indexed  # worked out once
    candidates, closing = DEFAULT_RULES.for_kind("vqd.ok")
    assert candidates == ()  # vqd.ok is excluded from the quality-fault rule
    assert {rule.name for rule in closing} == {"quality_fault"}
