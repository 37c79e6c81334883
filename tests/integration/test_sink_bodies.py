"""What webhook, AMQP and MQTT receivers really get matches the published JSON Schema."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import jsonschema
import pytest

from adapters.sinks import ALARM_BODY_SCHEMA
from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from hub.storage import SqlStore
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import SECRET, add_device
from tests.integration.mqtt_support import machine_broker, unique_prefix
from tests.integration.outbox_receiver import KeyedReceiver, serve_receiver
from tests.integration.test_alarm_mqtt_sink import subscriber
from tests.peers import free_port, peer_missing, port_open

pytestmark = [pytest.mark.mqtt, pytest.mark.amqp]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(ALARM_BODY_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def problems(body: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(body)]


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store("sqlite", request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def _amqp_bodies(queue_name: str, count: int) -> list[dict[str, Any]]:
    connection = await aio_pika.connect(AMQP_URL)
    found: list[dict[str, Any]] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        async with asyncio.timeout(30):
            while len(found) < count:
                message = await queue.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.1)
                    continue
                assert message.content_type == "application/json"
                found.append(json.loads(message.body))
        await queue.delete(if_unused=False, if_empty=False)
    return found


async def test_delivered_bodies_match_the_schema_on_every_sink(store: SqlStore) -> None:
    if not port_open("127.0.0.1", 5672) or shutil.which("rabbitmqctl") is None:
        peer_missing("rabbitmq", "nothing listens on 127.0.0.1:5672")
    host, mqtt_port = machine_broker()
    topic = f"{unique_prefix()}/alarms"
    queue_name = f"gw_test_{uuid.uuid4().hex[:10]}"
    port = free_port()
    receiver = KeyedReceiver(delay_s=0.0, signed=True)
    settings = AlarmSettings.model_validate(
        {
            "sinks": [
                {
                    "name": "governance",
                    "type": "webhook",
                    "url": receiver.url(port),
                    "secrets": [SECRET],
                    "timeout_s": 5.0,
                },
                {
                    "name": "police",
                    "type": "amqp",
                    "url": AMQP_URL,
                    "target": queue_name,
                    "timeout_s": 5.0,
                },
                {
                    "name": "center-mqtt",
                    "type": "mqtt",
                    "url": f"mqtt://{host}:{mqtt_port}",
                    "target": topic,
                    "timeout_s": 5.0,
                },
            ],
            "delivery": {"poll_interval_s": 0.05, "lease_s": 5.0, "backoff_base_s": 0.05},
        }
    )
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    engine.on_outbox(dispatcher.wake)
    await add_device(
        store, "btn-1", kind="panic", name="九原区实验小学门卫室", latitude=40.6, longitude=109.9
    )
    with subscriber(host, mqtt_port, topic) as mqtt_bodies:
        async with serve_receiver(receiver, port):
            await dispatcher.start()
            try:
                event = make_event(1, device_id="btn-1", kind="panic.press", at=engine.now())
                engine.after_commit(
                    await store.ingest([event], in_transaction=engine.in_transaction)
                )
                (found,) = await query_storage.search(
                    engine.store, AlarmFilter(device_id="btn-1"), scope_paths=None, limit=1
                )
                alarm = found.alarm.id
                await engine.act(alarm, "acknowledge", "user:op1", visible=lambda s: True)
                await engine.act(alarm, "resolve", "user:op1", visible=lambda s: True, note="ok")
                amqp_bodies = await _amqp_bodies(queue_name, 3)
                async with asyncio.timeout(30):
                    # Both fill from other threads / the receiver's handler.
                    while len(receiver.bodies) < 3 or len(mqtt_bodies.messages) < 3:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
            finally:
                await dispatcher.stop()
    webhook_bodies = [json.loads(body) for body in receiver.bodies.values()]
    delivered = {
        "webhook": webhook_bodies,
        "amqp": amqp_bodies,
        "mqtt": [body for _, body in mqtt_bodies.messages],
    }
    for sink, bodies in delivered.items():
        events = sorted(body["event"] for body in bodies)
        assert events == ["alarm.acknowledge", "alarm.open", "alarm.resolve"], sink
        for body in bodies:
            assert problems(body) == [], (sink, body)
            assert body["alarm"]["title"] and body["location"]["latitude"] == 40.6


def test_the_schema_refuses_what_a_receiver_could_not_rely_on() -> None:
    body: dict[str, Any] = {
        "event": "alarm.open",
        "alarm_id": str(uuid.uuid4()),
        "revision": 1,
        "jurisdiction": None,
        "location": None,
        "change": {
            "at": "2026-12-06T02:00:00+00:00",
            "actor": "system:engine",
            "action": "open",
            "from_state": None,
            "to_state": "new",
            "note": None,
            "details": {},
        },
        "alarm": {},
    }
    found = problems(body)
    assert any("idempotency_key" in problem for problem in found)
    assert any("'priority' is a required property" in problem for problem in found)
    body["change"]["to_state"] = "lost"
    assert any("'lost' is not one of" in problem for problem in problems(body))
