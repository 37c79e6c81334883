"""The broadcast API against simulated units on the machine's Mosquitto, through a real hub."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import httpx
import pytest

from adapters.sim import BroadcastUnitSim
from hub.auth import audit_storage as audit
from tests.helpers import act_as
from tests.integration.hub_mqtt_support import (
    OTHER_TOWN_PATH,
    hub_with_mqtt,
    mqtt_hub_settings,
    register_device,
    storage_url,
    wait_until,
)
from tests.integration.mqtt_support import unique_prefix

pytestmark = pytest.mark.mqtt

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
UNIT = "school-05-spk-1"
UNIT_MQTT_ID = "spk-5f00a1"
FAR_UNIT = "town-09-spk-1"
TTS = {"action": "tts", "text": "请立即疏散到操场", "priority": 1}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("behaviour", "outcome", "attempts"),
    [
        ("ack", "acked", 1),
        ("ignore_first", "acked", 2),
        ("fail", "failed", 1),
        ("ignore", "timed_out", 2),
    ],
)
async def test_unit_command_outcome_is_recorded_and_visible(
    backend: str,
    behaviour: Literal["ack", "fail", "ignore", "ignore_first"],
    outcome: str,
    attempts: int,
    broker: tuple[str, int],
    client_id: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = storage_url(backend, request)
    prefix = unique_prefix()
    async with hub_with_mqtt(tmp_path, url, mqtt_hub_settings(*broker, prefix, client_id)) as (
        hub,
        client,
    ):
        await register_device(
            hub.store, UNIT, "broadcast_unit", mqtt_device_id=UNIT_MQTT_ID, tags=["school-05"]
        )
        assert hub.mqtt.adapter is not None and await hub.mqtt.adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(UNIT_MQTT_ID), what="registry")
        with BroadcastUnitSim(
            UNIT_MQTT_ID, behaviour=behaviour, host=broker[0], port=broker[1], prefix=prefix
        ) as unit:
            accepted = await client.post(f"/api/broadcast/units/{UNIT}/commands", json=TTS)
            assert accepted.status_code == 202, accepted.text
            body = accepted.json()
            assert body["outcome"] == "pending"
            location = accepted.headers["location"]
            assert location == f"/api/broadcast/commands/{body['id']}"

            async def ended() -> bool:
                return bool((await client.get(location)).json()["outcome"] != "pending")

            await wait_until(ended, timeout=30, what="command ended")
            record = (await client.get(location)).json()
            assert record["outcome"] == outcome
            assert record["attempts"] == attempts
            assert record["unit_id"] == UNIT
            assert record["requested_by"] == "user:duty-officer"
            assert record["command"]["text"] == TTS["text"]
            assert record["finished_at"] is not None
            if outcome == "failed":
                assert record["reason"] == "amplifier fault"
            # The unit got the command on its MQTT id's topic, under the recorded correlation id.
            assert {c.correlation_id for c in unit.commands} == {record["correlation_id"]}

        entries = await audit.query(hub.store, action="broadcast.command")
        assert [(e.actor, e.target, e.details["command_id"]) for e in entries] == [
            ("user:duty-officer", f"device:{UNIT}", body["id"])
        ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_wait_zone_scope_and_bad_requests(
    backend: str,
    broker: tuple[str, int],
    client_id: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    url = storage_url(backend, request)
    prefix = unique_prefix()
    async with hub_with_mqtt(tmp_path, url, mqtt_hub_settings(*broker, prefix, client_id)) as (
        hub,
        client,
    ):
        await register_device(hub.store, UNIT, "broadcast_unit", tags=["school-05", "north"])
        await register_device(hub.store, "school-05-spk-2", "broadcast_unit", tags=["school-05"])
        await register_device(
            hub.store,
            FAR_UNIT,
            "broadcast_unit",
            jurisdiction_path=OTHER_TOWN_PATH,
            tags=["school-05"],
        )
        assert hub.mqtt.adapter is not None and await hub.mqtt.adapter.wait_connected(5)
        await wait_until(lambda: len(hub.mqtt.directory) == 3, what="registry")
        sims = [
            BroadcastUnitSim(name, host=broker[0], port=broker[1], prefix=prefix)
            for name in (UNIT, "school-05-spk-2", FAR_UNIT)
        ]
        for sim in sims:
            sim.start()
        try:
            waited = await client.post(
                f"/api/broadcast/units/{UNIT}/commands?wait=true",
                json={"action": "volume", "volume": 80},
            )
            assert waited.status_code == 200, waited.text
            assert waited.json()["outcome"] == "acked"
            assert sims[0].volume == 80

            zone = await client.post(
                "/api/broadcast/zones/school-05/commands?wait=true", json={"action": "stop"}
            )
            assert zone.status_code == 200, zone.text
            commands = zone.json()["commands"]
            # The unit in another town is tagged too, but lies outside the caller's scope.
            assert sorted(c["unit_id"] for c in commands) == [UNIT, "school-05-spk-2"]
            assert {c["outcome"] for c in commands} == {"acked"}
            assert sims[2].commands == []

            listed = (await client.get("/api/broadcast/units")).json()
            assert [u["id"] for u in listed] == [UNIT, "school-05-spk-2"]
            assert {u["status"] for u in listed} <= {"online", "busy"}

            play = {"action": "play", "url": "alarm.mp3"}
            assert (
                await client.post("/api/broadcast/units/nope/commands", json=play)
            ).status_code == 404
            out_of_scope = await client.post(f"/api/broadcast/units/{FAR_UNIT}/commands", json=play)
            assert out_of_scope.status_code == 404
            assert out_of_scope.headers["content-type"].startswith("application/problem+json")
            assert (
                await client.post("/api/broadcast/zones/none/commands", json=play)
            ).status_code == 404

            bad = await client.post(
                f"/api/broadcast/units/{UNIT}/commands", json={"action": "volume", "volume": 101}
            )
            assert bad.status_code == 422
            assert bad.headers["content-type"].startswith("application/problem+json")
            assert any(e["field"].startswith("body") for e in bad.json()["errors"])
            missing_text = await client.post(
                f"/api/broadcast/units/{UNIT}/commands", json={"action": "tts"}
            )
            assert missing_text.status_code == 422

            assert (await client.get("/api/broadcast/commands/0123abcd")).status_code == 404
        finally:
            for sim in sims:
                sim.stop()


async def test_commands_of_another_jurisdiction_are_not_found(
    broker: tuple[str, int], client_id: str, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    settings = mqtt_hub_settings(*broker, prefix, client_id)
    async with hub_with_mqtt(tmp_path / "a", None, settings, role="admin", scope=("/",)) as (
        hub,
        admin,
    ):
        await register_device(
            hub.store, FAR_UNIT, "broadcast_unit", jurisdiction_path=OTHER_TOWN_PATH
        )
        assert hub.mqtt.adapter is not None and await hub.mqtt.adapter.wait_connected(5)
        await wait_until(lambda: hub.mqtt.directory.lookup(FAR_UNIT), what="registry")
        with BroadcastUnitSim(FAR_UNIT, host=broker[0], port=broker[1], prefix=prefix):
            sent = await admin.post(
                f"/api/broadcast/units/{FAR_UNIT}/commands?wait=true", json={"action": "stop"}
            )
        assert sent.status_code == 200
        command_id = sent.json()["id"]

        app = hub.app()
        act_as(app, role="dispatcher", scope=("/150102/150102001/",))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as other:
            assert (await other.get(f"/api/broadcast/commands/{command_id}")).status_code == 404
            assert (await other.get("/api/broadcast/units")).json() == []
            # Dispatchers read; they do not command.
            refused = await other.post(
                f"/api/broadcast/units/{FAR_UNIT}/commands", json={"action": "stop"}
            )
            assert refused.status_code == 403
        act_as(app, role="dispatcher", scope=(OTHER_TOWN_PATH,))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://hub"
        ) as same:
            seen = await same.get(f"/api/broadcast/commands/{command_id}")
            assert seen.status_code == 200 and seen.json()["outcome"] == "acked"
