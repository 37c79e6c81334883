"""The simulated district: shape of the tree, device counts, ids, links, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from adapters.sim.district import DISTRICT_CODE, DistrictSpec, build_district
from adapters.sim.streams import SIM_STREAM_HOST, sim_device_of, sim_stream_urls
from camera_registry import DeviceKind, GbId, JurisdictionLevel, build_tree, distance_m
from camera_registry.geo import GeoPoint
from camera_registry.models import DeviceIn


def test_default_district_has_the_reference_device_families() -> None:
    district = build_district()
    assert len(district.level(JurisdictionLevel.TOWN)) == 8
    assert len(district.panic_buttons) == 78
    assert len(district.schools) == 35
    assert len(district.broadcast_units) == 18
    assert 200 <= len(district.cameras) <= 1000
    projects = Counter(camera.project for camera in district.cameras)
    assert set(projects) == {"sharp_eyes", "cloud_eye"}
    assert projects["sharp_eyes"] > projects["cloud_eye"]


def test_tree_is_valid_and_rooted_at_the_district() -> None:
    district = build_district()
    paths = build_tree(district.nodes)
    assert district.nodes[0].code == DISTRICT_CODE
    assert district.nodes[0].name == "九原区"
    town = district.level(JurisdictionLevel.TOWN)[0]
    assert paths[town.code] == f"/{DISTRICT_CODE}/{town.code}/"
    micro = district.level(JurisdictionLevel.MICRO_GRID)[0]
    assert len(paths[micro.code].strip("/").split("/")) == 5
    town_names = {node.name for node in district.level(JurisdictionLevel.TOWN)}
    assert "阿嘎如泰苏木" in town_names and "赛汗街道" in town_names


def test_towns_are_jiuyuans_eight_with_their_statistics_codes() -> None:
    towns = {node.code: node.name for node in build_district().level(JurisdictionLevel.TOWN)}
    assert DISTRICT_CODE == "150207"
    assert towns == {
        "150207001000": "沙河街道",
        "150207002000": "赛汗街道",
        "150207003000": "萨如拉街道",
        "150207004000": "白音席勒街道",
        "150207103000": "麻池镇",
        "150207105000": "哈林格尔镇",
        "150207110000": "哈业胡同镇",
        "150207202000": "阿嘎如泰苏木",
    }
    # Communities and villages carry the town's 9-digit code plus three digits.
    for village in build_district().level(JurisdictionLevel.VILLAGE):
        assert village.parent_code is not None
        assert len(village.code) == 12 and village.code[:9] == village.parent_code[:9]


def test_full_size_has_624_grids_and_1758_micro_grids() -> None:
    district = build_district(spec=DistrictSpec.full())
    build_tree(district.nodes)
    projects = Counter(camera.project for camera in district.cameras)
    assert projects == {"sharp_eyes": 4437, "cloud_eye": 1877}
    assert len(district.panic_buttons) == 78 and len(district.schools) == 35
    assert len(district.broadcast_units) == 18
    assert len(district.level(JurisdictionLevel.GRID)) == 624
    assert len(district.level(JurisdictionLevel.MICRO_GRID)) == 1758
    # Every grid has at least one micro-grid: the same shape as the scaled-down tree.
    parents = {node.parent_code for node in district.level(JurisdictionLevel.MICRO_GRID)}
    assert parents == {node.code for node in district.level(JurisdictionLevel.GRID)}


def test_same_seed_same_district_other_seed_other_district() -> None:
    first, again, other = build_district(7), build_district(7), build_district(8)
    assert first == again
    assert [d.model_dump() for d in first.devices] != [d.model_dump() for d in other.devices]


def test_devices_are_valid_registry_records_in_the_tree() -> None:
    district = build_district()
    codes = {node.code for node in district.nodes}
    ids = [device.id for device in district.devices]
    assert len(ids) == len(set(ids))
    mqtt_ids = [d.mqtt_device_id for d in district.devices if d.mqtt_device_id]
    assert len(mqtt_ids) == len(set(mqtt_ids)) == 78 + 18
    for device in district.devices:
        # Re-validating proves the records pass the registry's own checks.
        DeviceIn.model_validate(device.model_dump())
        assert device.jurisdiction in codes
        gb = GbId(device.id)
        assert gb.admin_division_code == DISTRICT_CODE
        assert gb.device_kind == device.kind
        assert device.latitude is not None and device.longitude is not None
        assert 40.45 < device.latitude < 40.75 and 109.45 < device.longitude < 110.1
        assert device.address and device.address.startswith("内蒙古自治区包头市九原区")


def test_cameras_have_simulated_streams() -> None:
    camera = build_district().cameras[0]
    assert camera.rtsp_urls == sim_stream_urls(camera.id)
    assert all(sim_device_of(url) == camera.id for url in camera.rtsp_urls)


def test_panic_buttons_link_to_their_schools_cameras_nearby() -> None:
    district = build_district()
    cameras = {device.id: device for device in district.cameras}
    buttons = {device.id: device for device in district.panic_buttons}
    assert sum(len(school.buttons) for school in district.schools) == 78
    for school in district.schools:
        assert school.buttons and school.cameras
        for button_id in school.buttons:
            button = buttons[button_id]
            assert button.mqtt_device_id and button.mqtt_device_id.startswith("panic-sch")
            assert button.linked_cameras == list(school.cameras)
            for camera_id in button.linked_cameras:
                camera = cameras[camera_id]
                assert camera.latitude is not None and camera.longitude is not None
                assert button.latitude is not None and button.longitude is not None
                near = distance_m(
                    GeoPoint(button.latitude, button.longitude),
                    GeoPoint(camera.latitude, camera.longitude),
                )
                assert near < 300


def test_broadcast_units_cover_schools_and_zones() -> None:
    district = build_district()
    assert len(district.broadcast_sites) == 18
    at_schools = [site for site in district.broadcast_sites if site.school is not None]
    assert 0 < len(at_schools) < 18
    camera_ids = {camera.id for camera in district.cameras}
    for unit in district.broadcast_units:
        assert unit.mqtt_device_id and unit.mqtt_device_id.startswith("bcast-")
        assert unit.linked_cameras and set(unit.linked_cameras) <= camera_ids


def test_full_camera_ids_are_gb28181_ip_cameras_per_town() -> None:
    district = build_district()
    centers = Counter(GbId(camera.id).center_code for camera in district.cameras)
    assert set(centers) <= {f"{DISTRICT_CODE}{n:02d}" for n in range(1, 9)}
    assert {GbId(c.id).type_code for c in district.cameras} == {132}


@pytest.mark.parametrize(
    "kwargs",
    [{"grids": 3}, {"micro_grids": 10}, {"panic_buttons": 5}, {"cloud_eye_share": 1.5}],
)
def test_impossible_specs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DistrictSpec(**kwargs)  # type: ignore[arg-type]


def test_sim_stream_urls_are_recognised_and_others_are_not() -> None:
    assert sim_device_of(f"rtsp://{SIM_STREAM_HOST}/cam-1/sub") == "cam-1"
    assert sim_device_of("sim://cam-2") == "cam-2"
    assert sim_device_of("rtsp://10.0.0.5/cam-1") is None
    assert sim_device_of("http://sim.invalid/cam-1") is None


def test_kinds_are_what_operators_group_by() -> None:
    district = build_district()
    kinds = Counter(device.kind for device in district.devices)
    assert kinds[DeviceKind.ALARM_POINT] == 78
    assert kinds[DeviceKind.BROADCAST_UNIT] == 18
