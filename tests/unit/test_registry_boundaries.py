"""GeoJSON jurisdiction boundaries: what is accepted, and bad files refused with the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from camera_registry.boundaries import BoundaryError, feature_collection, parse_boundaries

SQUARE = [[[109.8, 40.6], [109.9, 40.6], [109.9, 40.7], [109.8, 40.7], [109.8, 40.6]]]


def collection(*features: dict[str, Any]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


def feature(properties: dict[str, Any], geometry: Any = None) -> dict[str, Any]:
    geometry = geometry or {"type": "Polygon", "coordinates": SQUARE}
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def test_polygons_and_multipolygons_with_codes_under_the_usual_keys() -> None:
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE, SQUARE]}
    parsed = parse_boundaries(
        collection(
            feature({"code": "150207001"}),
            feature({"adcode": 150207002}, multi),
            feature(
                {
                    "编码": "150207003",
                    "name": "萨如拉街道",
                    "level": "town",
                    "parent_code": "150207",
                }
            ),
        )
    )
    assert [b.code for b in parsed] == ["150207001", "150207002", "150207003"]
    assert parsed[1].geometry["type"] == "MultiPolygon"
    assert parsed[0].node is None
    node = parsed[2].node
    assert node is not None and node.name == "萨如拉街道" and node.parent_code == "150207"
    out = feature_collection([("150207001", "赛汗街道", "town", "150207", parsed[0].geometry)])
    assert out["features"][0]["properties"]["name"] == "赛汗街道"
    assert out["features"][0]["geometry"]["coordinates"] == SQUARE


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not JSON"),
        (json.dumps({"type": "Feature"}).encode(), "FeatureCollection"),
        (collection(), "no features"),
        (collection(feature({"name": "x"})), "feature 1: properties need the jurisdiction code"),
        (collection(feature({"code": "赛汗 街道"})), "feature 1"),
        (
            collection(feature({"code": "150207001"}), feature({"code": "150207001"})),
            "feature 2: jurisdiction 150207001 has a boundary twice",
        ),
        (
            collection(feature({"code": "150207001"}, {"type": "Point", "coordinates": [1, 2]})),
            "Polygon or MultiPolygon",
        ),
        (
            collection(
                feature(
                    {"code": "150207001"},
                    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
                )
            ),
            "not closed",
        ),
        (
            collection(
                feature(
                    {"code": "150207001"},
                    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
                )
            ),
            "at least 4 positions",
        ),
        (
            collection(
                feature(
                    {"code": "150207001"},
                    {"type": "Polygon", "coordinates": [[[0, 0], [1, 95], [1, 1], [0, 0]]]},
                )
            ),
            "latitude 95 is outside",
        ),
        (
            collection(feature({"code": "150207001", "name": "x", "level": "planet"})),
            "feature 1",
        ),
    ],
)
def test_bad_files_are_refused_naming_the_feature(data: bytes, message: str) -> None:
    with pytest.raises(BoundaryError, match=message):
        parse_boundaries(data)
