"""A small district for the console's browser tests: 九原区 and its 8 towns (codes made up for
tests), boundaries imported through `gridwatch jurisdictions import` (CSV tree, then GeoJSON),
cameras, panic buttons and a speaker placed inside the towns, with health states and history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.cli import main as gridwatch
from hub.devices.health_storage import TransitionRow, insert_transitions
from hub.runtime import Hub
from hub.storage import Json
from tests.integration.console_support import PASSWORD

__all__ = [
    "DISTRICT",
    "TOWNS",
    "Placed",
    "add_operator",
    "import_district",
    "seed_devices",
    "town_centre",
]

DISTRICT = ("150207", "九原区")
TOWNS = [
    ("150207001", "赛汗街道"),
    ("150207002", "沙河街道"),
    ("150207003", "萨如拉街道"),
    ("150207004", "白音席勒街道"),
    ("150207005", "哈林格尔镇"),
    ("150207006", "麻池镇"),
    ("150207007", "哈业胡同镇"),
    ("150207008", "阿嘎如泰苏木"),
]
_WEST, _SOUTH, _WIDTH, _HEIGHT = 109.60, 40.50, 0.125, 0.15


def _town_box(index: int) -> tuple[float, float, float, float]:
    west = _WEST + (index % 4) * _WIDTH
    south = _SOUTH + (index // 4) * _HEIGHT
    return west, south, west + _WIDTH, south + _HEIGHT


def town_centre(index: int) -> tuple[float, float]:
    """(latitude, longitude) in the middle of town `index` (0..7)."""
    west, south, east, north = _town_box(index)
    return (south + north) / 2, (west + east) / 2


def _ring(west: float, south: float, east: float, north: float) -> list[list[float]]:
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


def import_district(data_dir: Path) -> None:
    """The tree (CSV) and the towns' and district's outlines (GeoJSON), through the CLI."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir.parent / f"{data_dir.name}-gridwatch.yaml"
    config.write_text(f"data_dir: {data_dir.as_posix()}\n", encoding="utf-8")
    tree = data_dir.parent / "district.csv"
    lines = ["编码,名称,级别,上级编码", f"{DISTRICT[0]},{DISTRICT[1]},区,"]
    lines += [f"{code},{name},街道,{DISTRICT[0]}" for code, name in TOWNS]
    tree.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert gridwatch(["--config", str(config), "jurisdictions", "import", str(tree)]) == 0
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "properties": {"code": DISTRICT[0]},
            "geometry": {
                "type": "Polygon",
                "coordinates": [_ring(_WEST, _SOUTH, _WEST + 4 * _WIDTH, _SOUTH + 2 * _HEIGHT)],
            },
        }
    ]
    for index, (code, _) in enumerate(TOWNS):
        features.append(
            {
                "type": "Feature",
                "properties": {"adcode": code},
                "geometry": {"type": "Polygon", "coordinates": [_ring(*_town_box(index))]},
            }
        )
    outlines = data_dir.parent / "district.geojson"
    outlines.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    assert gridwatch(["--config", str(config), "jurisdictions", "import", str(outlines)]) == 0


@dataclass(frozen=True)
class Placed:
    """A device to seed: kind, town index, health, stream, linked cameras, MQTT id."""

    device_id: str
    name: str
    kind: str
    town: int
    health: str = "online"
    urls: Sequence[str] = ()
    linked: Sequence[str] = ()
    mqtt_id: str | None = None
    tags: Sequence[str] = ()
    offset: float = 0.0


async def seed_devices(hub: Hub, devices: Sequence[Placed]) -> None:
    """Registry rows, device state and a month of health history (for the KPI chart)."""
    now = datetime.now(UTC)
    month_ago = now - timedelta(days=40)
    async with hub.store.transaction() as tx:
        for d in devices:
            lat, lon = town_centre(d.town)
            code = TOWNS[d.town][0]
            await tx.execute(
                "INSERT INTO devices (id, name, kind, jurisdiction, jurisdiction_path, latitude,"
                " longitude, address, rtsp_urls, mqtt_device_id, linked_cameras, tags, enabled,"
                " created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    d.device_id,
                    d.name,
                    d.kind,
                    code,
                    f"/{DISTRICT[0]}/{code}/",
                    lat + d.offset,
                    lon + d.offset,
                    f"{TOWNS[d.town][1]} 主街 {d.town + 1} 号",
                    Json(list(d.urls)),
                    d.mqtt_id,
                    Json(list(d.linked)),
                    Json(list(d.tags)),
                    True,
                    month_ago,
                    month_ago,
                ),
            )
            await tx.execute(
                "INSERT INTO device_state (device_id, health, updated_at)"
                " VALUES (%s, 'unknown', %s)",
                (d.device_id, month_ago),
            )
        rows = [
            TransitionRow(d.device_id, month_ago, "unknown", "online", "first probe answered")
            for d in devices
        ]
        rows += [
            TransitionRow(
                d.device_id,
                now - timedelta(days=3),
                "online",
                d.health,
                "3 consecutive failures, last: connection refused"
                if d.health == "offline"
                else "blurred: sharpness 4.8 is 2% of the camera's own reference",
            )
            for d in devices
            if d.health != "online"
        ]
        await insert_transitions(tx, rows, now)


async def add_operator(hub: Hub, username: str, role: str = "operator") -> None:
    """A user seeing the whole district."""
    await hub.auth.refresh_tree()
    await hub.auth.create_user(username, PASSWORD, role, ["/"], actor="system:test")
