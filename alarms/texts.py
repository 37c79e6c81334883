"""Alarm texts in the operators' languages: names of event kinds, language codes.

Pure tables; rules render their per-language title and SOP templates with them.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LANGUAGES", "LANGUAGE_PATTERN", "kind_name"]

#: The languages the console speaks (BCP 47 tags); rules may carry templates for others.
LANGUAGES = ("zh-CN", "en")
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

_KIND_NAMES: Mapping[str, Mapping[str, str]] = {
    "zh-CN": {
        "panic.press": "一键报警",
        "onvif.intrusion": "区域入侵",
        "onvif.line_crossing": "越界",
        "onvif.tamper": "遮挡破坏",
        "onvif.video_loss": "视频丢失",
        "onvif.digital_input": "报警输入",
        "onvif.storage_failure": "存储故障",
        "onvif.hardware_failure": "硬件故障",
        "health.offline": "离线",
        "panic.tamper": "按钮拆动",
        "device.low_battery": "电量低",
        "device.credentials_rejected": "登录凭据被拒绝",
        "health.online": "恢复在线",
        "vqd.blur": "模糊",
        "vqd.colour_cast": "偏色",
        "vqd.frozen": "画面冻结",
        "vqd.low_contrast": "对比度低",
        "vqd.occlusion": "遮挡",
        "vqd.scene_change": "场景变更",
        "vqd.signal_loss": "信号丢失",
        "vqd.snow": "雪花噪点",
        "vqd.too_bright": "过亮",
        "vqd.too_dark": "过暗",
        "vqd.ok": "画面正常",
    },
    "en": {
        "panic.press": "panic button",
        "onvif.intrusion": "intrusion",
        "onvif.line_crossing": "line crossing",
        "onvif.tamper": "tampering",
        "onvif.video_loss": "video loss",
        "onvif.digital_input": "alarm input",
        "onvif.storage_failure": "storage failure",
        "onvif.hardware_failure": "hardware failure",
        "health.offline": "offline",
        "panic.tamper": "button tampering",
        "device.low_battery": "low battery",
        "device.credentials_rejected": "credentials rejected",
        "health.online": "back online",
        "vqd.blur": "blur",
        "vqd.colour_cast": "colour cast",
        "vqd.frozen": "frozen picture",
        "vqd.low_contrast": "low contrast",
        "vqd.occlusion": "occlusion",
        "vqd.scene_change": "scene changed",
        "vqd.signal_loss": "signal loss",
        "vqd.snow": "snow",
        "vqd.too_bright": "too bright",
        "vqd.too_dark": "too dark",
        "vqd.ok": "picture good",
    },
}


def kind_name(kind: str, language: str) -> str:
    """The operator's word for an event kind in `language`; the kind itself when unknown."""
    return _KIND_NAMES.get(language, {}).get(kind, kind)
