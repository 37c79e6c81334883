"""Great-circle distances and nearest-neighbour search for device linkage."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

__all__ = [
    "EARTH_RADIUS_M",
    "BoundingBox",
    "GeoPoint",
    "Nearby",
    "bounding_box",
    "distance_m",
    "nearest",
]

#: Mean Earth radius (IUGG), metres. A sphere is good to ~0.5 % - ample for "nearby".
EARTH_RADIUS_M = 6_371_008.8

_BOX_MARGIN_DEG = 1e-7

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS-84 position in decimal degrees."""

    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latitude) and -90.0 <= self.latitude <= 90.0):
            raise ValueError(f"latitude {self.latitude} is outside -90..90")
        if not (math.isfinite(self.longitude) and -180.0 <= self.longitude <= 180.0):
            raise ValueError(f"longitude {self.longitude} is outside -180..180")


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle (haversine) distance between two points, in metres."""
    phi1, phi2 = math.radians(a.latitude), math.radians(b.latitude)
    d_phi = phi2 - phi1
    d_lambda = math.radians(b.longitude - a.longitude)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    # min() guards asin against rounding just above 1 for antipodal points.
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class BoundingBox(NamedTuple):
    """A latitude/longitude rectangle, for an indexed pre-filter in SQL."""

    min_latitude: float
    min_longitude: float
    max_latitude: float
    max_longitude: float

    def contains(self, point: GeoPoint) -> bool:
        """True if `point` lies inside the box (edges included)."""
        return (
            self.min_latitude <= point.latitude <= self.max_latitude
            and self.min_longitude <= point.longitude <= self.max_longitude
        )


def bounding_box(center: GeoPoint, radius_m: float) -> BoundingBox:
    """A box that contains every point within `radius_m` of `center`.

    Near a pole or across the antimeridian the box widens to all longitudes
    rather than wrapping, so it never misses a point.
    """
    if radius_m < 0 or not math.isfinite(radius_m):
        raise ValueError(f"radius {radius_m} must be a finite number of metres >= 0")
    # The margin (~1 cm) absorbs floating-point rounding at the edges.
    d_lat = math.degrees(radius_m / EARTH_RADIUS_M) + _BOX_MARGIN_DEG
    min_lat, max_lat = center.latitude - d_lat, center.latitude + d_lat
    if min_lat <= -90.0 or max_lat >= 90.0:
        return BoundingBox(max(min_lat, -90.0), -180.0, min(max_lat, 90.0), 180.0)
    # The widest longitude span is at the latitude edge nearest the pole.
    widest = math.radians(max(abs(min_lat), abs(max_lat)))
    d_lon = math.degrees(radius_m / (EARTH_RADIUS_M * math.cos(widest))) + _BOX_MARGIN_DEG
    min_lon, max_lon = center.longitude - d_lon, center.longitude + d_lon
    if d_lon >= 180.0 or min_lon < -180.0 or max_lon > 180.0:
        return BoundingBox(min_lat, -180.0, max_lat, 180.0)
    return BoundingBox(min_lat, min_lon, max_lat, max_lon)


class Nearby(NamedTuple, Generic[K]):
    """A candidate within the radius and how far it is."""

    item: K
    distance_m: float


def nearest(
    point: GeoPoint,
    candidates: Iterable[tuple[K, GeoPoint]],
    radius_m: float,
    limit: int,
) -> list[Nearby[K]]:
    """The up to `limit` candidates within `radius_m` of `point`, nearest first.

    Candidates at equal distance keep their input order.
    """
    if limit < 0:
        raise ValueError(f"limit {limit} must be >= 0")
    box = bounding_box(point, radius_m)
    within: list[tuple[float, int, K]] = []
    for order, (item, where) in enumerate(candidates):
        if not box.contains(where):
            continue
        d = distance_m(point, where)
        if d <= radius_m:
            within.append((d, order, item))
    return [Nearby(item, d) for d, _, item in heapq.nsmallest(limit, within, key=lambda t: t[:2])]
