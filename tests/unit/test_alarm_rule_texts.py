"""Alarm titles and SOPs per language: rules render every language they have templates for."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from alarms import DEFAULT_RULES, AlarmCategory, AlarmRule, DeviceContext, OpenAlarm, evaluate
from alarms.rules import EventMatch
from alarms.texts import kind_name
from camera_registry.events import DeviceEvent
from tests.unit.alarm_factories import T0

GATE = DeviceContext(
    device_id="cam-0042", kind="camera", project=None, jurisdiction="150207001", name="赛汗 北门"
)
BUTTON = DeviceContext(
    device_id="btn-1", kind="panic", project=None, jurisdiction="150207001", name="第一小学 大门"
)


def opened(kind: str, device: DeviceContext, **payload: Any) -> OpenAlarm:
    ev = DeviceEvent(time=T0, device_id=device.device_id, kind=kind, payload=payload)
    decisions = evaluate(ev, device, {}, DEFAULT_RULES, T0)
    assert len(decisions) == 1 and isinstance(decisions[0], OpenAlarm)
    return decisions[0]


def test_a_panic_alarm_opens_with_its_chinese_and_english_texts() -> None:
    decision = opened("panic.press", BUTTON)
    texts = decision.history.details["texts"]
    assert texts["zh-CN"]["title"] == "一键报警：第一小学 大门"
    assert texts["en"]["title"] == "Panic alarm: 第一小学 大门"
    assert "调派最近的警力" in texts["zh-CN"]["sop"]
    assert "police" in texts["en"]["sop"]
    # The stored title and SOP stay as they were for integrations that read them.
    assert decision.alarm.title == "Panic alarm: 第一小学 大门"
    assert "police" in decision.alarm.sop


def test_a_quality_fault_names_the_fault_in_the_operators_words() -> None:
    decision = opened("vqd.blur", GATE)
    texts = decision.history.details["texts"]
    assert texts["zh-CN"]["title"] == "画面质量故障（模糊）：赛汗 北门"
    assert texts["en"]["title"] == "Picture quality fault (blur): 赛汗 北门"
    assert decision.alarm.title == "Picture quality fault (vqd.blur): 赛汗 北门"


@pytest.mark.parametrize("rule", DEFAULT_RULES.rules, ids=lambda r: r.name)
def test_every_default_rule_speaks_chinese_and_english(rule: AlarmRule) -> None:
    assert {"zh-CN", "en"} <= rule.title_i18n.keys()
    assert "zh-CN" in rule.sop_i18n
    texts = rule.texts({"device_name": "设备", "kind": "vqd.snow"}, {})
    assert any("\u4e00" <= ch <= "\u9fff" for ch in texts["zh-CN"]["title"] + texts["zh-CN"]["sop"])


def test_a_rule_without_language_templates_opens_without_texts() -> None:
    rule = AlarmRule(
        name="custom",
        match=EventMatch(kinds=["panic.press"]),
        type="panic",
        priority=1,
        category=AlarmCategory.EMERGENCY,
        title="Press {device_name}",
    )
    ev = DeviceEvent(time=T0, device_id="btn-1", kind="panic.press", payload={})
    decision = evaluate(ev, BUTTON, {}, [rule], T0)[0]
    assert isinstance(decision, OpenAlarm)
    assert "texts" not in decision.history.details


def test_bad_language_templates_are_refused() -> None:
    base: dict[str, Any] = {
        "name": "custom",
        "match": {"kinds": ["panic.press"]},
        "type": "panic",
        "priority": 1,
        "category": "emergency",
        "title": "Press",
    }
    with pytest.raises(ValidationError, match="not a language tag"):
        AlarmRule.model_validate({**base, "title_i18n": {"chinese!": "按下"}})
    with pytest.raises(ValidationError, match="unknown placeholder"):
        AlarmRule.model_validate({**base, "title_i18n": {"zh-CN": "按下 {password}"}})
    with pytest.raises(ValidationError, match=r"1\.\.4000"):
        AlarmRule.model_validate({**base, "sop_i18n": {"zh-CN": "  "}})


def test_unknown_event_kinds_keep_their_code() -> None:
    assert kind_name("vqd.snow", "zh-CN") == "雪花噪点"
    assert kind_name("vendor.thing", "zh-CN") == "vendor.thing"
    assert kind_name("vqd.snow", "fr") == "vqd.snow"
