"""CAP alerts in the governance center's language: one <info> block per language."""

from __future__ import annotations

import pytest

from adapters.sinks import CapOptions, encode_alert, validate_alert
from tests.unit.test_cap import GATE, panic, parse, text

TEXTS = {
    "zh-CN": {"title": "一键报警：第三小学正门", "sop": "立即致电学校安保室；调派最近的警力。"},
    "en": {"title": "Panic alarm: No.3 Primary School main gate", "sop": "Call the school."},
}


def test_chinese_and_english_blocks_in_the_configured_order() -> None:
    alarm, entry = panic()
    options = CapOptions(sender="gw", languages=("zh-CN", "en-US"))
    root = parse(encode_alert(alarm, entry, options, location=GATE, texts=TEXTS))
    assert validate_alert(root) == []
    infos = root.findall("cap:info", {"cap": "urn:oasis:names:tc:emergency:cap:1.2"})
    assert [text(info, "cap:language") for info in infos] == ["zh-CN", "en-US"]
    chinese, english = infos
    assert text(chinese, "cap:headline") == "一键报警：第三小学正门"
    assert text(chinese, "cap:instruction") == "立即致电学校安保室；调派最近的警力。"
    description = text(chinese, "cap:description") or ""
    assert description.startswith("一键报警：第三小学正门。\n设备 ")
    assert "状态：新告警" in description and "共触发 1 次" in description
    # en-US takes the "en" texts (same primary language).
    assert text(english, "cap:headline") == "Panic alarm: No.3 Primary School main gate"
    assert text(english, "cap:instruction") == "Call the school."
    # Both blocks carry the same codes and area.
    for info in infos:
        assert text(info, "cap:event") == "panic" and text(info, "cap:urgency") == "Immediate"
        assert text(info, "cap:area/cap:circle") is not None


def test_a_language_without_texts_falls_back_to_the_alarms_own() -> None:
    alarm, entry = panic()
    root = parse(encode_alert(alarm, entry, CapOptions(sender="gw", languages=("zh-CN",))))
    assert validate_alert(root) == []
    assert text(root, "cap:info/cap:language") == "zh-CN"
    assert text(root, "cap:info/cap:headline") == alarm.title
    assert text(root, "cap:info/cap:instruction") == alarm.sop


@pytest.mark.parametrize("language", ["", "zh CN", "中文", "zh_CN"])
def test_a_language_that_is_not_a_tag_is_refused(language: str) -> None:
    with pytest.raises(ValueError, match="CAP language"):
        CapOptions(sender="gw", languages=(language,))


def test_sink_config_takes_languages_and_refuses_a_bad_one() -> None:
    from pydantic import ValidationError

    from hub.alarms.config import SinkSettings

    sink = {"name": "police", "type": "cap", "url": "https://dispatch.example/cap"}
    assert SinkSettings.model_validate(sink).cap_languages == ["zh-CN", "en-US"]
    assert SinkSettings.model_validate({**sink, "cap_languages": ["zh-CN"]}).cap_languages == [
        "zh-CN"
    ]
    with pytest.raises(ValidationError, match="cap_languages"):
        SinkSettings.model_validate({**sink, "cap_languages": ["zh CN"]})
