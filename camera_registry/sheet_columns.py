"""The columns of a device sheet: keys, Chinese and English headers, accepted aliases and values.

Shared by the importer (`camera_registry.importer`) and the exporter
(`camera_registry.exporter`), so a sheet exported here imports to the same devices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from camera_registry._kinds import DeviceKind
from camera_registry.models import Project

__all__ = ["COLUMNS", "Column", "Lang"]

Lang = Literal["zh", "en"]


@dataclass(frozen=True, slots=True)
class Column:
    """One importable column: its key, its template headers, and accepted aliases."""

    key: str
    zh: str
    en: str
    required: bool
    note_zh: str
    note_en: str
    aliases: tuple[str, ...] = ()

    def header(self, lang: Lang) -> str:
        """The template header in `lang`."""
        return self.zh if lang == "zh" else self.en


#: The columns, in template order. English headers equal `DeviceIn` field names,
#: except ``username`` / ``password`` which fill ``credentials``.
COLUMNS: tuple[Column, ...] = (
    Column(
        "id",
        "设备编码",
        "id",
        True,
        "20位国标编码或自定义编码（字母、数字、_.-，最长64）",
        "GB/T 28181 20-digit code or a free id [A-Za-z0-9_.-]{1,64}",
        ("设备ID", "国标编码", "国标ID", "编码", "device_id", "code"),
    ),
    Column(
        "name",
        "设备名称",
        "name",
        True,
        "例：新华大街与中山路口东北角",
        "e.g. Xinhua Street / Zhongshan Road NE corner",
        ("名称", "点位名称", "device_name"),
    ),
    Column(
        "kind",
        "设备类型",
        "kind",
        False,
        "摄像机/报警点/广播终端/录像机/平台；国标编码可推断时可留空",
        "camera, alarm_point, broadcast_unit, nvr or platform; may be empty for GB ids",
        ("类型", "type", "device_type"),
    ),
    Column(
        "project",
        "所属项目",
        "project",
        False,
        "雪亮工程/云眼/校园一键报警/云广播/智慧安防小区或其他",
        "sharp_eyes, cloud_eye, school_alarm, broadcast, smart_community or free text",
        ("项目",),
    ),
    Column(
        "jurisdiction",
        "所属辖区",
        "jurisdiction",
        False,
        "辖区节点编码，例：150102001",
        "jurisdiction node code, e.g. 150102001",
        ("辖区", "辖区编码", "所属网格", "网格编码", "jurisdiction_code"),
    ),
    Column(
        "longitude",
        "经度",
        "longitude",
        False,
        "WGS-84，-180~180",
        "WGS-84, -180..180",
        ("lon", "lng"),
    ),
    Column("latitude", "纬度", "latitude", False, "WGS-84，-90~90", "WGS-84, -90..90", ("lat",)),
    Column("address", "安装地址", "address", False, "", "", ("地址", "安装位置", "location")),
    Column(
        "vendor",
        "厂商",
        "vendor",
        False,
        "例：海康威视",
        "e.g. Hikvision",
        ("生产厂商", "品牌", "manufacturer"),
    ),
    Column("model", "型号", "model", False, "", "", ("设备型号",)),
    Column("firmware", "固件版本", "firmware", False, "", "", ("固件", "firmware_version")),
    Column("serial", "序列号", "serial", False, "", "", ("设备序列号", "serial_number")),
    Column(
        "onvif_url",
        "ONVIF地址",
        "onvif_url",
        False,
        "例：http://10.1.2.3/onvif/device_service（不含用户名密码）",
        "e.g. http://10.1.2.3/onvif/device_service (no user:password@)",
        ("onvif",),
    ),
    Column(
        "rtsp_urls",
        "RTSP地址",
        "rtsp_urls",
        False,
        "多个用;分隔，不含用户名密码",
        "several separated by ';', no user:password@",
        ("视频流地址", "取流地址", "rtsp", "rtsp_url"),
    ),
    Column("mqtt_device_id", "MQTT设备ID", "mqtt_device_id", False, "", "", ("mqtt_id",)),
    Column(
        "username",
        "用户名",
        "username",
        False,
        "设备登录用户名",
        "device login name",
        ("登录用户名", "user"),
    ),
    Column(
        "password",
        "密码",
        "password",
        False,
        "设备登录密码，加密保存，不会导出",
        "device login password; stored encrypted, never exported",
        ("登录密码",),
    ),
    Column("tags", "标签", "tags", False, "多个用;分隔", "several separated by ';'", ()),
    Column(
        "enabled",
        "启用",
        "enabled",
        False,
        "是/否，留空为是",
        "true/false, empty means true",
        ("是否启用",),
    ),
    Column(
        "linked_cameras",
        "关联摄像机",
        "linked_cameras",
        False,
        "报警点、广播终端联动的摄像机编码，多个用;分隔",
        "camera ids for alarm points and broadcast units, separated by ';'",
        ("联动摄像机",),
    ),
)

_COLUMNS_BY_KEY: Mapping[str, Column] = MappingProxyType({c.key: c for c in COLUMNS})
_EXPORT_COLUMNS = tuple(c for c in COLUMNS if c.key not in ("username", "password"))
_URL_COLUMNS = frozenset({"onvif_url", "rtsp_urls"})
_SECRET_COLUMNS = frozenset({"password"})
_TEXT_ID_COLUMNS = frozenset({"id", "jurisdiction", "linked_cameras", "serial", "mqtt_device_id"})


def _header_key(text: str) -> str:
    """Fold a header so that 'ONVIF 地址（必填）', 'onvif_url' and 'Onvif-URL' compare."""
    folded = text.replace("\ufeff", "").strip().casefold()
    folded = re.sub(r"[（(【\[].*?[）)】\]]", "", folded)  # drop notes such as （必填）
    return re.sub(r"[\s_\-*：:]", "", folded)


_HEADER_LOOKUP: Mapping[str, str] = MappingProxyType(
    {
        _header_key(alias): column.key
        for column in COLUMNS
        for alias in (column.zh, column.en, column.key, *column.aliases)
    }
)
# Row-number or remark columns that sheets often carry; ignored.
_IGNORED_HEADERS = frozenset(
    _header_key(h) for h in ("序号", "编号序号", "no", "#", "备注", "remark")
)

_KIND_LABELS_ZH: Mapping[DeviceKind, str] = MappingProxyType(
    {
        DeviceKind.CAMERA: "摄像机",
        DeviceKind.ALARM_POINT: "报警点",
        DeviceKind.BROADCAST_UNIT: "广播终端",
        DeviceKind.NVR: "录像机",
        DeviceKind.PLATFORM: "平台",
    }
)
_KIND_VALUES: Mapping[str, DeviceKind] = MappingProxyType(
    {
        **{_header_key(kind.value): kind for kind in DeviceKind},
        **{_header_key(label): kind for kind, label in _KIND_LABELS_ZH.items()},
        **{
            _header_key(label): kind
            for kind, labels in {
                DeviceKind.CAMERA: ("摄像头", "网络摄像机", "枪机", "球机", "半球", "ipc"),
                DeviceKind.ALARM_POINT: (
                    "一键报警",
                    "报警按钮",
                    "一键报警按钮",
                    "报警输入",
                    "alarm",
                ),
                DeviceKind.BROADCAST_UNIT: ("广播", "音柱", "云广播", "ip音柱", "broadcast"),
                DeviceKind.NVR: ("dvr", "硬盘录像机", "网络硬盘录像机", "网络录像机"),
                DeviceKind.PLATFORM: ("下级平台", "上级平台", "视频平台"),
            }.items()
            for label in labels
        },
    }
)
_PROJECT_LABELS_ZH: Mapping[str, str] = MappingProxyType(
    {
        Project.SHARP_EYES: "雪亮工程",
        Project.CLOUD_EYE: "云眼",
        Project.SCHOOL_ALARM: "校园一键报警",
        Project.BROADCAST: "云广播",
        Project.SMART_COMMUNITY: "智慧安防小区",
    }
)
_PROJECT_VALUES: Mapping[str, str] = MappingProxyType(
    {
        **{_header_key(label): str(project) for project, label in _PROJECT_LABELS_ZH.items()},
        _header_key("云眼工程"): Project.CLOUD_EYE.value,
        _header_key("天网工程"): Project.SHARP_EYES.value,
        _header_key("一键报警"): Project.SCHOOL_ALARM.value,
        _header_key("智慧小区"): Project.SMART_COMMUNITY.value,
    }
)
_TRUE = frozenset({"是", "启用", "true", "yes", "y", "1", "t", "on", "√"})
_FALSE = frozenset({"否", "停用", "禁用", "false", "no", "n", "0", "f", "off", "×"})
_URL_SPLIT = re.compile(r"[;；\s]+")
_LIST_SPLIT = re.compile(r"[;；,，、\s]+")
_LINE_BREAKS = re.compile(r"[ \t]*[\r\n]+[ \t]*")
# Formula starts that a spreadsheet would evaluate. '+'/'-' alone are common in
# real data (negative numbers, "+86 ..."), so they count only before a function
# call, a DDE pipe or a sheet reference.
_FORMULA = re.compile(r"[=@]|[+\-]\s*[A-Za-z_][A-Za-z0-9_.]*\s*[(|!]")
_NEUTRALIZE_FIRST = frozenset("=+-@\t\r'")
