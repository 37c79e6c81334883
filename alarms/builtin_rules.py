"""The alarm rules a fresh hub starts with, with their operator titles and SOPs in
zh-CN and en; a site changes or adds rules by name in its configuration.

Data only, built from the models of `alarms.rules` (which still offers
`DEFAULT_RULES` for the callers that import it from there).
"""

from __future__ import annotations

from datetime import timedelta

from alarms.models import (
    AlarmCategory,
)
from alarms.rules import AlarmRule, EventMatch, LinkageConfig, PayloadValue, RuleSet

__all__ = ["DEFAULT_RULES"]

_SNAPSHOT_SELF = LinkageConfig(snapshot_device=True, snapshot_linked_cameras=True)
# ONVIF events are property states: the same kind reports the condition starting
# (state true) and ending (state false); only a start raises an alarm.
_ONVIF_ON: dict[str, PayloadValue] = {"state": True}
_VIDEO_LOSS_SOP = (
    "Check the neighbouring cameras for cut cables or sabotage. "
    "If nothing is seen, assign it to maintenance with the time it went dark."
)
_VIDEO_LOSS_SOP_ZH = (
    "查看周边摄像机，排查线缆被剪断或人为破坏。若未发现异常，指派运维并注明黑屏时间。"
)
_VIDEO_LOSS_TITLE = {"zh-CN": "视频丢失：{device_name}", "en": "Video lost: {device_name}"}

_GB28181_SOP = (
    "Check the snapshot and live view of the channel. If the alarm is real, dispatch "
    "the grid officer or police; otherwise mark it a false alarm and note the cause."
)


def _gb28181_alarm_rule(priority: int) -> AlarmRule:
    """GB/T 28181 device alarms keep the priority the device gave them (1-4)."""
    return AlarmRule(
        name=f"gb28181_alarm_p{priority}",
        match=EventMatch(kinds=["gb28181.alarm.*"], payload_equals={"priority": priority}),
        type="device_alarm",
        priority=priority,
        category=AlarmCategory.SECURITY,
        title="{payload.type_text}: {device_name}",
        sop=_GB28181_SOP,
        title_i18n={
            "zh-CN": "{payload.type_text_zh}：{device_name}",
            "en": "{payload.type_text}: {device_name}",
        },
        sop_i18n={
            "zh-CN": (
                "查看该通道的抓拍与实时视频。如属实，调派网格员或警力；否则标记为误报并注明原因。"
            )
        },
        dedup_key="{type}:{device_id}:{kind}",
        dedup_window=timedelta(minutes=5),
        linkage=_SNAPSHOT_SELF,
    )


#: The rules a fresh hub starts with; a site changes or adds rules by name in its config.
DEFAULT_RULES = RuleSet(
    rules=[
        AlarmRule(
            name="panic_press",
            match=EventMatch(kinds=["panic.press"]),
            type="panic",
            priority=1,
            category=AlarmCategory.EMERGENCY,
            title="Panic alarm: {device_name}",
            sop=(
                "1. Open the linked cameras and look at the scene. "
                "2. Call the school security desk at once. "
                "3. Dispatch the nearest police unit and stay on the line until it arrives. "
                "4. Record what you saw and did in the alarm notes."
            ),
            title_i18n={"zh-CN": "一键报警：{device_name}", "en": "Panic alarm: {device_name}"},
            sop_i18n={
                "zh-CN": (
                    "1. 打开联动摄像机查看现场。2. 立即致电学校安保室。"
                    "3. 调派最近的警力，保持通话直至到达现场。4. 在告警备注中记录所见与处置。"
                )
            },
            dedup_window=timedelta(minutes=5),
            linkage=LinkageConfig(snapshot_linked_cameras=True),
        ),
        AlarmRule(
            name="onvif_intrusion",
            match=EventMatch(
                kinds=["onvif.intrusion", "onvif.line_crossing"], payload_equals=_ONVIF_ON
            ),
            type="intrusion",
            priority=2,
            category=AlarmCategory.SECURITY,
            title="Intrusion detected: {device_name}",
            sop=(
                "Check the snapshot and live view. If a person is in the protected area, "
                "dispatch the grid officer or police; otherwise mark it a false alarm "
                "and note the cause (animal, shadow, vehicle)."
            ),
            title_i18n={
                "zh-CN": "区域入侵：{device_name}",
                "en": "Intrusion detected: {device_name}",
            },
            sop_i18n={
                "zh-CN": (
                    "查看抓拍与实时视频。如有人员进入防区，调派网格员或警力；"
                    "否则标记为误报并注明原因（动物、阴影、车辆）。"
                )
            },
            dedup_window=timedelta(minutes=5),
            linkage=_SNAPSHOT_SELF,
        ),
        AlarmRule(
            name="camera_tamper",
            match=EventMatch(kinds=["onvif.tamper"], payload_equals=_ONVIF_ON),
            type="tamper",
            priority=2,
            category=AlarmCategory.SECURITY,
            title="Camera tampering: {device_name}",
            sop=(
                "Look at the neighbouring cameras for the person responsible. "
                "Dispatch the grid officer to inspect the camera and note its condition."
            ),
            title_i18n={
                "zh-CN": "摄像机遭遮挡破坏：{device_name}",
                "en": "Camera tampering: {device_name}",
            },
            sop_i18n={"zh-CN": "通过周边摄像机查找破坏者。调派网格员现场检查摄像机并记录其状况。"},
            linkage=LinkageConfig(snapshot_linked_cameras=True),
        ),
        AlarmRule(
            name="onvif_video_loss",
            match=EventMatch(kinds=["onvif.video_loss"], payload_equals=_ONVIF_ON),
            type="video_loss",
            priority=2,
            category=AlarmCategory.SECURITY,
            title="Video lost: {device_name}",
            sop=_VIDEO_LOSS_SOP,
            title_i18n=_VIDEO_LOSS_TITLE,
            sop_i18n={"zh-CN": _VIDEO_LOSS_SOP_ZH},
            linkage=LinkageConfig(snapshot_linked_cameras=True),
        ),
        AlarmRule(
            name="onvif_alarm_input",
            match=EventMatch(kinds=["onvif.digital_input"], payload_equals=_ONVIF_ON),
            type="alarm_input",
            priority=2,
            category=AlarmCategory.SECURITY,
            title="Alarm input triggered: {device_name}",
            sop=(
                "A detector wired to the camera's alarm input (door contact, beam, "
                "panic button) went off. Check the snapshot and live view, call the site, "
                "and dispatch the grid officer or police if someone is there."
            ),
            title_i18n={
                "zh-CN": "报警输入触发：{device_name}",
                "en": "Alarm input triggered: {device_name}",
            },
            sop_i18n={
                "zh-CN": (
                    "接入摄像机报警输入的探测器（门磁、对射、紧急按钮）已触发。"
                    "查看抓拍与实时视频，致电现场；如有人员，调派网格员或警力。"
                )
            },
            dedup_window=timedelta(minutes=5),
            linkage=_SNAPSHOT_SELF,
        ),
        AlarmRule(
            name="camera_hardware_fault",
            match=EventMatch(
                kinds=["onvif.storage_failure", "onvif.hardware_failure"],
                payload_equals=_ONVIF_ON,
            ),
            type="hardware_fault",
            priority=3,
            category=AlarmCategory.MAINTENANCE,
            title="Camera hardware fault ({kind}): {device_name}",
            sop=(
                "The camera reports a failed part (storage card, fan, power). Assign it to "
                "the maintenance contractor; recordings on the camera may be missing."
            ),
            title_i18n={
                "zh-CN": "摄像机硬件故障（{kind_name}）：{device_name}",
                "en": "Camera hardware fault ({kind_name}): {device_name}",
            },
            sop_i18n={
                "zh-CN": (
                    "摄像机报告部件故障（存储卡、风扇、电源）。指派运维单位处理；机内录像可能缺失。"
                )
            },
            dedup_key="{type}:{device_id}:{kind}",
            dedup_window=timedelta(hours=1),
            linkage=LinkageConfig(snapshot_linked_cameras=False),
        ),
        AlarmRule(
            name="vqd_signal_loss",
            match=EventMatch(kinds=["vqd.signal_loss"]),
            type="video_loss",
            priority=2,
            category=AlarmCategory.SECURITY,
            title="Video lost: {device_name}",
            sop=_VIDEO_LOSS_SOP,
            title_i18n=_VIDEO_LOSS_TITLE,
            sop_i18n={"zh-CN": _VIDEO_LOSS_SOP_ZH},
            linkage=LinkageConfig(snapshot_linked_cameras=True),
        ),
        AlarmRule(
            name="panic_button_offline",
            match=EventMatch(kinds=["health.offline"], device_kinds=["alarm_point"]),
            type="device_offline",
            priority=2,
            category=AlarmCategory.MAINTENANCE,
            title="Panic button offline: {device_name}",
            sop=(
                "The school's panic button cannot raise an alarm while it is offline. "
                "1. Call the school security desk: tell them the button is out of service "
                "and agree how they will call for help meanwhile. "
                "2. Assign the repair (power, network, battery) to the maintenance contractor "
                "today. Closes itself when the button is back online."
            ),
            title_i18n={
                "zh-CN": "一键报警按钮离线：{device_name}",
                "en": "Panic button offline: {device_name}",
            },
            sop_i18n={
                "zh-CN": (
                    "按钮离线期间无法报警。1. 立即致电学校安保室，告知按钮暂停使用，"
                    "并约定期间的求助方式。2. 当天指派运维单位检修（供电、网络、电池）。"
                    "按钮恢复在线后告警自动关闭。"
                )
            },
            dedup_window=timedelta(hours=1),
            auto_close_on=["health.online"],
            linkage=LinkageConfig(snapshot_linked_cameras=False),
        ),
        AlarmRule(
            name="device_offline",
            match=EventMatch(kinds=["health.offline"]),
            type="device_offline",
            priority=3,
            category=AlarmCategory.MAINTENANCE,
            title="Device offline: {device_name}",
            sop=(
                "Check power and network at the site; assign to the maintenance contractor. "
                "Closes itself when the device is back online."
            ),
            title_i18n={"zh-CN": "设备离线：{device_name}", "en": "Device offline: {device_name}"},
            sop_i18n={
                "zh-CN": "检查现场供电与网络，指派运维单位处理。设备恢复在线后告警自动关闭。"
            },
            dedup_window=timedelta(hours=1),
            auto_close_on=["health.online"],
            linkage=LinkageConfig(snapshot_linked_cameras=False),
        ),
        AlarmRule(
            name="panic_tamper",
            match=EventMatch(kinds=["panic.tamper"]),
            type="tamper",
            priority=2,
            category=AlarmCategory.SECURITY,
            title="Panic button tampered with: {device_name}",
            sop=(
                "Open the linked cameras and look at the button. Call the school security "
                "desk and ask them to check it; dispatch the grid officer if nobody answers."
            ),
            title_i18n={
                "zh-CN": "一键报警按钮被拆动：{device_name}",
                "en": "Panic button tampered with: {device_name}",
            },
            sop_i18n={
                "zh-CN": (
                    "打开联动摄像机查看按钮。致电学校安保室请其检查；无人接听时调派网格员到场。"
                )
            },
            linkage=LinkageConfig(snapshot_linked_cameras=True),
        ),
        AlarmRule(
            name="low_battery",
            match=EventMatch(kinds=["device.low_battery"]),
            type="low_battery",
            priority=4,
            category=AlarmCategory.MAINTENANCE,
            title="Battery low: {device_name}",
            sop="Assign a battery change to the maintenance contractor.",
            title_i18n={"zh-CN": "电池电量低：{device_name}", "en": "Battery low: {device_name}"},
            sop_i18n={"zh-CN": "指派运维单位更换电池。"},
            dedup_window=timedelta(days=1),
            linkage=LinkageConfig(snapshot_linked_cameras=False),
        ),
        AlarmRule(
            name="credentials_rejected",
            match=EventMatch(kinds=["device.credentials_rejected"]),
            type="credentials_rejected",
            priority=3,
            category=AlarmCategory.MAINTENANCE,
            title="Credentials rejected: {device_name}",
            sop=(
                "The camera refuses the login the hub has stored for it (or demands one and "
                "none is stored), so the hub cannot see its picture. Check the stored login "
                "(user name and password) against the camera's and correct it in the "
                "registry. Closes itself when the camera accepts the login again."
            ),
            title_i18n={
                "zh-CN": "登录凭据被拒绝：{device_name}",
                "en": "Credentials rejected: {device_name}",
            },
            sop_i18n={
                "zh-CN": (
                    "摄像机拒绝平台保存的登录账号（或要求登录而平台未保存账号），平台无法查看其画面。"
                    "请核对平台保存的用户名和密码与摄像机一致，并在设备台账中更正。"
                    "摄像机重新接受登录后告警自动关闭。"
                )
            },
            dedup_window=timedelta(hours=1),
            auto_close_on=["device.credentials_accepted", "health.online"],
            linkage=LinkageConfig(snapshot_linked_cameras=False),
        ),
        AlarmRule(
            name="quality_fault",
            match=EventMatch(kinds=["vqd.*"], exclude_kinds=["vqd.ok", "vqd.signal_loss"]),
            type="quality_fault",
            priority=4,
            category=AlarmCategory.MAINTENANCE,
            title="Picture quality fault ({kind}): {device_name}",
            sop=(
                "Assign to the maintenance contractor (clean, refocus or re-aim the camera). "
                "Closes itself when the picture is good again."
            ),
            title_i18n={
                "zh-CN": "画面质量故障（{kind_name}）：{device_name}",
                "en": "Picture quality fault ({kind_name}): {device_name}",
            },
            sop_i18n={
                "zh-CN": (
                    "指派运维单位处理（清洁镜头、重新对焦或调整角度）。画面恢复正常后告警自动关闭。"
                )
            },
            dedup_key="{type}:{device_id}:{kind}",
            dedup_window=timedelta(hours=1),
            auto_close_on=["vqd.ok", "health.online"],
            linkage=LinkageConfig(snapshot_device=True, snapshot_linked_cameras=False),
        ),
        *(_gb28181_alarm_rule(priority) for priority in (1, 2, 3, 4)),
    ]
)
