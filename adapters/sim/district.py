"""A simulated district modelled on the reference deployment. Pure: no I/O, no clock.

The reference is Baotou's 九原区 (GB/T 2260 code 150207): eight 苏木镇/街道 (street
offices, towns and one sumu), their communities and villages, 624 grids and 1,758
micro-grids; 4,437 Sharp Eyes and 1,877 cloud-eye cameras; 78 one-touch panic buttons
in 35 schools; 18 cloud broadcast units. `build_district` makes a tree of the same shape
(scaled down by default, the real counts with `DistrictSpec.full()`), with devices placed
around each town's centre, GB/T 28181 ids, addresses, and each school's buttons linked to
the cameras at its gates. The same seed always gives the same district.

Codes follow the national statistics division codes (统计用区划代码): the towns carry
their real 12-digit codes (``150207001000`` 沙河街道 …); a community or village is the
town's 9-digit code plus three digits (001-199 communities, 200-399 villages, as the
statistics codes number 居委会 and 村委会), then three digits per grid level. Town names,
codes and the community/village names listed per town are the published ones; the
other village names, roads, schools and every device are invented for the simulation,
and town centres are approximate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from adapters.sim.streams import sim_stream_urls
from camera_registry.gb28181 import GbId
from camera_registry.jurisdiction import JurisdictionLevel, JurisdictionNode
from camera_registry.models import DeviceIn, DeviceKind, Project

__all__ = [
    "CITY_NAME",
    "DISTRICT_CODE",
    "DISTRICT_NAME",
    "TOWNS",
    "BroadcastSite",
    "District",
    "DistrictSpec",
    "School",
    "Town",
    "build_district",
]

DISTRICT_CODE = "150207"
DISTRICT_NAME = "九原区"
CITY_NAME = "包头市"
_CITY_ADDRESS = "内蒙古自治区包头市九原区"


class Town(NamedTuple):
    """A 苏木镇/街道 of the district: real code and name, approximate centre."""

    code: str
    name: str
    latitude: float
    longitude: float
    kind: str  # street | town | sumu
    communities: tuple[str, ...] = ()
    villages: tuple[str, ...] = ()


# Codes and names: the statistics division codes for 150207 (沙河 001, 赛汗 002, 萨如拉
# 003, 白音席勒 004, 麻池 103, 哈林格尔 105, 哈业胡同 110, 阿嘎如泰 202), checked
# against the published list. The three street offices east of 青山/昆都仑 lie apart
# from the rest of the district, which wraps the city to the south and west.
TOWNS: tuple[Town, ...] = (
    Town(
        "150207001000",
        "沙河街道",
        40.6050,
        109.9850,
        "street",
        ("万达", "华融", "花园", "韩庆坝第一", "黄金", "育才", "天绿", "振翔", "恒大"),
        ("西脑包", "梁家营子"),
    ),
    Town(
        "150207002000",
        "赛汗街道",
        40.6250,
        109.9550,
        "street",
        ("果园", "青年", "建华", "富力", "鹿园"),
        ("井卜石", "尹六窑子"),
    ),
    Town(
        "150207003000",
        "萨如拉街道",
        40.5850,
        109.8150,
        "street",
        ("萨如拉第一", "萨如拉第二", "萨如拉第三", "萨如拉第四"),
    ),
    Town(
        "150207004000",
        "白音席勒街道",
        40.6500,
        110.0050,
        "street",
        ("龙宇", "开元", "中慧", "兴元"),
        ("二道沙河南", "二道沙河北", "二道沙河西", "三道沙河", "黄草洼", "前营子", "庙圪堵"),
    ),
    Town("150207103000", "麻池镇", 40.5900, 109.9000, "town"),
    Town("150207105000", "哈林格尔镇", 40.5400, 109.7000, "town"),
    Town("150207110000", "哈业胡同镇", 40.6000, 109.5400, "town"),
    Town("150207202000", "阿嘎如泰苏木", 40.6400, 109.6400, "sumu"),
)

#: Invented stems for communities and villages beyond the published names.
_COMMUNITY_STEMS = (
    "新都市",
    "建设路",
    "友谊",
    "阳光",
    "和平",
    "团结",
    "幸福",
    "振华",
    "朝阳",
    "滨河",
    "九原",
    "民族",
)
_VILLAGE_STEMS = (
    "东营子",
    "西营子",
    "新光",
    "古城湾",
    "南滩",
    "北圪堵",
    "前进",
    "红星",
    "黄河",
    "新建",
    "召湾",
    "柳树营",
)
#: Invented roads (the simulation's addresses; not a street directory).
_ROADS = (
    "建设路",
    "建华南路",
    "万青路",
    "友谊大街",
    "民族东路",
    "青年路",
    "工业路",
    "沙河西路",
    "九原大街",
    "银河大街",
    "稀土大街",
    "黄河大街",
    "滨河路",
    "新建路",
    "哈屯高勒路",
    "麻池路",
    "110国道",
    "210国道",
)
_CORNERS = ("东北角", "西北角", "东南角", "西南角")
_GATES = ("南门", "北门", "东门", "西门")
_SCHOOL_KINDS = ("小学", "中学", "实验小学", "第二小学", "幼儿园", "初级中学")
_VENDORS = (
    ("海康威视", "DS-2CD3T46WDV3-I3"),
    ("大华", "DH-IPC-HFW2431S"),
    ("宇视", "IPC-B314-APKZ"),
    ("华为", "M2140-10-EI"),
)
_PANIC_VENDOR = ("中安消", "YJBJ-2000")
_BROADCAST_VENDOR = ("迪士普", "DSP9311")
#: The reference district's device counts (what `DistrictSpec.full()` builds).
_SHARP_EYES = 4437
_CLOUD_EYE = 1877


@dataclass(frozen=True, slots=True)
class DistrictSpec:
    """How big the simulated district is. Defaults: scaled down, same shape."""

    villages_per_town: int = 3
    grids: int = 48
    micro_grids: int = 136
    cameras: int = 300
    cloud_eye_share: float = 0.3
    schools: int = 35
    panic_buttons: int = 78
    broadcast_units: int = 18
    cameras_per_school: int = 2

    def __post_init__(self) -> None:
        towns = len(TOWNS)
        villages = towns * self.villages_per_town
        if self.villages_per_town < 1:
            raise ValueError("villages_per_town must be >= 1")
        if self.grids < villages:
            raise ValueError(f"grids ({self.grids}) must be at least the villages ({villages})")
        if self.micro_grids < self.grids:
            raise ValueError("micro_grids must be at least grids")
        if not 0.0 <= self.cloud_eye_share <= 1.0:
            raise ValueError("cloud_eye_share must be within 0..1")
        if self.schools < 1 or self.panic_buttons < self.schools:
            raise ValueError("every school needs at least one panic button")
        if self.cameras < self.schools * self.cameras_per_school:
            raise ValueError("not enough cameras for the school gates")
        if self.broadcast_units < 0 or self.cameras_per_school < 1:
            raise ValueError("broadcast_units >= 0 and cameras_per_school >= 1")

    @classmethod
    def full(cls) -> DistrictSpec:
        """The reference district at its real counts: 624 grids, 1,758 micro-grids,
        4,437 Sharp Eyes and 1,877 cloud-eye cameras."""
        cameras = _SHARP_EYES + _CLOUD_EYE
        return cls(
            villages_per_town=10,
            grids=624,
            micro_grids=1758,
            cameras=cameras,
            cloud_eye_share=_CLOUD_EYE / cameras,
        )


@dataclass(frozen=True, slots=True)
class School:
    """A school with panic buttons and the cameras at its gates."""

    code: str
    name: str
    jurisdiction: str
    latitude: float
    longitude: float
    address: str
    buttons: tuple[str, ...]
    cameras: tuple[str, ...]
    town: str = ""


@dataclass(frozen=True, slots=True)
class BroadcastSite:
    """Where a broadcast unit stands: at a school, or covering a zone."""

    unit: str
    zone: str
    school: str | None


@dataclass(frozen=True, slots=True)
class District:
    """The simulated district: the tree, every device, and the schools."""

    nodes: tuple[JurisdictionNode, ...]
    devices: tuple[DeviceIn, ...]
    schools: tuple[School, ...]
    broadcast_sites: tuple[BroadcastSite, ...] = field(default=())

    def of_kind(self, kind: DeviceKind) -> list[DeviceIn]:
        """The devices of one kind, in registry order."""
        return [device for device in self.devices if device.kind == kind]

    @property
    def cameras(self) -> list[DeviceIn]:
        """Every camera."""
        return self.of_kind(DeviceKind.CAMERA)

    @property
    def panic_buttons(self) -> list[DeviceIn]:
        """Every school panic button."""
        return self.of_kind(DeviceKind.ALARM_POINT)

    @property
    def broadcast_units(self) -> list[DeviceIn]:
        """Every cloud broadcast unit."""
        return self.of_kind(DeviceKind.BROADCAST_UNIT)

    def level(self, level: JurisdictionLevel) -> list[JurisdictionNode]:
        """The nodes at one level of the tree."""
        return [node for node in self.nodes if node.level == level]


@dataclass(slots=True)
class _Place:
    node: JurisdictionNode
    latitude: float
    longitude: float
    town_index: int


def _spread(total: int, buckets: int) -> list[int]:
    """`total` split over `buckets` as evenly as possible, larger shares first."""
    base, extra = divmod(total, buckets)
    return [base + (1 if index < extra else 0) for index in range(buckets)]


def _jitter(rng: random.Random, lat: float, lon: float, metres: float) -> tuple[float, float]:
    # 1e-5 degrees of latitude is about 1.1 m; longitude shrinks by cos(40.6°) ≈ 0.76.
    dlat = rng.uniform(-metres, metres) / 111_000
    dlon = rng.uniform(-metres, metres) / 84_000
    return round(lat + dlat, 6), round(lon + dlon, 6)


def _tree(
    spec: DistrictSpec, rng: random.Random
) -> tuple[list[JurisdictionNode], list[_Place], dict[str, str]]:
    """The jurisdiction nodes, the micro-grids with positions, and village names by code."""
    nodes = [JurisdictionNode(code=DISTRICT_CODE, name=DISTRICT_NAME, level="district")]
    micro_places: list[_Place] = []
    village_names: dict[str, str] = {}
    villages_total = len(TOWNS) * spec.villages_per_town
    grids_per_village = _spread(spec.grids, villages_total)
    grid_index = 0
    grid_sizes: list[int] = _spread(spec.micro_grids, spec.grids)
    for town_index, town in enumerate(TOWNS):
        nodes.append(
            JurisdictionNode(
                code=town.code, name=town.name, level="town", parent_code=DISTRICT_CODE
            )
        )
        for v, (village_code, village_name) in enumerate(
            _villages(town, spec.villages_per_town, rng)
        ):
            village_names[village_code] = village_name
            nodes.append(
                JurisdictionNode(
                    code=village_code, name=village_name, level="village", parent_code=town.code
                )
            )
            v_lat, v_lon = _jitter(
                rng, town.latitude, town.longitude, 1200 if town.kind == "street" else 4000
            )
            for g in range(grids_per_village[town_index * spec.villages_per_town + v]):
                grid_code = f"{village_code}{g + 1:03d}"
                nodes.append(
                    JurisdictionNode(
                        code=grid_code,
                        name=f"{village_name}第{g + 1}网格",
                        level="grid",
                        parent_code=village_code,
                    )
                )
                g_lat, g_lon = _jitter(rng, v_lat, v_lon, 400)
                for m in range(grid_sizes[grid_index]):
                    micro = JurisdictionNode(
                        code=f"{grid_code}{m + 1:03d}",
                        name=f"{village_name}第{g + 1}网格{m + 1}号微网格",
                        level="micro_grid",
                        parent_code=grid_code,
                    )
                    nodes.append(micro)
                    m_lat, m_lon = _jitter(rng, g_lat, g_lon, 150)
                    micro_places.append(_Place(micro, m_lat, m_lon, town_index))
                grid_index += 1
    return nodes, micro_places, village_names


def _villages(town: Town, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` (code, name) communities and villages of `town`, published names first.

    Street offices are mostly communities, towns mostly villages; a sumu's are 嘎查.
    """
    street = town.kind == "street"
    village_suffix = "嘎查" if town.kind == "sumu" else "村"
    published = [(True, f"{stem}社区") for stem in town.communities]
    published_villages = [(False, f"{stem}{village_suffix}") for stem in town.villages]
    names = published + published_villages if street else published_villages + published
    stems = [
        stem
        for stem in (_COMMUNITY_STEMS if street else _VILLAGE_STEMS)
        if stem not in town.communities + town.villages
    ]
    rng.shuffle(stems)
    suffix = "社区" if street else village_suffix
    while len(names) < count:
        lap, index = divmod(len(names), len(stems))
        names.append((street, f"{stems[index]}{'' if lap == 0 else lap + 1}{suffix}"))
    numbers = {True: 0, False: 199}  # 居委会 001-199, 村委会 200-399
    out: list[tuple[str, str]] = []
    for community, name in names[:count]:
        numbers[community] += 1
        out.append((f"{town.code[:9]}{numbers[community]:03d}", name))
    return out


def _address(rng: random.Random) -> tuple[str, str]:
    """(device name, postal address) of a street-corner camera position."""
    first, second = rng.sample(_ROADS, 2)
    corner = rng.choice(_CORNERS)
    return f"{first}与{second}口{corner}", f"{_CITY_ADDRESS}{first}与{second}交叉口{corner}"


class _Ids:
    """GB/T 28181 ids: center = district + town (grassroots unit), serial per prefix."""

    def __init__(self) -> None:
        self._serials: dict[tuple[str, str, int], int] = {}

    def next(self, town_index: int, industry: str, type_code: int) -> str:
        center = f"{DISTRICT_CODE}{town_index + 1:02d}"
        key = (center, industry, type_code)
        serial = self._serials.get(key, 0) + 1
        self._serials[key] = serial
        return GbId.compose(center, industry, type_code, 0, serial).value


def build_district(
    seed: int = 2024,
    spec: DistrictSpec | None = None,
    *,
    stream_urls: Callable[[str], list[str]] = sim_stream_urls,
) -> District:
    """The simulated district for `seed`: jurisdiction nodes (root first) and devices.

    `stream_urls` gives each camera's RTSP URLs (simulated streams by default).
    """
    spec = spec or DistrictSpec()
    # Not for secrets: a seeded generator makes the same district every time.
    rng = random.Random(seed)  # noqa: S311
    nodes, micro_places, village_names = _tree(spec, rng)
    ids = _Ids()
    devices: list[DeviceIn] = []

    def camera(place: _Place, name: str, address: str, project: Project, tags: list[str]) -> str:
        industry = "01" if project is Project.CLOUD_EYE else "00"
        device_id = ids.next(place.town_index, industry, 132)
        lat, lon = _jitter(rng, place.latitude, place.longitude, 60)
        vendor, model = rng.choice(_VENDORS)
        devices.append(
            DeviceIn(
                id=device_id,
                name=name,
                kind=DeviceKind.CAMERA,
                project=project,
                jurisdiction=place.node.code,
                latitude=lat,
                longitude=lon,
                address=address,
                vendor=vendor,
                model=model,
                rtsp_urls=stream_urls(device_id),
                tags=tags,
            )
        )
        return device_id

    school_places = rng.sample(micro_places, min(spec.schools, len(micro_places)))
    while len(school_places) < spec.schools:  # a tiny tree: several schools per micro-grid
        school_places.append(rng.choice(micro_places))
    buttons_per_school = _spread(spec.panic_buttons, spec.schools)
    schools: list[School] = []
    for index, place in enumerate(school_places):
        village = village_names[place.node.code[:12]]
        stem = village.removesuffix("社区").removesuffix("嘎查").removesuffix("村")
        school_name = f"{CITY_NAME}{DISTRICT_NAME}{stem}"
        school_name += _SCHOOL_KINDS[index % len(_SCHOOL_KINDS)]
        code = f"sch{index + 1:02d}"
        road = rng.choice(_ROADS)
        address = f"{_CITY_ADDRESS}{road}{rng.randint(1, 199)}号"
        gate_cameras = tuple(
            camera(
                place,
                f"{school_name}{_GATES[gate] if gate < len(_GATES) else f'{gate + 1}号门'}",
                address,
                Project.CLOUD_EYE if gate % 2 else Project.SHARP_EYES,
                ["校园周边", code],
            )
            for gate in range(spec.cameras_per_school)
        )
        buttons = []
        for number in range(buttons_per_school[index]):
            device_id = ids.next(place.town_index, "11", 134)
            lat, lon = _jitter(rng, place.latitude, place.longitude, 40)
            where = ("门卫室", "校长室", "教学楼一层", "操场")[number % 4]
            devices.append(
                DeviceIn(
                    id=device_id,
                    name=f"{school_name}{where}一键报警",
                    kind=DeviceKind.ALARM_POINT,
                    project=Project.SCHOOL_ALARM,
                    jurisdiction=place.node.code,
                    latitude=lat,
                    longitude=lon,
                    address=address,
                    vendor=_PANIC_VENDOR[0],
                    model=_PANIC_VENDOR[1],
                    mqtt_device_id=f"panic-{code}-{number + 1:02d}",
                    tags=["校园一键报警", code],
                    linked_cameras=list(gate_cameras),
                )
            )
            buttons.append(device_id)
        schools.append(
            School(
                code=code,
                name=school_name,
                jurisdiction=place.node.code,
                latitude=place.latitude,
                longitude=place.longitude,
                address=address,
                buttons=tuple(buttons),
                cameras=gate_cameras,
                town=TOWNS[place.town_index].code,
            )
        )

    street_cameras = spec.cameras - spec.schools * spec.cameras_per_school
    # The share is of all cameras: the school gates' cloud-eye cameras count towards it.
    at_gates = sum(1 for d in devices if d.project == Project.CLOUD_EYE)
    cloud_eye = max(0, round(spec.cameras * spec.cloud_eye_share) - at_gates)
    for number in range(street_cameras):
        place = rng.choice(micro_places)
        project = Project.CLOUD_EYE if number < cloud_eye else Project.SHARP_EYES
        name, address = _address(rng)
        if project is Project.CLOUD_EYE:
            village = village_names[place.node.code[:12]]
            name = f"{village}{rng.randint(1, 40)}号楼{rng.choice(('出入口', '院内', '停车场'))}"
        camera(place, name, address, project, [])

    sites = _broadcast_units(spec, rng, ids, schools, devices)
    return District(tuple(nodes), tuple(devices), tuple(schools), tuple(sites))


def _broadcast_units(
    spec: DistrictSpec,
    rng: random.Random,
    ids: _Ids,
    schools: Sequence[School],
    devices: list[DeviceIn],
) -> list[BroadcastSite]:
    """Broadcast units: the first half at schools, the rest covering town squares."""
    sites: list[BroadcastSite] = []
    at_schools = min(len(schools), (spec.broadcast_units + 1) // 2)
    cameras = [d for d in devices if d.kind == DeviceKind.CAMERA and not d.tags]
    for number in range(spec.broadcast_units):
        mqtt_id = f"bcast-{number + 1:02d}"
        if number < at_schools:
            school = schools[number * len(schools) // at_schools]
            town_index = next(i for i, t in enumerate(TOWNS) if t.code == school.town)
            lat, lon = _jitter(rng, school.latitude, school.longitude, 30)
            name = f"{school.name}校园广播"
            jurisdiction, address, zone = school.jurisdiction, school.address, school.code
            linked = list(school.cameras)
            tags = ["校园广播", school.code]
            school_code: str | None = school.code
        else:
            town_index = (number - at_schools) % len(TOWNS)
            town = TOWNS[town_index]
            lat, lon = _jitter(rng, town.latitude, town.longitude, 300)
            road = rng.choice(_ROADS)
            name = f"{town.name}{road}广场云广播"
            jurisdiction = town.code
            address = f"{_CITY_ADDRESS}{road}广场"
            zone = f"town{town_index + 1}"
            nearby = sorted(
                (c for c in cameras if c.jurisdiction and c.jurisdiction.startswith(town.code[:9])),
                key=lambda c: ((c.latitude or 0.0) - lat) ** 2 + ((c.longitude or 0.0) - lon) ** 2,
            )
            linked = [c.id for c in nearby[:2]]
            tags = ["应急广播", zone]
            school_code = None
        device_id = ids.next(town_index, "08", 137)
        devices.append(
            DeviceIn(
                id=device_id,
                name=name,
                kind=DeviceKind.BROADCAST_UNIT,
                project=Project.BROADCAST,
                jurisdiction=jurisdiction,
                latitude=lat,
                longitude=lon,
                address=address,
                vendor=_BROADCAST_VENDOR[0],
                model=_BROADCAST_VENDOR[1],
                mqtt_device_id=mqtt_id,
                tags=tags,
                linked_cameras=linked,
            )
        )
        sites.append(BroadcastSite(unit=device_id, zone=zone, school=school_code))
    return sites
