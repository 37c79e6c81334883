"""AMQP delivery to the real RabbitMQ, stopped and restarted mid-delivery."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import add_device
from tests.peers import peer_missing, port_open

pytestmark = [pytest.mark.amqp, pytest.mark.slow]
URL = "amqp://guest:guest@127.0.0.1:5672/"


def rabbitmqctl(*args: str) -> None:
    tool = shutil.which("rabbitmqctl")
    assert tool is not None
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def queue_name() -> Iterator[str]:
    if not port_open("127.0.0.1", 5672) or shutil.which("rabbitmqctl") is None:
        peer_missing("rabbitmq", "nothing listens on 127.0.0.1:5672 or rabbitmqctl is missing")
    name = f"gw_test_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        rabbitmqctl("start_app")  # whatever happened, leave the broker running
        rabbitmqctl("await_startup")
        rabbitmqctl("delete_queue", name)


async def drain(queue_name: str) -> list[str]:
    connection = await aio_pika.connect(URL)
    ids: list[str] = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            ids.append(str(message.message_id))
    return ids


async def test_broker_restart_mid_delivery_loses_nothing_and_counts_only_confirms(
    request: pytest.FixtureRequest, tmp_path: Path, queue_name: str
) -> None:
    store = build_store("sqlite", request, tmp_path)
    await store.open()
    settings = AlarmSettings.model_validate(
        {
            # Attempts never run out here: this test is about loss and counting,
            # not dead letters (restarting RabbitMQ takes long on a busy machine).
            "sinks": [
                {
                    "name": "center-mq",
                    "type": "amqp",
                    "url": URL,
                    "target": queue_name,
                    "max_attempts": 1000,
                }
            ],
            "delivery": {"poll_interval_s": 0.1, "backoff_base_s": 0.2, "backoff_cap_s": 1.0},
        }
    )
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    engine.on_outbox(dispatcher.wake)

    async def press(n: int) -> None:
        device = f"btn-{n:03d}"
        await add_device(store, device, kind="panic")
        event = make_event(n, device_id=device, kind="panic.press")
        engine.after_commit(await store.ingest([event], in_transaction=engine.in_transaction))

    async def rows() -> dict[str, str]:
        found = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=100)
        return {
            d.idempotency_key: d.state
            for s in found
            for d in await query_storage.deliveries(engine.store, s.alarm.id)
        }

    await dispatcher.start()
    try:
        for n in range(3):
            await press(n)
        async with asyncio.timeout(20):
            while list((await rows()).values()).count("delivered") < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.1)

        await asyncio.to_thread(rabbitmqctl, "stop_app")
        for n in range(3, 8):
            await press(n)
        await asyncio.sleep(2.0)
        during = await rows()
        # Nothing published while the broker was down counts as delivered.
        assert list(during.values()).count("delivered") == 3

        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")
        async with asyncio.timeout(60):
            while list((await rows()).values()).count("delivered") < 8:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await dispatcher.stop()
        await store.close()

    final = await asyncio.wait_for(drain(queue_name), 30)
    delivered = {key for key, state in (await _rows_after(request, tmp_path)).items() if state}
    assert set(final) >= delivered  # every row counted delivered is in the durable queue
    assert len(set(final)) == 8


async def _rows_after(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    store = build_store("sqlite", request, tmp_path)
    await store.open()
    try:
        async with store.reading() as tx:
            found = await tx.fetchall(
                "SELECT idempotency_key, state FROM outbox WHERE state = 'delivered'"
            )
    finally:
        await store.close()
    return {str(key): str(state) for key, state in found}
