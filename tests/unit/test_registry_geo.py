"""Great-circle distances and nearest-camera search."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camera_registry import GeoPoint, bounding_box, distance_m, nearest
from camera_registry.geo import EARTH_RADIUS_M

# Hohhot landmarks (WGS-84, rounded to ~10 m).
HOHHOT_STATION = GeoPoint(40.8570, 111.6690)  # 呼和浩特站
BAITA_AIRPORT = GeoPoint(40.8514, 111.8241)  # 白塔国际机场
XINHUA_SQUARE = GeoPoint(40.8173, 111.6604)  # 新华广场
BEIJING = GeoPoint(39.9042, 116.4074)
SHANGHAI = GeoPoint(31.2304, 121.4737)


def chord_distance(a: GeoPoint, b: GeoPoint) -> float:
    """An independent great-circle formula: the angle between unit vectors."""

    def unit(p: GeoPoint) -> tuple[float, float, float]:
        lat, lon = math.radians(p.latitude), math.radians(p.longitude)
        return (math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat))

    u, v = unit(a), unit(b)
    chord = math.dist(u, v)
    return 2 * EARTH_RADIUS_M * math.asin(chord / 2)


def test_one_degree_of_meridian_is_about_111_195_m() -> None:
    assert distance_m(GeoPoint(40.0, 111.7), GeoPoint(41.0, 111.7)) == pytest.approx(111_195, abs=1)


def test_distances_in_hohhot() -> None:
    # Station to airport: about 13.1 km east along roughly the same latitude.
    station_airport = distance_m(HOHHOT_STATION, BAITA_AIRPORT)
    assert 13_000 < station_airport < 13_200
    assert station_airport == pytest.approx(chord_distance(HOHHOT_STATION, BAITA_AIRPORT), rel=1e-9)
    # Station to Xinhua Square: about 4.4 km, mostly south.
    station_square = distance_m(HOHHOT_STATION, XINHUA_SQUARE)
    assert 4_300 < station_square < 4_500
    assert station_square == pytest.approx(chord_distance(HOHHOT_STATION, XINHUA_SQUARE), rel=1e-9)


def test_long_distances_match_published_figures() -> None:
    assert distance_m(BEIJING, SHANGHAI) == pytest.approx(1_067_000, rel=0.005)
    # Hohhot to Beijing is usually quoted as 410-420 km in a straight line.
    assert 405_000 < distance_m(HOHHOT_STATION, BEIJING) < 425_000


def test_distance_is_symmetric_zero_on_itself_and_handles_antipodes() -> None:
    assert distance_m(BEIJING, SHANGHAI) == distance_m(SHANGHAI, BEIJING)
    assert distance_m(BEIJING, BEIJING) == 0
    half_circumference = math.pi * EARTH_RADIUS_M
    assert distance_m(GeoPoint(0, 0), GeoPoint(0, 180)) == pytest.approx(half_circumference)
    assert distance_m(GeoPoint(90, 0), GeoPoint(-90, 0)) == pytest.approx(half_circumference)


@pytest.mark.parametrize(
    ("lat", "lon"), [(90.1, 0), (-91, 0), (0, 180.5), (math.nan, 0), (0, math.inf)]
)
def test_points_out_of_range_are_refused(lat: float, lon: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        GeoPoint(lat, lon)


def test_nearest_cameras_within_radius_nearest_first() -> None:
    panic_button = GeoPoint(40.8173, 111.6604)
    cameras = [
        ("far", GeoPoint(40.8573, 111.6604)),  # ~4.4 km north
        ("gate-east", GeoPoint(40.8173, 111.6616)),  # ~100 m east
        ("gate-north", GeoPoint(40.81775, 111.6604)),  # ~50 m north
        ("yard", GeoPoint(40.8173, 111.6640)),  # ~300 m east
    ]
    found = nearest(panic_button, cameras, radius_m=500, limit=10)
    assert [n.item for n in found] == ["gate-north", "gate-east", "yard"]
    assert found[0].distance_m == pytest.approx(50, abs=1)
    assert found[1].distance_m == pytest.approx(101, abs=1)
    assert [n.item for n in nearest(panic_button, cameras, radius_m=500, limit=2)] == [
        "gate-north",
        "gate-east",
    ]
    assert nearest(panic_button, cameras, radius_m=10, limit=5) == []
    assert nearest(panic_button, cameras, radius_m=500, limit=0) == []
    assert nearest(panic_button, [], radius_m=500, limit=5) == []


def test_nearest_keeps_input_order_for_equal_distances_and_includes_the_edge() -> None:
    here = GeoPoint(40.0, 111.0)
    same = GeoPoint(40.001, 111.0)
    edge = distance_m(here, same)
    found = nearest(here, [("b", same), ("a", same)], radius_m=edge, limit=5)
    assert [n.item for n in found] == ["b", "a"]


def test_negative_limit_or_radius_is_refused() -> None:
    with pytest.raises(ValueError):
        nearest(BEIJING, [], radius_m=100, limit=-1)
    with pytest.raises(ValueError):
        nearest(BEIJING, [], radius_m=-1, limit=1)


lat = st.floats(-89.9, 89.9)
lon = st.floats(-180, 180)


@given(lat, lon, st.floats(0, 5_000_000), st.floats(0, 1), st.floats(0, 360))
def test_bounding_box_holds_every_point_within_the_radius(
    center_lat: float, center_lon: float, radius: float, fraction: float, bearing: float
) -> None:
    """Whatever SQL pre-filters with the box can never drop a real neighbour."""
    center = GeoPoint(center_lat, center_lon)
    # Walk `fraction * radius` from the center along `bearing` (spherical destination).
    delta = fraction * radius / EARTH_RADIUS_M
    phi1, lam1, theta = math.radians(center_lat), math.radians(center_lon), math.radians(bearing)
    phi2 = math.asin(
        math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * math.cos(theta)
    )
    lam2 = lam1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * math.sin(phi2),
    )
    lon2 = (math.degrees(lam2) + 540) % 360 - 180
    target = GeoPoint(max(-90.0, min(90.0, math.degrees(phi2))), lon2)
    if distance_m(center, target) <= radius:
        assert bounding_box(center, radius).contains(target)
