"""Schools short of DB15/T 3968 (address, coordinates, two linked cameras with a stream),
listed for the maintenance staff of their jurisdiction only."""

from __future__ import annotations

from pathlib import Path

import httpx

from hub.config import load_settings
from hub.runtime import Hub
from hub.storage import Json
from tests.helpers import act_as
from tests.integration.hub_mqtt_support import OTHER_TOWN_PATH, SCHOOL_PATH, register_device


async def _button(
    hub: Hub, device_id: str, cameras: list[str], *, address: str | None, located: bool, path: str
) -> None:
    await register_device(hub.store, device_id, "alarm_point", jurisdiction_path=path)
    async with hub.store.transaction() as tx:
        await tx.execute(
            "UPDATE devices SET project = 'school_alarm', linked_cameras = %s, address = %s,"
            " latitude = %s, longitude = %s WHERE id = %s",
            (
                Json(cameras),
                address,
                40.6 if located else None,
                109.8 if located else None,
                device_id,
            ),
        )


async def test_maintenance_lists_the_schools_short_of_the_rule_in_its_scope(
    tmp_path: Path,
) -> None:
    settings = load_settings(None, data_dir=tmp_path, evidence={"enabled": False})
    async with Hub(settings) as hub:
        for camera, urls in (("cam-1", ["rtsp://10.0.0.1/1"]), ("cam-2", ["rtsp://10.0.0.1/2"])):
            await register_device(hub.store, camera, "camera")
            async with hub.store.transaction() as tx:
                await tx.execute(
                    "UPDATE devices SET rtsp_urls = %s WHERE id = %s", (Json(urls), camera)
                )
        await register_device(hub.store, "cam-dark", "camera")  # no stream
        await _button(
            hub, "btn-ok", ["cam-1", "cam-2"], address="路1号", located=True, path=SCHOOL_PATH
        )
        await _button(
            hub, "btn-one", ["cam-1", "cam-dark"], address="路2号", located=True, path=SCHOOL_PATH
        )
        await _button(hub, "btn-bare", ["cam-x"], address=None, located=False, path=SCHOOL_PATH)
        await _button(hub, "btn-b", [], address=None, located=False, path=OTHER_TOWN_PATH)

        app = hub.app()
        act_as(app, role="maintenance", scope=(SCHOOL_PATH,), subject="fixer")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub"
        ) as client:
            response = await client.get("/api/evidence/shortfalls")
        assert response.status_code == 200
        by_id = {item["device_id"]: item for item in response.json()}
        assert set(by_id) == {"btn-one", "btn-bare"}  # btn-b is another town's
        assert by_id["btn-one"]["problems"] == ["too_few_cameras"]
        assert by_id["btn-one"]["cameras_without_stream"] == ["cam-dark"]
        assert by_id["btn-one"]["usable_cameras"] == 1
        assert by_id["btn-bare"]["problems"] == ["no_address", "no_coordinates", "too_few_cameras"]
        assert by_id["btn-bare"]["missing_cameras"] == ["cam-x"]


_SHEET = (
    "设备编码,设备名称,设备类型,所属项目,所属辖区,经度,纬度,安装地址,RTSP地址,关联摄像机\n"
    "cam-gate,第三小学大门,摄像机,校园一键报警,150102001,109.84,40.60,建华南路1号,"
    "rtsp://10.0.0.1/gate,\n"
    "cam-yard,第三小学操场,摄像机,校园一键报警,150102001,109.84,40.60,建华南路1号,"
    "rtsp://10.0.0.1/yard,\n"
    "btn-ok,第三小学一键报警,报警点,校园一键报警,150102001,109.84,40.60,建华南路1号,,"
    "cam-gate;cam-yard\n"
    "btn-one,第四小学一键报警,报警点,校园一键报警,150102001,109.85,40.61,建华南路2号,,cam-gate\n"
    "btn-noaddr,第五小学一键报警,报警点,校园一键报警,150102001,109.86,40.62,,,cam-gate;cam-yard\n"
    "btn-nowhere,第六小学一键报警,报警点,校园一键报警,150102001,,,建华南路6号,,cam-gate;cam-yard\n"
)


async def test_a_sheet_import_refuses_school_buttons_without_address_or_coordinates(
    tmp_path: Path,
) -> None:
    """The importer names the row and the column; the rest of the sheet is kept
    (partial import) and the maintenance view lists the school with one camera."""
    settings = load_settings(None, data_dir=tmp_path, evidence={"enabled": False})
    async with Hub(settings) as hub:
        async with hub.store.transaction() as tx:
            for code, name, level, parent, path in (
                ("150102", "九原区", "district", None, "/150102/"),
                ("150102001", "沙河街道", "town", "150102", SCHOOL_PATH),
            ):
                await tx.execute(
                    "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (code, name, level, parent, path),
                )
        app = hub.app()
        act_as(app, role="maintenance", scope=(SCHOOL_PATH,), subject="fixer")
        files = {"file": ("学校.csv", _SHEET.encode(), "text/csv")}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub"
        ) as client:
            refused = await client.post("/api/devices/import", files=files)
            assert refused.status_code == 422
            problems = {(e["row"], e["column"], e["reason"]) for e in refused.json()["errors"]}
            assert problems == {
                (6, "安装地址", "a school panic button needs its address (DB15/T 3968)"),
                (7, "经度", "a school panic button needs its coordinates (DB15/T 3968)"),
            }
            # All or nothing: the refused sheet wrote nothing.
            assert (await client.get("/api/devices")).json()["items"] == []

            kept = await client.post("/api/devices/import", params={"partial": "true"}, files=files)
            assert kept.status_code == 200, kept.text
            assert kept.json()["created"] == 4
            assert {e["row"] for e in kept.json()["errors"]} == {6, 7}
            listed = await client.get("/api/devices", params={"kind": "alarm_point"})
            assert {d["id"] for d in listed.json()["items"]} == {"btn-ok", "btn-one"}

            short = (await client.get("/api/evidence/shortfalls")).json()
        assert [(s["device_id"], s["problems"], s["usable_cameras"]) for s in short] == [
            ("btn-one", ["too_few_cameras"], 1)
        ]
