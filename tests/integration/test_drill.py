"""Drills through the real path: MQTT publish → stored → alarm stream → drill sinks only."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.sim import DistrictSpec, build_district
from hub.config import load_settings
from hub.devices.registry import Actor
from hub.runtime import Hub
from tests.helpers import act_as
from tests.integration.alarm_support import SECRET, Receiver, running_receiver
from tests.peers import free_port, peer_missing, port_open

pytestmark = [pytest.mark.mqtt]

SMALL = DistrictSpec(
    villages_per_town=1, grids=8, micro_grids=8, cameras=10, schools=2, panic_buttons=3,
    broadcast_units=1, cameras_per_school=1,
)  # fmt: skip


def _sink(name: str, port: int, *, drill: bool) -> dict[str, Any]:
    return {
        "name": name,
        "type": "webhook",
        "url": f"http://127.0.0.1:{port}/hook",
        "secrets": [SECRET],
        "timeout_s": 2.0,
        "drill": drill,
    }


@pytest.mark.parametrize("postgres", [False, True], ids=["sqlite", "postgresql"])
async def test_drill_reports_each_stage_and_spares_real_sinks(
    tmp_path: Path, postgres: bool, request: pytest.FixtureRequest
) -> None:
    if not port_open("127.0.0.1", 1883):
        peer_missing("mosquitto", "no broker on 127.0.0.1:1883")
    dsn = request.getfixturevalue("pg_dsn") if postgres else None
    drill_port, real_port = free_port(), free_port()
    settings = load_settings(
        None,
        data_dir=tmp_path,
        storage={"url": dsn},
        mqtt={
            "enabled": True,
            "client_id": f"gw-drill-{uuid.uuid4().hex[:8]}",
            # A prefix of the test's own keeps other tests' devices off this hub.
            "topic_prefix": f"gwtest/{uuid.uuid4().hex[:8]}",
            "device_refresh_s": 0.5,
        },
        patrol={"enabled": False},
        alarms={
            "sinks": [
                _sink("exercise", drill_port, drill=True),
                _sink("police", real_port, drill=False),
            ],
            "delivery": {"poll_interval_s": 0.05},
        },
    )
    district = build_district(3, SMALL)
    drill_receiver, real_receiver = Receiver(), Receiver()
    async with (
        running_receiver(drill_receiver, drill_port),
        running_receiver(real_receiver, real_port),
        Hub(settings) as hub,
    ):
        actor = Actor("system:test")
        await hub.registry.upsert_jurisdictions(list(district.nodes), actor=actor)
        await hub.registry.bulk_upsert(list(district.devices), actor=actor, scope=None)
        await hub.mqtt.directory.refresh()
        app = hub.app()
        act_as(app, role="admin")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub", timeout=60
        ) as client:
            response = await client.post(
                "/api/drills", json={"presses": 4, "interval_s": 0.1, "slo_s": 10.0}
            )
            assert response.status_code == 200, response.text
            report = response.json()
            alarms = (await client.get("/api/alarms", params={"limit": 50})).json()

    stages = {stage["stage"]: stage for stage in report["stages"]}
    assert set(stages) == {"committed", "alarm_stream", "sink:exercise"}
    for stage in stages.values():
        assert stage["count"] == 4 and stage["missing"] == 0
        assert stage["p50_s"] <= stage["p99_s"] <= stage["max_s"]
    assert report["sinks_not_for_drills"] == ["police"]
    assert report["passed"] is True
    # Three buttons, four presses: each press opened its own drill alarm (closed after).
    assert len({sample["alarm_id"] for sample in report["samples"]}) == 4
    assert drill_receiver.accepted, "the drill sink got the drill alarms"
    assert all(body["alarm"]["is_drill"] for body in drill_receiver.accepted.values())
    assert not real_receiver.received, "a sink not configured for drills got a drill"
    items = alarms["items"] if isinstance(alarms, dict) else alarms
    assert items and all(item["is_drill"] for item in items)
    assert {item["state"] for item in items} == {"closed"}


async def test_drill_refused_without_mqtt(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path, patrol={"enabled": False})
    async with Hub(settings) as hub:
        app = hub.app()
        act_as(app, role="admin")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub"
        ) as client:
            refused = await client.post("/api/drills", json={"presses": 1})
            act_as(app, role="operator")
            forbidden = await client.post("/api/drills", json={"presses": 1})
    assert refused.status_code == 409
    assert "MQTT is disabled" in refused.json()["detail"]
    assert forbidden.status_code == 403
