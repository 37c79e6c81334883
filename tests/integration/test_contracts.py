"""Services receive the project's contracts, so fakes of them can be handed in: the
dispatcher delivers through any `Sink`, the hub runs any `Adapter` with its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.sinks.errors import DeliveryFailed
from adapters.sinks.webhook import WebhookSink
from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from hub.config import load_settings
from hub.contracts import Adapter, Sink, Submit
from hub.runtime import Hub
from hub.storage import SqlStore, open_store
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import SECRET, add_device

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


class MemorySink:
    """A sink that keeps what it is given; its first answer is a temporary failure."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = self.closed = False
        self.attempts: list[str] = []
        self.delivered: dict[str, bytes] = {}

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def deliver(self, message_id: str, body: bytes, content_type: str) -> str:
        self.attempts.append(message_id)
        if len(self.attempts) == 1:
            raise DeliveryFailed("busy, try later")
        self.delivered[message_id] = body
        return f"kept {len(self.delivered)}"


async def test_the_dispatcher_delivers_through_any_sink(store: SqlStore) -> None:
    settings = AlarmSettings.model_validate(
        {
            "sinks": [
                {"name": "center", "type": "webhook", "url": "http://127.0.0.1:9/x",
                 "secrets": [SECRET]}
            ],
            "delivery": {"poll_interval_s": 0.05, "backoff_base_s": 0.05, "backoff_cap_s": 0.1},
        }
    )  # fmt: skip
    fake = MemorySink("center")
    assert isinstance(fake, Sink)
    assert isinstance(WebhookSink("w", "http://127.0.0.1:9/x", [SECRET]), Sink)
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher(engine.store, settings.delivery, {"center": (fake, settings.sinks[0])})
    engine.on_outbox(dispatcher.wake)
    await add_device(store, "btn-001", kind="panic")
    result = await store.ingest(
        [make_event(1, device_id="btn-001", kind="panic.press")],
        in_transaction=engine.in_transaction,
    )
    engine.after_commit(result)
    (stored,) = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=5)
    await dispatcher.start()
    try:
        # Until the delivery is recorded (the sink's answer alone is not yet stored).
        async with asyncio.timeout(20):
            while [  # noqa: ASYNC110 - polling storage
                d.state for d in await query_storage.deliveries(engine.store, stored.alarm.id)
            ] != ["delivered"]:
                await asyncio.sleep(0.02)
    finally:
        await dispatcher.stop()
    key = f"{stored.alarm.id}:1:center"
    assert fake.started and fake.closed
    assert fake.attempts == [key, key]  # retried after the temporary failure
    assert b'"event":"alarm.open"' in fake.delivered[key]
    (delivery,) = await query_storage.deliveries(engine.store, stored.alarm.id)
    assert delivery.state == "delivered" and delivery.receipt == "kept 1"


class PressingButtons:
    """A device-protocol adapter of the test's own: one press when started, one when
    stopped (which the hub must still store: adapters stop before the writer drains)."""

    def __init__(self, submit: Submit) -> None:
        self.submit = submit
        self.running = False
        self.calls: list[str] = []

    async def start(self) -> None:
        self.running = True
        self.calls.append("start")
        await self.submit(make_event(1, device_id="btn-001", kind="panic.press"), None)

    async def stop(self) -> None:
        self.calls.append("stop")
        await self.submit(make_event(2, device_id="btn-002", kind="panic.press"), None)
        self.running = False


async def test_the_hub_runs_an_adapter_handed_to_it(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path)
    built: list[PressingButtons] = []

    def pressing_buttons(submit: Submit) -> PressingButtons:
        built.append(PressingButtons(submit))
        return built[-1]

    hub = Hub(settings, adapters=[pressing_buttons])
    [buttons] = built
    assert isinstance(buttons, Adapter)
    assert all(isinstance(s, Adapter) for s in (hub.mqtt, hub.onvif, hub.patrol))
    seeding = open_store(settings.storage_url())
    await seeding.open()
    try:
        for device in ("btn-001", "btn-002"):
            await add_device(seeding, device, kind="panic")
    finally:
        await seeding.close()
    async with hub:
        assert buttons.running
        async with asyncio.timeout(20):
            while not await query_storage.search(  # noqa: ASYNC110 - polling storage
                hub.store, AlarmFilter(), scope_paths=None, limit=5
            ):
                await asyncio.sleep(0.02)
    assert not buttons.running
    reopened = open_store(settings.storage_url())
    await reopened.open()
    try:
        async with reopened.reading() as tx:
            rows = await tx.fetchall("SELECT device_id FROM alarms ORDER BY device_id")
    finally:
        await reopened.close()
    assert [row[0] for row in rows] == ["btn-001", "btn-002"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_fake_adapter_handed_to_the_hub_factory_is_run_like_the_built_in_ones(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Every device-protocol service goes through the `Adapter` contract: the built-in
    ones and one handed to `Hub(adapters=...)` start after the writer, and on shutdown
    the fake's stop is called before the writer drains (its last event is stored)."""
    url = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url})
    built: list[PressingButtons] = []

    def pressing_buttons(submit: Submit) -> PressingButtons:
        built.append(PressingButtons(submit))
        return built[-1]

    hub = Hub(settings, adapters=[pressing_buttons])
    assert [a.name for a in hub.adapters] == [
        "mqtt",
        "broadcast",
        "patrol",
        "onvif",
        "evidence",
        "gb28181",
        "PressingButtons",
    ]
    assert all(isinstance(a.adapter, Adapter) for a in hub.adapters)
    [buttons] = built
    async with hub:
        assert buttons.calls == ["start"]
        await hub.writer.flush()
        [started] = await hub.store.events(kind="panic.press", limit=10)
        assert started.device_id == "btn-001"
    assert buttons.calls == ["start", "stop"]
    reopened = open_store(settings.storage_url())
    await reopened.open()
    try:
        stored = await reopened.events(kind="panic.press", limit=10)
    finally:
        await reopened.close()
    assert sorted(e.device_id for e in stored) == ["btn-001", "btn-002"]
