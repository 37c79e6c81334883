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
