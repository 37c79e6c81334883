"""The MQTT sink against real Mosquitto: QoS 1, JSON with the idempotency key, and a row
counted delivered only after the broker's PUBACK (down or frozen broker: it waits, pending)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters.sinks.mqtt import MqttSink
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.bus import EventBus
from hub.storage import SqlStore
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import add_device
from tests.integration.mqtt_support import machine_broker, unique_prefix
from tests.peers.mosquitto import mosquitto_peer

pytestmark = pytest.mark.mqtt

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@dataclass
class Subscriber:
    """A QoS 1 subscriber recording (qos, decoded JSON) of every message on its topic."""

    messages: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def on_connect(self, client: paho.Client, topic: str) -> None:
        client.subscribe(topic, qos=1)

    def keys(self) -> list[str]:
        return [str(body["idempotency_key"]) for _, body in self.messages]


@contextmanager
def subscriber(
    host: str, port: int, topic: str, *, persistent: bool = False
) -> Iterator[Subscriber]:
    """Subscribe (resubscribing after reconnects) until the block ends."""
    found = Subscriber()
    # A persistent session (own broker only): what is published while it reconnects is
    # queued for it.
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"gwtest-sub-{uuid.uuid4().hex[:8]}",
        clean_session=not persistent,
    )
    client.on_connect = lambda c, *_: found.on_connect(c, topic)
    client.on_subscribe = lambda *_: found.subscribed.set()
    client.on_message = lambda _c, _u, msg: found.messages.append(
        (msg.qos, json.loads(msg.payload))
    )
    client.reconnect_delay_set(1, 1)
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    try:
        assert found.subscribed.wait(10), "subscriber did not subscribe"
        yield found
    finally:
        client.disconnect()
        client.loop_stop()


def settings_for(port: int, topic: str) -> AlarmSettings:
    return AlarmSettings.model_validate(
        {
            "sinks": [
                {
                    "name": "center-mqtt",
                    "type": "mqtt",
                    "url": f"mqtt://127.0.0.1:{port}",
                    "target": topic,
                    "timeout_s": 1.0,
                    # Fast retries for the test; the outage must not dead-letter the row.
                    "max_attempts": 1000,
                }
            ],
            "delivery": {
                "poll_interval_s": 0.05,
                "lease_s": 5.0,
                "backoff_base_s": 0.05,
                "backoff_cap_s": 0.3,
                "concurrency": 2,
            },
        }
    )


async def open_alarms(engine: AlarmEngine, first: int, count: int) -> None:
    events = []
    for n in range(first, first + count):
        device = f"btn-{n:03d}"
        await add_device(engine.store, device, kind="panic")
        events.append(make_event(n, device_id=device, kind="panic.press", payload={"n": n}))
    engine.after_commit(await engine.store.ingest(events, in_transaction=engine.in_transaction))


async def outbox(store: SqlStore) -> dict[str, tuple[str, int, str | None, str | None]]:
    """key -> (state, attempts, last_error, receipt)."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT idempotency_key, state, attempts, last_error, receipt FROM outbox"
        )
    return {str(r[0]): (str(r[1]), int(r[2]), r[3], r[4]) for r in rows}


async def wait_connected(dispatcher: Dispatcher) -> None:
    """Until the sink's background connection is up (a row sent before it would fail)."""
    sink = dispatcher._sinks["center-mqtt"][0]
    assert isinstance(sink, MqttSink)
    async with asyncio.timeout(10):
        while not sink.connected:  # noqa: ASYNC110 - paho's thread connects
            await asyncio.sleep(0.02)


async def one_unsent_row(store: SqlStore, error: str) -> tuple[str, int, str | None, str | None]:
    """The one row not delivered, once its last error mentions `error`."""
    async with asyncio.timeout(15):
        while True:
            rows = await outbox(store)
            waiting = [row for row in rows.values() if row[0] != "delivered"]
            assert len(waiting) <= 1
            if waiting and error in (waiting[0][2] or ""):
                return waiting[0]
            await asyncio.sleep(0.05)


async def wait_all_delivered(store: SqlStore, count: int) -> None:
    async with asyncio.timeout(30):
        while True:
            rows = await outbox(store)
            if len(rows) == count and all(row[0] == "delivered" for row in rows.values()):
                return
            await asyncio.sleep(0.05)


async def test_alarms_reach_a_subscriber_at_qos1_with_their_key(store: SqlStore) -> None:
    host, port = machine_broker()
    topic = f"{unique_prefix()}/alarms"
    settings = settings_for(port, topic)
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    engine.on_outbox(dispatcher.wake)
    with subscriber(host, port, topic) as sub:
        await dispatcher.start()
        try:
            await wait_connected(dispatcher)
            await open_alarms(engine, 0, 3)
            await wait_all_delivered(store, 3)
            async with asyncio.timeout(5):
                while len(sub.messages) < 3:  # noqa: ASYNC110 - paho's thread appends
                    await asyncio.sleep(0.02)
        finally:
            await dispatcher.stop()
    rows = await outbox(store)
    assert sorted(sub.keys()) == sorted(rows)
    for qos, body in sub.messages:
        assert qos == 1
        key = body["idempotency_key"]
        assert key == f"{body['alarm_id']}:{body['revision']}:center-mqtt"
        assert body["event"] == "alarm.open" and body["alarm"]["priority"] == 1
        state, attempts, _, receipt = rows[key]
        assert state == "delivered" and attempts == 1
        assert receipt is not None and receipt.startswith("mqtt PUBACK")


async def test_rows_wait_pending_while_the_broker_is_down_or_silent(
    store: SqlStore, tmp_path: Path
) -> None:
    topic = f"{unique_prefix()}/alarms"
    with mosquitto_peer(tmp_path, persistence=True) as broker:
        settings = settings_for(broker.port, topic)
        engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
        dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
        engine.on_outbox(dispatcher.wake)
        with subscriber(broker.host, broker.port, topic, persistent=True) as sub:
            await dispatcher.start()
            try:
                await open_alarms(engine, 0, 1)
                await wait_all_delivered(store, 1)

                # Down: nothing is delivered, the row waits with the reason.
                broker.stop()
                await open_alarms(engine, 1, 1)
                # (The first attempt may still publish into the dying socket and wait
                # for a PUBACK that never comes; the next one finds it not connected.)
                state, attempts, _, receipt = await one_unsent_row(store, "not connected")
                # Pending between attempts (or caught in the middle of one), never delivered.
                assert state in ("pending", "delivering") and attempts >= 1 and receipt is None

                broker.start()
                await wait_all_delivered(store, 2)

                # Connected but silent (frozen): a publish without PUBACK is no delivery.
                process = broker._process
                assert process is not None
                os.kill(process.pid, signal.SIGSTOP)
                try:
                    await open_alarms(engine, 2, 1)
                    silent = await one_unsent_row(store, "PUBACK")
                    assert silent[1] >= 1 and silent[3] is None
                finally:
                    os.kill(process.pid, signal.SIGCONT)
                await wait_all_delivered(store, 3)
                async with asyncio.timeout(10):
                    while len(set(sub.keys())) < 3:  # noqa: ASYNC110 - paho's thread appends
                        await asyncio.sleep(0.05)
            finally:
                await dispatcher.stop()
    rows = await outbox(store)
    # Every row reached the subscriber; a repeat (the frozen broker's late copy) has its key.
    assert set(sub.keys()) == set(rows)
    assert all(qos == 1 for qos, _ in sub.messages)
