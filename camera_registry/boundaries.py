"""Jurisdiction boundaries from GeoJSON: a FeatureCollection whose features carry a code.

Pure parsing and checking (no I/O). Each feature is one jurisdiction's outline:
`properties.code` (or `jurisdiction`, `jurisdiction_code`, `adcode`, `编码`) names the node;
the geometry is a Polygon or MultiPolygon of [longitude, latitude] positions, in the same
datum as the site's map tiles. A feature may also carry `name`, `level` and `parent_code`,
so one file can create the nodes and their outlines together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from camera_registry.jurisdiction import JurisdictionNode, validate_jurisdiction_code

__all__ = ["MAX_POSITIONS", "Boundary", "BoundaryError", "feature_collection", "parse_boundaries"]

#: More vertices than a district's 1,758 micro-grids need at survey precision.
MAX_POSITIONS = 2_000_000
_CODE_KEYS = ("code", "jurisdiction", "jurisdiction_code", "adcode", "编码")
_GEOMETRIES = ("Polygon", "MultiPolygon")


class BoundaryError(ValueError):
    """The file is not a usable boundary collection; the message names the feature."""


@dataclass(frozen=True, slots=True)
class Boundary:
    """One jurisdiction's outline, and the node itself when the feature describes it."""

    code: str
    geometry: Mapping[str, Any]
    node: JurisdictionNode | None = None


def _position(value: Any, where: str) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) < 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2])
    ):
        raise BoundaryError(f"{where}: a position must be [longitude, latitude]")
    lon, lat = float(value[0]), float(value[1])
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise BoundaryError(f"{where}: longitude {value[0]} is outside -180..180")
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise BoundaryError(f"{where}: latitude {value[1]} is outside -90..90")
    return [lon, lat]


def _polygon(rings: Any, where: str) -> list[list[list[float]]]:
    if not isinstance(rings, list) or not rings:
        raise BoundaryError(f"{where}: a polygon needs at least one ring")
    checked = []
    for number, ring in enumerate(rings, 1):
        if not isinstance(ring, list) or len(ring) < 4:
            raise BoundaryError(f"{where}: ring {number} needs at least 4 positions")
        positions = [_position(p, f"{where}, ring {number}") for p in ring]
        if positions[0] != positions[-1]:
            raise BoundaryError(f"{where}: ring {number} is not closed (first != last position)")
        checked.append(positions)
    return checked


def _geometry(value: Any, where: str) -> tuple[dict[str, Any], int]:
    if not isinstance(value, dict) or value.get("type") not in _GEOMETRIES:
        raise BoundaryError(f"{where}: the geometry must be a Polygon or MultiPolygon")
    coordinates = value.get("coordinates")
    if value["type"] == "Polygon":
        polygon = _polygon(coordinates, where)
        return {"type": "Polygon", "coordinates": polygon}, sum(map(len, polygon))
    if not isinstance(coordinates, list) or not coordinates:
        raise BoundaryError(f"{where}: a MultiPolygon needs at least one polygon")
    polygons = [_polygon(p, f"{where}, polygon {i}") for i, p in enumerate(coordinates, 1)]
    count = sum(len(ring) for polygon in polygons for ring in polygon)
    return {"type": "MultiPolygon", "coordinates": polygons}, count


def _node(code: str, properties: Mapping[str, Any], where: str) -> JurisdictionNode | None:
    if not properties.get("name") or not properties.get("level"):
        return None
    parent = properties.get("parent_code")
    try:
        return JurisdictionNode.model_validate(
            {
                "code": code,
                "name": str(properties["name"]),
                "level": str(properties["level"]),
                "parent_code": None if parent in (None, "") else str(parent),
            }
        )
    except ValueError as exc:
        raise BoundaryError(f"{where}: {exc}") from exc


def parse_boundaries(data: bytes | str) -> list[Boundary]:
    """The boundaries in a GeoJSON FeatureCollection; raises BoundaryError on the first problem."""
    try:
        loaded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BoundaryError(f"not JSON: {exc}") from exc
    if not isinstance(loaded, dict) or loaded.get("type") != "FeatureCollection":
        raise BoundaryError("the file must be a GeoJSON FeatureCollection")
    features = loaded.get("features")
    if not isinstance(features, list) or not features:
        raise BoundaryError("the FeatureCollection has no features")
    boundaries: list[Boundary] = []
    seen: set[str] = set()
    positions = 0
    for number, feature in enumerate(features, 1):
        where = f"feature {number}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise BoundaryError(f"{where}: not a GeoJSON Feature")
        properties = feature.get("properties")
        if not isinstance(properties, dict):
            raise BoundaryError(f"{where}: no properties (the jurisdiction code goes there)")
        raw = next((properties[k] for k in _CODE_KEYS if properties.get(k) not in (None, "")), None)
        if raw is None:
            raise BoundaryError(f"{where}: properties need the jurisdiction code ({_CODE_KEYS[0]})")
        try:
            code = validate_jurisdiction_code(str(raw))
        except ValueError as exc:
            raise BoundaryError(f"{where}: {exc}") from exc
        if code in seen:
            raise BoundaryError(f"{where}: jurisdiction {code} has a boundary twice")
        seen.add(code)
        geometry, count = _geometry(feature.get("geometry"), f"{where} ({code})")
        positions += count
        if positions > MAX_POSITIONS:
            raise BoundaryError(f"more than {MAX_POSITIONS:,} positions; simplify the outlines")
        boundaries.append(Boundary(code, geometry, _node(code, properties, where)))
    return boundaries


def feature_collection(
    rows: Sequence[tuple[str, str, str, str | None, Mapping[str, Any]]],
) -> dict[str, Any]:
    """A FeatureCollection of (code, name, level, parent_code, geometry) rows."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": code,
                "properties": {"code": code, "name": name, "level": level, "parent_code": parent},
                "geometry": dict(geometry),
            }
            for code, name, level, parent, geometry in rows
        ],
    }
