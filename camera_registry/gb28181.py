"""GB/T 28181 20-digit device codes: validation, parts, kinds, and free-id generation.

A GB/T 28181 code (GB/T 28181-2016, appendix D) is twenty decimal digits::

    34 02 00 00 | 00 | 132 | 0 | 000001
    -- center code (8) ------  industry (2)  type (3)  network (1)  serial (6)

* **center code** (digits 1-8): digits 1-6 are a GB/T 2260 administrative division
  code (province 2, city 2, county 2), digits 7-8 the grassroots unit (e.g. a
  police station). This module checks the structure of the division code:

  - the province prefix is one of the real GB/T 2260 provinces (11 Beijing ... 82 Macao);
  - the city digits are ``00`` (a province-level center), ``01``-``70`` (cities,
    prefectures, leagues, autonomous prefectures) or ``90`` (county-level units
    administered directly by the province); ``71``-``89`` and ``91``-``99`` do not exist;
  - a province-level center (city ``00``) has county ``00`` too. County digits
    ``01``-``99`` are all in use (districts, counties, banners, county-level cities).

  Whether a structurally valid code names a division that exists today is not
  checked: divisions are renamed and merged every year, and old codes stay in
  cameras' configuration for a decade.
* **industry code** (digits 9-10): 00-03 public security (street / community /
  internal / other), 04-07 traffic, 08 city management, 09 health and environment,
  10 inspection and customs, 11 education, the rest extension or reserved. Any two
  digits are accepted.
* **type code** (digits 11-13), by range:

  - 111-130 front-end main devices: 111 DVR, 112 video server, 113 encoder,
    114 decoder, 115 video matrix, 116 audio matrix, 117 alarm controller, 118 NVR,
    119-130 extension;
  - 131-199 front-end peripherals: 131 camera, 132 IP camera, 133 display,
    134 alarm input, 135 alarm output, 136 voice input, 137 voice output,
    138 mobile transmission device, 139 other peripheral, 140-199 extension;
  - 200-299 platform devices: 200 central SIP signalling server (the platform),
    201 web application server, 202 media distribution server, 203 proxy server,
    204 security server, 205 alarm server, 206 database server, 207 GIS server,
    208 management server, 209 access gateway, 210 media storage server,
    211 signalling security routing gateway, 215 business group, 216 virtual
    organisation, the rest extension;
  - 300-399 center users, 400-499 terminal users, 500-999 other and extension types.

  Codes 000-110 are not defined by the standard and are refused.
* **network code** (digit 14): 0-4 video/alarm private network, 5 public security
  network, 6 e-government network, 7 Internet, 8 social resources network,
  9 reserved. Any digit is accepted.
* **serial** (digits 15-20): the device's number within the above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from camera_registry._kinds import DeviceKind

__all__ = [
    "GB_ID_LENGTH",
    "KIND_DEFAULT_TYPE_CODES",
    "PROVINCE_CODES",
    "TYPE_CODE_KINDS",
    "TYPE_CODE_NAMES",
    "GbId",
    "GbTypeCategory",
    "is_gb_id",
    "looks_like_gb_id",
    "next_free_id",
    "type_category",
]

GB_ID_LENGTH = 20
_SERIAL_MAX = 999_999
_FIRST_DEFINED_TYPE = 111

#: GB/T 2260 province-level prefixes and their names.
PROVINCE_CODES: Mapping[str, str] = MappingProxyType(
    {
        "11": "北京市",
        "12": "天津市",
        "13": "河北省",
        "14": "山西省",
        "15": "内蒙古自治区",
        "21": "辽宁省",
        "22": "吉林省",
        "23": "黑龙江省",
        "31": "上海市",
        "32": "江苏省",
        "33": "浙江省",
        "34": "安徽省",
        "35": "福建省",
        "36": "江西省",
        "37": "山东省",
        "41": "河南省",
        "42": "湖北省",
        "43": "湖南省",
        "44": "广东省",
        "45": "广西壮族自治区",
        "46": "海南省",
        "50": "重庆市",
        "51": "四川省",
        "52": "贵州省",
        "53": "云南省",
        "54": "西藏自治区",
        "61": "陕西省",
        "62": "甘肃省",
        "63": "青海省",
        "64": "宁夏回族自治区",
        "65": "新疆维吾尔自治区",
        "71": "台湾省",
        "81": "香港特别行政区",
        "82": "澳门特别行政区",
    }
)

#: Names of the type codes the standard defines individually.
TYPE_CODE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        111: "DVR",
        112: "video server",
        113: "encoder",
        114: "decoder",
        115: "video switching matrix",
        116: "audio switching matrix",
        117: "alarm controller",
        118: "NVR",
        131: "camera",
        132: "IP camera",
        133: "display",
        134: "alarm input device",
        135: "alarm output device",
        136: "voice input device",
        137: "voice output device",
        138: "mobile transmission device",
        139: "other peripheral",
        200: "central SIP signalling server",
        201: "web application server",
        202: "media distribution server",
        203: "proxy server",
        204: "security server",
        205: "alarm server",
        206: "database server",
        207: "GIS server",
        208: "management server",
        209: "access gateway",
        210: "media storage server",
        211: "signalling security routing gateway",
        215: "business group",
        216: "virtual organisation",
        300: "center user",
        400: "terminal user",
    }
)

#: Which registry kind a type code implies. Codes not listed imply no kind
#: (directory nodes such as 215/216, users, displays, decoders ...).
TYPE_CODE_KINDS: Mapping[int, DeviceKind] = MappingProxyType(
    {
        111: DeviceKind.NVR,
        118: DeviceKind.NVR,
        131: DeviceKind.CAMERA,
        132: DeviceKind.CAMERA,
        # An alarm controller is the box the panic buttons hang off; operators treat
        # it as the alarm point.
        117: DeviceKind.ALARM_POINT,
        134: DeviceKind.ALARM_POINT,
        # Sirens, strobes and speakers are all things the hub makes sound or light with.
        135: DeviceKind.BROADCAST_UNIT,
        137: DeviceKind.BROADCAST_UNIT,
        **{code: DeviceKind.PLATFORM for code in range(200, 212)},
    }
)

#: The type code used when generating an id for a device of each kind.
KIND_DEFAULT_TYPE_CODES: Mapping[DeviceKind, int] = MappingProxyType(
    {
        DeviceKind.CAMERA: 132,
        DeviceKind.ALARM_POINT: 134,
        DeviceKind.BROADCAST_UNIT: 137,
        DeviceKind.NVR: 118,
        DeviceKind.PLATFORM: 200,
    }
)


class GbTypeCategory(StrEnum):
    """The range a type code falls in."""

    FRONT_END_MAIN = "front_end_main"  # 111-130
    FRONT_END_PERIPHERAL = "front_end_peripheral"  # 131-199
    PLATFORM = "platform"  # 200-299
    CENTER_USER = "center_user"  # 300-399
    TERMINAL_USER = "terminal_user"  # 400-499
    OTHER = "other"  # 500-999


_CATEGORY_BOUNDS: tuple[tuple[int, GbTypeCategory], ...] = (
    (130, GbTypeCategory.FRONT_END_MAIN),
    (199, GbTypeCategory.FRONT_END_PERIPHERAL),
    (299, GbTypeCategory.PLATFORM),
    (399, GbTypeCategory.CENTER_USER),
    (499, GbTypeCategory.TERMINAL_USER),
    (999, GbTypeCategory.OTHER),
)


def type_category(type_code: int) -> GbTypeCategory:
    """Return the standard's range for `type_code` (111-999), else raise ValueError."""
    if not _FIRST_DEFINED_TYPE <= type_code <= 999:
        raise ValueError(
            f"type code {type_code:03d} is not defined by GB/T 28181 (types are 111-999)"
        )
    for upper, category in _CATEGORY_BOUNDS:
        if type_code <= upper:
            return category
    raise AssertionError("unreachable: bounds end at 999")  # pragma: no cover


def _is_ascii_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def looks_like_gb_id(value: str) -> bool:
    """True if `value` is twenty ASCII digits, i.e. is meant as a GB/T 28181 code."""
    return len(value) == GB_ID_LENGTH and _is_ascii_digits(value)


def _center_code_problem(center: str) -> str | None:
    """Why an 8-digit center code is structurally wrong, or None if it is fine."""
    if len(center) != 8 or not _is_ascii_digits(center):
        return f"center code {center!r} must be 8 digits"
    province, city, county = center[0:2], center[2:4], center[4:6]
    if province not in PROVINCE_CODES:
        return f"province code {province} (digits 1-2) is not a GB/T 2260 province"
    city_number = int(city)
    if not (city_number <= 70 or city_number == 90):
        return f"city code {city} (digits 3-4) does not exist in GB/T 2260 (00-70 or 90)"
    if city == "00" and county != "00":
        return (
            f"county code {county} (digits 5-6) needs a city code; a province-level center has 00"
        )
    return None


def _gb_id_problem(value: str) -> str | None:
    """Why `value` is not a valid GB/T 28181 code, or None if it is one."""
    if len(value) != GB_ID_LENGTH or not _is_ascii_digits(value):
        return f"a GB/T 28181 code is {GB_ID_LENGTH} digits, got {value!r}"
    center_problem = _center_code_problem(value[0:8])
    if center_problem is not None:
        return center_problem
    type_code = int(value[10:13])
    if type_code < _FIRST_DEFINED_TYPE:
        return f"type code {value[10:13]} (digits 11-13) is not defined by GB/T 28181 (111-999)"
    return None


def is_gb_id(value: str) -> bool:
    """True if `value` is a structurally valid GB/T 28181 code."""
    return isinstance(value, str) and _gb_id_problem(value) is None


@dataclass(frozen=True, slots=True)
class GbId:
    """A validated 20-digit GB/T 28181 device code; `str(gb_id)` gives the digits back."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise TypeError(f"GbId takes a str, got {type(self.value).__name__}")
        problem = _gb_id_problem(self.value)
        if problem is not None:
            raise ValueError(f"invalid GB/T 28181 code {self.value!r}: {problem}")

    @classmethod
    def compose(cls, center: str, industry: str, type_code: int, network: int, serial: int) -> GbId:
        """Build a code from its parts; raises ValueError on any bad part."""
        if len(industry) != 2 or not _is_ascii_digits(industry):
            raise ValueError(f"industry code {industry!r} must be 2 digits")
        if not 0 <= network <= 9:
            raise ValueError(f"network code {network} must be one digit 0-9")
        if not 0 <= serial <= _SERIAL_MAX:
            raise ValueError(f"serial {serial} must be 0-{_SERIAL_MAX}")
        if not 0 <= type_code <= 999:
            raise ValueError(f"type code {type_code} must be 3 digits")
        center_problem = _center_code_problem(center)
        if center_problem is not None:
            raise ValueError(center_problem)
        return cls(f"{center}{industry}{type_code:03d}{network}{serial:06d}")

    def __str__(self) -> str:
        return self.value

    @property
    def center_code(self) -> str:
        """Digits 1-8: the center (administrative division + grassroots unit)."""
        return self.value[0:8]

    @property
    def admin_division_code(self) -> str:
        """Digits 1-6: the GB/T 2260 administrative division code."""
        return self.value[0:6]

    @property
    def province_code(self) -> str:
        """Digits 1-2: the province."""
        return self.value[0:2]

    @property
    def province_name(self) -> str:
        """The province's name (e.g. 内蒙古自治区)."""
        return PROVINCE_CODES[self.province_code]

    @property
    def city_code(self) -> str:
        """Digits 3-4: the city, prefecture or league within the province."""
        return self.value[2:4]

    @property
    def county_code(self) -> str:
        """Digits 5-6: the district, county or banner within the city."""
        return self.value[4:6]

    @property
    def grassroots_code(self) -> str:
        """Digits 7-8: the grassroots unit (e.g. police station)."""
        return self.value[6:8]

    @property
    def industry_code(self) -> str:
        """Digits 9-10: the industry the device serves."""
        return self.value[8:10]

    @property
    def type_code(self) -> int:
        """Digits 11-13: the device type."""
        return int(self.value[10:13])

    @property
    def network_code(self) -> int:
        """Digit 14: the network the device sits on."""
        return int(self.value[13])

    @property
    def serial(self) -> str:
        """Digits 15-20 as written."""
        return self.value[14:20]

    @property
    def serial_number(self) -> int:
        """Digits 15-20 as a number."""
        return int(self.value[14:20])

    @property
    def prefix(self) -> str:
        """Digits 1-14: everything but the serial."""
        return self.value[0:14]

    @property
    def type_category(self) -> GbTypeCategory:
        """Which range of the standard the type code falls in."""
        return type_category(self.type_code)

    @property
    def type_name(self) -> str | None:
        """The standard's name for the type code, if it names it individually."""
        return TYPE_CODE_NAMES.get(self.type_code)

    @property
    def device_kind(self) -> DeviceKind | None:
        """The registry kind the type code implies, or None if it implies none."""
        return TYPE_CODE_KINDS.get(self.type_code)


def next_free_id(
    center: str, industry: str, type_code: int, network: int, taken: Iterable[str]
) -> GbId:
    """Return the code with the lowest serial (from 000001) not in `taken`.

    Only codes in `taken` that share the center, industry, type and network count;
    anything else in `taken` (free ids, other types) is ignored. Raises ValueError
    on bad parts or when all 999,999 serials are taken.
    """
    first = GbId.compose(center, industry, type_code, network, 1)
    prefix = first.prefix
    used: set[int] = set()
    for existing in taken:
        candidate = str(existing)
        if candidate.startswith(prefix) and looks_like_gb_id(candidate):
            used.add(int(candidate[14:]))
    serial = 1
    while serial in used:
        serial += 1
    if serial > _SERIAL_MAX:
        raise ValueError(f"no free serial left for {prefix}: all {_SERIAL_MAX} are taken")
    return GbId.compose(center, industry, type_code, network, serial)
