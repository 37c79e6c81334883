"""GB/T 28181 alarm methods and types (2016 table, with the 2022 additions) as event kinds.

`AlarmMethod` says where an alarm comes from (1 phone, 2 device, 3 SMS, 4 GPS,
5 video analysis, 6 device fault, 7 other); `AlarmType` (in `Info`) narrows it
down per method. Each combination maps to one `AlarmKind`: the event kind suffix
(`gb28181.alarm.<slug>`) and the text operators read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["ALARM_METHODS", "ALARM_TYPES", "AlarmKind", "classify_alarm"]


@dataclass(frozen=True, slots=True)
class AlarmKind:
    """What an alarm is: `slug` for the event kind, `text_en`/`text_zh` for people."""

    slug: str
    text_en: str
    text_zh: str


ALARM_METHODS: Mapping[int, AlarmKind] = MappingProxyType(
    {
        1: AlarmKind("phone", "telephone alarm", "电话报警"),
        2: AlarmKind("device", "device alarm", "设备报警"),
        3: AlarmKind("sms", "SMS alarm", "短信报警"),
        4: AlarmKind("gps", "GPS alarm", "GPS报警"),
        5: AlarmKind("video", "video alarm", "视频报警"),
        6: AlarmKind("device_fault", "device fault", "设备故障报警"),
        7: AlarmKind("other", "other alarm", "其他报警"),
    }
)

#: (method, type) -> kind. Method 2 (device), 5 (video analysis) and 6 (fault) have types.
ALARM_TYPES: Mapping[tuple[int, int], AlarmKind] = MappingProxyType(
    {
        (2, 1): AlarmKind("video_loss", "video loss", "视频丢失报警"),
        (2, 2): AlarmKind("tamper", "device tamper (opened or removed)", "设备防拆报警"),
        (2, 3): AlarmKind("disk_full", "storage full", "存储设备磁盘满报警"),
        (2, 4): AlarmKind("high_temperature", "device too hot", "设备高温报警"),
        (2, 5): AlarmKind("low_temperature", "device too cold", "设备低温报警"),
        (5, 1): AlarmKind("manual", "manual video alarm", "人工视频报警"),
        (5, 2): AlarmKind("motion", "motion detected", "运动目标检测报警"),
        (5, 3): AlarmKind("left_object", "object left behind", "遗留物检测报警"),
        (5, 4): AlarmKind("removed_object", "object removed", "物体移除检测报警"),
        (5, 5): AlarmKind("tripwire", "tripwire crossed", "绊线检测报警"),
        (5, 6): AlarmKind("intrusion", "intrusion", "入侵检测报警"),
        (5, 7): AlarmKind("retrograde", "moving the wrong way", "逆行检测报警"),
        (5, 8): AlarmKind("loitering", "loitering", "徘徊检测报警"),
        (5, 9): AlarmKind("flow_count", "people/vehicle flow count", "流量统计报警"),
        (5, 10): AlarmKind("crowd_density", "crowd density", "密度检测报警"),
        (5, 11): AlarmKind("video_anomaly", "video anomaly (tampering, blur)", "视频异常检测报警"),
        (5, 12): AlarmKind("fast_moving", "fast movement", "快速移动报警"),
        (6, 1): AlarmKind("disk_fault", "storage disk fault", "存储设备磁盘故障报警"),
        (6, 2): AlarmKind("fan_fault", "storage fan fault", "存储设备风扇故障报警"),
    }
)


def classify_alarm(method: int, alarm_type: int | None) -> AlarmKind:
    """The kind of an alarm with this method and (optional) type."""
    if alarm_type is not None:
        known = ALARM_TYPES.get((method, alarm_type))
        if known is not None:
            return known
    return ALARM_METHODS.get(method, ALARM_METHODS[7])
