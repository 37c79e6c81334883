"""Jurisdiction boundaries: GeoJSON in through the CLI (checked whole, nothing stored from a
bad file), stored on SQLite and PostgreSQL, served per caller's scope as a FeatureCollection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from camera_registry.boundaries import parse_boundaries
from hub.cli import main as gridwatch
from hub.config import load_settings
from hub.devices.boundaries import import_boundaries
from hub.devices.registry import Actor
from hub.runtime import Hub
from tests.helpers import act_as

TREE = [
    {"code": "150207", "name": "九原区", "level": "district"},
    {"code": "150207001", "name": "赛汗街道", "level": "town", "parent_code": "150207"},
    {"code": "150207002", "name": "沙河街道", "level": "town", "parent_code": "150207"},
]


def square(west: float, south: float, size: float = 0.1) -> list[list[list[float]]]:
    east, north = west + size, south + size
    return [[[west, south], [east, south], [east, north], [west, north], [west, south]]]


def collection(*features: tuple[dict[str, Any], list[list[list[float]]]]) -> str:
    return json.dumps(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": p,
                    "geometry": {"type": "Polygon", "coordinates": c},
                }
                for p, c in features
            ],
        },
        ensure_ascii=False,
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def hub_client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Hub, Any, httpx.AsyncClient]]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url})
    async with Hub(settings) as hub:
        app = hub.app()
        act_as(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub"
        ) as client:
            assert (await client.post("/api/jurisdictions", json=TREE)).status_code == 201
            yield hub, app, client


async def test_boundaries_are_stored_replaced_and_served_in_scope(
    hub_client: tuple[Hub, Any, httpx.AsyncClient],
) -> None:
    hub, app, client = hub_client
    actor = Actor("system:test")
    first = parse_boundaries(
        collection(
            ({"code": "150207"}, square(109.6, 40.5, 0.5)),
            ({"code": "150207001"}, square(109.6, 40.5)),
            ({"code": "150207002"}, square(109.7, 40.5)),
            # A new village, created from its feature's name and level.
            (
                {
                    "code": "150207001001",
                    "name": "友谊社区",
                    "level": "village",
                    "parent_code": "150207001",
                },
                square(109.62, 40.52, 0.02),
            ),
        )
    )
    assert await import_boundaries(hub.registry, first, actor=actor) == (1, 4)
    # Importing again replaces an outline.
    moved = parse_boundaries(collection(({"code": "150207002"}, square(109.8, 40.6))))
    assert await import_boundaries(hub.registry, moved, actor=actor) == (0, 1)

    body = (await client.get("/api/jurisdictions/boundaries")).json()
    assert body["type"] == "FeatureCollection"
    by_code = {f["properties"]["code"]: f for f in body["features"]}
    assert list(by_code) == ["150207", "150207001", "150207001001", "150207002"]
    assert by_code["150207002"]["geometry"]["coordinates"] == square(109.8, 40.6)
    assert by_code["150207001001"]["properties"] == {
        "code": "150207001001",
        "name": "友谊社区",
        "level": "village",
        "parent_code": "150207001",
    }
    # A town's operator gets the town and what lies under it, nothing else.
    act_as(app, role="operator", scope=("/150207/150207001/",))
    body = (await client.get("/api/jurisdictions/boundaries")).json()
    assert [f["properties"]["code"] for f in body["features"]] == ["150207001", "150207001001"]
    act_as(app, role="dispatcher", scope=("/150207/150207002/",))
    body = (await client.get("/api/jurisdictions/boundaries")).json()
    assert [f["properties"]["name"] for f in body["features"]] == ["沙河街道"]
    # Each import is in the audit log.
    async with hub.store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'jurisdiction.boundaries'"
        )
    assert int(rows[0][0]) == 2


def run_cli(*argv: str) -> int:
    return gridwatch(list(argv))


async def test_the_cli_refuses_a_bad_file_whole_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gridwatch.yaml"
    config.write_text(f"data_dir: {tmp_path.as_posix()}\n", encoding="utf-8")
    tree = tmp_path / "tree.yaml"
    tree.write_text(json.dumps(TREE, ensure_ascii=False), encoding="utf-8")
    assert (
        await asyncio.to_thread(
            run_cli, "--config", str(config), "jurisdictions", "import", str(tree)
        )
        == 0
    )
    capsys.readouterr()

    unclosed = tmp_path / "unclosed.geojson"
    ring = square(109.6, 40.5)
    ring[0][-1] = [109.65, 40.55]
    unclosed.write_text(
        collection(({"code": "150207001"}, square(109.7, 40.5)), ({"code": "150207002"}, ring))
    )
    args = ("--config", str(config), "jurisdictions", "import")
    assert await asyncio.to_thread(run_cli, *args, str(unclosed)) == 1
    assert "feature 2 (150207002): ring 1 is not closed" in capsys.readouterr().err

    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        collection(
            ({"code": "150207001"}, square(109.6, 40.5)),
            ({"code": "150207099"}, square(109.7, 40.5)),
        )
    )
    assert await asyncio.to_thread(run_cli, *args, str(unknown)) == 1
    assert "no jurisdiction node for 1 code(s): 150207099" in capsys.readouterr().err

    good = tmp_path / "good.geojson"
    good.write_text(collection(({"code": "150207001"}, square(109.6, 40.5))))
    assert await asyncio.to_thread(run_cli, *args, str(good)) == 0
    assert "1 boundaries stored" in capsys.readouterr().out
    settings = load_settings(config)
    async with Hub(settings) as hub, hub.store.reading() as tx:
        rows = await tx.fetchall("SELECT code FROM jurisdiction_boundaries")
    # Neither refused file left anything behind.
    assert [r[0] for r in rows] == ["150207001"]
