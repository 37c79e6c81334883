"""The device registry through the hub's HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest

from hub.config import load_settings
from hub.devices.registry import DeviceChange
from hub.runtime import Hub
from tests.helpers import act_as

FIXTURES = Path(__file__).parent.parent / "fixtures" / "registry"
SECRETS = ("Hk@2024pass", "Leak3dPw", "OnlyPw99", "S3cret-Api-Pw", "Bulk-Pw-77")

TREE = [
    {"code": "150102", "name": "新城区", "level": "district"},
    {"code": "150102001", "name": "海拉尔东路街道", "level": "town", "parent_code": "150102"},
    {"code": "150102002", "name": "锡林南路街道", "level": "town", "parent_code": "150102"},
    {
        "code": "150102001001",
        "name": "东风社区",
        "level": "village",
        "parent_code": "150102001",
    },
]


@dataclass
class Env:
    hub: Hub
    client: httpx.AsyncClient
    app: Any
    bodies: list[bytes] = field(default_factory=list)

    def act(self, role: str = "admin", scope: tuple[str, ...] = ("/",)) -> None:
        act_as(self.app, role=role, scope=scope)


@pytest.fixture(params=["sqlite", "postgres"])
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Env]:
    caplog.set_level(logging.DEBUG)
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url})
    bodies: list[bytes] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        bodies.append(response.content)

    async with Hub(settings) as hub:
        app = hub.app()
        act_as(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://hub", event_hooks={"response": [keep]}
        ) as client:
            r = await client.post("/api/jurisdictions", json=TREE)
            assert r.status_code == 201, r.text
            yield Env(hub, client, app, bodies)
    # No response of the whole test and no log line carries a stored password.
    for body in bodies:
        for secret in SECRETS:
            assert secret.encode() not in body
    for secret in SECRETS:
        assert secret not in caplog.text


def camera(n: int, **extra: Any) -> dict[str, Any]:
    town = "150102001" if n % 2 else "150102002"
    data = {
        "id": f"cam-{n:03d}",
        "name": f"路口{n:03d}",
        "kind": "camera",
        "jurisdiction": town,
        "project": "sharp_eyes" if n % 3 else "cloud_eye",
        "latitude": 40.8 + n * 0.0001,
        "longitude": 111.6,
        "address": f"新华大街{n}号",
    }
    data.update(extra)
    return data


async def test_crud_filters_sorting_and_cursor_pages(env: Env) -> None:
    c = env.client
    r = await c.post(
        "/api/devices/bulk",
        json={"devices": [camera(n) for n in range(1, 31)]},
    )
    assert r.json() == {"created": 30, "updated": 0, "unchanged": 0, "dry_run": False}
    r = await c.post(
        "/api/devices",
        json={
            "id": "alarm-1",
            "name": "第一小学一键报警",
            "kind": "alarm_point",
            "jurisdiction": "150102001001",
            "project": "school_alarm",
            "enabled": False,
            "linked_cameras": ["cam-001"],
            "credentials": {"username": "admin", "password": "S3cret-Api-Pw"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["has_credentials"] is True
    assert "credentials" not in r.json()

    # Filters.
    async def ids(**params: Any) -> list[str]:
        got = await c.get("/api/devices", params={"limit": 500, **params})
        assert got.status_code == 200, got.text
        return [d["id"] for d in got.json()["items"]]

    assert await ids(kind="alarm_point") == ["alarm-1"]
    assert len(await ids(jurisdiction="150102001")) == 16  # 15 odd cameras + the alarm point
    assert await ids(jurisdiction="150102001001") == ["alarm-1"]
    assert len(await ids(project="cloud_eye")) == 10
    assert await ids(enabled="false") == ["alarm-1"]
    assert await ids(q="小学") == ["alarm-1"]
    assert await ids(q="新华大街7号") == ["cam-007"]
    assert len(await ids(health="unknown")) == 31
    assert await ids(health="online") == []

    # Sorting and cursor pagination: every device once, in order.
    for sort, order in [
        ("name", "desc"),
        ("id", "asc"),
        ("updated_at", "asc"),
        ("jurisdiction", "desc"),
        ("project", "asc"),
        ("health", "asc"),
    ]:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"sort": sort, "order": order, "limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = (await c.get("/api/devices", params=params)).json()
            seen.extend(d["id"] for d in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(set(seen)) and len(seen) == 31, (sort, seen)
    by_name = await ids(sort="name", order="desc")
    names = [
        d["name"]
        for d in (
            await c.get("/api/devices", params={"sort": "name", "order": "desc", "limit": 500})
        ).json()["items"]
    ]
    assert names == sorted(names, reverse=True) and len(by_name) == 31

    bad = await c.get("/api/devices", params={"sort": "name", "cursor": "garbage"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.cursor"
    bad = await c.get("/api/devices", params={"sort": "password"})
    assert bad.status_code == 422

    # Counts by subtree.
    counts = (await c.get("/api/jurisdictions/150102/counts")).json()
    assert counts["total"] == 31
    assert counts["by_kind"] == {"camera": 30, "alarm_point": 1}
    assert counts["by_child"] == {"150102001": 16, "150102002": 15}
    tree = (await c.get("/api/jurisdictions/tree")).json()
    assert tree[0]["code"] == "150102" and len(tree[0]["children"]) == 2

    # Read, update (credentials kept), delete.
    one = (await c.get("/api/devices/alarm-1")).json()
    assert one["linked_cameras"] == ["cam-001"] and one["has_credentials"] is True
    update = {
        k: v
        for k, v in one.items()
        if k in {"id", "name", "kind", "jurisdiction", "project", "enabled", "linked_cameras"}
    }
    update["name"] = "第一小学报警柱"
    r = await c.put("/api/devices/alarm-1", json=update)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "第一小学报警柱" and r.json()["has_credentials"] is True
    creds = await env.hub.registry.credentials_for("alarm-1")
    assert creds is not None and creds.password.get_secret_value() == "S3cret-Api-Pw"
    r = await c.put("/api/devices/alarm-1", json={**update, "clear_credentials": True})
    assert r.json()["has_credentials"] is False
    assert (await c.delete("/api/devices/cam-030")).status_code == 204
    assert (await c.get("/api/devices/cam-030")).status_code == 404
    assert (await c.delete("/api/devices/cam-030")).status_code == 404

    # Bulk upsert is idempotent.
    r = await c.post("/api/devices/bulk", json={"devices": [camera(n) for n in range(1, 30)]})
    assert r.json() == {"created": 0, "updated": 0, "unchanged": 29, "dry_run": False}
    r = await c.post("/api/devices/bulk", json={"devices": [camera(1, name="改名"), camera(40)]})
    assert r.json() == {"created": 1, "updated": 1, "unchanged": 0, "dry_run": False}


async def test_validation_errors_name_the_field(env: Env) -> None:
    c = env.client
    r = await c.post("/api/devices", json=camera(1, latitude=95.5))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["body.latitude"]
    r = await c.post("/api/devices", json=camera(1, id="99010200001320000003"))
    assert [e["field"] for e in r.json()["errors"]] == ["body.id"]
    r = await c.post(
        "/api/devices",
        json=camera(1, rtsp_urls=["rtsp://admin:Leak3dPw@10.1.1.1/live"]),
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.rtsp_urls.0"
    r = await c.post("/api/devices", json=camera(1, jurisdiction="150199999"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.jurisdiction"
    r = await c.post(
        "/api/devices/bulk", json={"devices": [camera(1), camera(2, jurisdiction="999")]}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.devices.1"
    assert (await c.get("/api/devices")).json()["items"] == []


async def test_scope_hides_devices_outside_the_callers_jurisdiction(env: Env) -> None:
    c = env.client
    await c.post("/api/devices/bulk", json={"devices": [camera(1), camera(2)]})
    env.act("operator", ("/150102/150102002/",))
    assert [d["id"] for d in (await c.get("/api/devices")).json()["items"]] == ["cam-002"]
    assert (await c.get("/api/devices/cam-001")).status_code == 404
    assert (await c.get("/api/devices/cam-001/nearby-cameras")).status_code == 404
    assert (await c.get("/api/jurisdictions/150102001")).status_code == 404
    assert (await c.get("/api/jurisdictions/150102002/counts")).json()["total"] == 1
    assert (await c.post("/api/devices", json=camera(3))).status_code == 403  # operator
    env.act("maintenance", ("/150102/150102002/",))
    assert (await c.post("/api/devices", json=camera(3))).status_code == 403  # odd → 001
    assert (await c.post("/api/devices", json=camera(4))).status_code == 201
    assert (await c.delete("/api/devices/cam-001")).status_code == 404
    r = await c.post("/api/devices/bulk", json={"devices": [camera(1, jurisdiction="150102002")]})
    assert r.status_code == 422  # the id is used in another jurisdiction
    env.act("operator", ("/150102/150102002/",))
    assert (await c.post("/api/jurisdictions", json=TREE)).status_code == 403


async def test_nearby_cameras_for_an_alarm_point(env: Env) -> None:
    c = env.client
    await c.post(
        "/api/devices/bulk",
        json={
            "devices": [
                camera(1, latitude=40.80000, longitude=111.60000),
                camera(2, latitude=40.80100, longitude=111.60000),  # ~111 m
                camera(3, latitude=40.81000, longitude=111.60000),  # ~1.1 km
                {
                    "id": "alarm-9",
                    "name": "报警柱",
                    "kind": "alarm_point",
                    "jurisdiction": "150102001",
                    "latitude": 40.8,
                    "longitude": 111.6,
                },
            ]
        },
    )
    r = (await c.get("/api/devices/alarm-9/nearby-cameras", params={"radius_m": 500})).json()
    assert [n["id"] for n in r["nearby"]] == ["cam-001", "cam-002"]
    assert r["nearby"][0]["distance_m"] == 0.0 and 100 < r["nearby"][1]["distance_m"] < 120


async def test_import_fixture_dry_run_all_or_nothing_partial_and_idempotent(env: Env) -> None:
    c = env.client
    data = (FIXTURES / "devices_zh_errors.csv").read_bytes()
    files = {"file": ("设备.csv", data, "text/csv")}
    r = await c.post("/api/devices/import", params={"dry_run": "true"}, files=files)
    assert r.status_code == 200, r.text
    report = r.json()
    bad_rows = sorted({e["row"] for e in report["errors"]})
    assert bad_rows == list(range(5, 17)), report["errors"]
    assert report["created"] == 3 and report["written"] is False
    by_row = {e["row"]: e for e in report["errors"]}
    assert by_row[8] == {
        "row": 8,
        "column": "所属辖区",
        "value": "150199999",
        "reason": "unknown jurisdiction code",
    }
    assert (await c.get("/api/devices")).json()["items"] == []

    r = await c.post("/api/devices/import", files=files)
    assert r.status_code == 422
    assert sorted({e["row"] for e in r.json()["errors"]}) == list(range(5, 17))
    assert (await c.get("/api/devices")).json()["items"] == []

    r = await c.post("/api/devices/import", params={"partial": "true"}, files=files)
    assert r.status_code == 200
    assert (r.json()["created"], r.json()["written"]) == (3, True)
    listed = (await c.get("/api/devices")).json()["items"]
    assert len(listed) == 3
    first = await env.hub.registry.credentials_for("15010200001320000001")
    assert first is not None and first.password.get_secret_value() == "Hk@2024pass"

    # The same file again changes nothing (credentials compared, not re-sealed).
    blob_before = await _raw_credentials(env, "15010200001320000001")
    r = await c.post("/api/devices/import", params={"partial": "true"}, files=files)
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (0, 0, 3)
    assert await _raw_credentials(env, "15010200001320000001") == blob_before
    relisted = (await c.get("/api/devices")).json()["items"]
    assert [d["updated_at"] for d in relisted] == [d["updated_at"] for d in listed]


async def test_gbk_xlsx_template_export_and_formula_neutralised(env: Env) -> None:
    c = env.client
    r = await c.post(
        "/api/devices/import",
        content=(FIXTURES / "devices_gbk.csv").read_bytes(),
        headers={"content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["encoding"] == "GBK" and r.json()["created"] == 2
    await c.post(
        "/api/devices",
        json=camera(5, name='=HYPERLINK("http://evil.example/","x")', address="+cmd|calc"),
    )
    exported = await c.get("/api/devices/export", params={"format": "csv", "lang": "en"})
    assert exported.status_code == 200
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    cells = [cell for row in rows for cell in row]
    assert '\'=HYPERLINK("http://evil.example/","x")' in cells
    assert "'+cmd|calc" in cells
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells)

    xlsx = await c.get(
        "/api/devices/export", params={"format": "xlsx", "lang": "zh", "kind": "camera"}
    )
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).worksheets[0]
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][0] == "设备编码" and len(values) == 1 + 2  # the two cameras
    # The export re-imports to the same devices.
    r = await c.post(
        "/api/devices/import",
        content=xlsx.content,
        headers={"content-type": "application/octet-stream"},
    )
    assert (r.json()["unchanged"], r.json()["created"], r.json()["updated"]) == (2, 0, 0)

    template = await c.get("/api/devices/import-template", params={"format": "csv", "lang": "zh"})
    assert template.content.decode("utf-8-sig").startswith("设备编码,设备名称")


async def test_a_50_mb_file_is_refused(env: Env) -> None:
    big = b"id,name,kind\n" + b"x" * 50_000_000
    r = await env.client.post(
        "/api/devices/import", content=big, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 413
    assert (await env.client.get("/api/devices")).json()["items"] == []


async def test_credentials_are_encrypted_at_rest_and_never_returned(env: Env) -> None:
    c = env.client
    r = await c.post(
        "/api/devices",
        json=camera(
            1,
            rtsp_urls=["rtsp://10.1.1.1/Streaming/Channels/101"],
            credentials={"username": "admin", "password": "Bulk-Pw-77"},
        ),
    )
    assert r.status_code == 201
    raw = await _raw_credentials(env, "cam-001")
    assert raw is not None and b"Bulk-Pw-77" not in raw and b"admin" not in raw
    for path in ["/api/devices", "/api/devices/cam-001", "/api/devices/export"]:
        assert (await c.get(path)).status_code == 200
    urls = await env.hub.registry.rtsp_urls_with_credentials("cam-001")
    assert urls == ["rtsp://admin:Bulk-Pw-77@10.1.1.1/Streaming/Channels/101"]
    # A ciphertext copied to another device's row does not open there.
    await c.post("/api/devices", json=camera(2))
    async with env.hub.store.transaction() as tx:
        await tx.execute("UPDATE devices SET credentials = %s WHERE id = 'cam-002'", [raw])
    with pytest.raises(Exception, match="authentication"):
        await env.hub.registry.credentials_for("cam-002")


async def test_lookup_cache_follows_changes(env: Env) -> None:
    registry = env.hub.registry
    changes: list[DeviceChange] = []
    registry.on_change(changes.append)
    await env.client.post(
        "/api/devices",
        json={
            "id": "btn-1",
            "name": "一键报警",
            "kind": "alarm_point",
            "jurisdiction": "150102001",
            "mqtt_device_id": "school-17-btn",
        },
    )
    cached = registry.lookup_mqtt("school-17-btn")
    assert cached is not None and cached.id == "btn-1" and cached.kind == "alarm_point"
    assert registry.lookup_cached("btn-1") == cached
    assert changes[-1] == DeviceChange("created", ("btn-1",))
    await env.client.delete("/api/devices/btn-1")
    assert registry.lookup_cached("btn-1") is None and registry.lookup_mqtt("school-17-btn") is None
    r = await env.client.post("/api/devices", json={**camera(1), "mqtt_device_id": "dup"})
    assert r.status_code == 201
    r = await env.client.post("/api/devices", json={**camera(2), "mqtt_device_id": "dup"})
    assert r.status_code == 409


async def _raw_credentials(env: Env, device_id: str) -> bytes | None:
    async with env.hub.store.reading() as tx:
        row = await tx.fetchone("SELECT credentials FROM devices WHERE id = %s", [device_id])
    return bytes(row[0]) if row and row[0] is not None else None
