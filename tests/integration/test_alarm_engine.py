"""Events become alarms in the event's own transaction; repeats, auto-close, SLA across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import hub.alarms.engine as alarm_engine_module
from alarms.models import AlarmState
from alarms.rules import evaluate as real_evaluate
from camera_registry.events import DeviceEvent
from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from hub.storage import SqlStore, Tx
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import SECRET, Clock, add_device

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

SINKS: list[dict[str, Any]] = [
    {"name": "center", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secrets": [SECRET]},
    {
        "name": "supervisor",
        "type": "webhook",
        "url": "http://127.0.0.1:9/sup",
        "secrets": [SECRET],
        "escalations_only": True,
    },
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def engine_for(store: SqlStore, clock: Clock, **extra: Any) -> AlarmEngine:
    settings = AlarmSettings.model_validate({"sinks": SINKS, **extra})
    return AlarmEngine(store, settings, clock=clock, bus=EventBus[AlarmChange]("changes"))


async def ingest(engine: AlarmEngine, *events: DeviceEvent) -> None:
    result = await engine.store.ingest(list(events), in_transaction=engine.in_transaction)
    engine.after_commit(result)


async def count(store: SqlStore, table: str) -> int:
    async with store.reading() as tx:
        row = await tx.fetchone(f"SELECT COUNT(*) FROM {table}")
    assert row is not None
    return int(row[0])


def press(n: int, device: str = "btn-001") -> DeviceEvent:
    return make_event(n, device_id=device, kind="panic.press", source="mqtt", payload={"n": n})


async def test_panic_press_opens_a_p1_alarm_announced_only_after_commit(store: SqlStore) -> None:
    clock = Clock()
    engine = engine_for(store, clock)
    await add_device(store, "cam-001")
    await add_device(store, "btn-001", kind="panic", linked_cameras=["cam-001"], name="School 1")
    listener = engine.bus.subscribe(name="test")

    result = await store.ingest([press(1)], in_transaction=engine.in_transaction)
    assert listener._queue.empty()  # committed but not yet announced
    engine.after_commit(result)

    change = await asyncio.wait_for(listener.get(), 1)
    assert change.action == "open" and change.jurisdiction_path == "/150102/150102001/"
    (alarm,) = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=10)
    assert alarm.alarm.priority.level == 1 and alarm.alarm.state is AlarmState.NEW
    assert alarm.alarm.title == "Panic alarm: School 1"
    assert alarm.rule == "panic_press"
    assert alarm.details["linkage"]["snapshot_cameras"] == ["cam-001"]
    deliveries = await query_storage.deliveries(engine.store, alarm.alarm.id)
    # The supervisor sink only hears escalations.
    assert [(d.sink, d.revision, d.state) for d in deliveries] == [("center", 1, "pending")]
    assert deliveries[0].idempotency_key == f"{alarm.alarm.id}:1:center"


async def test_a_failing_hook_stores_neither_the_event_nor_the_alarm(store: SqlStore) -> None:
    engine = engine_for(store, Clock())
    await add_device(store, "btn-001", kind="panic")

    async def failing(tx: Tx, events: list[DeviceEvent]) -> object:
        await engine.in_transaction(tx, events)
        raise RuntimeError("storage hiccup after the alarm rows were written")

    with pytest.raises(RuntimeError):
        await store.ingest([press(1)], in_transaction=failing)
    for table in ("events", "alarms", "alarm_history", "alarm_changes", "outbox"):
        assert await count(store, table) == 0, table


async def test_repeats_update_one_open_alarm(store: SqlStore) -> None:
    clock = Clock()
    engine = engine_for(store, clock)
    await add_device(store, "btn-001", kind="panic")
    await ingest(engine, press(1), press(2))  # two presses in one batch
    clock.advance(5)
    await ingest(engine, press(3))

    (stored,) = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=10)
    assert stored.alarm.count == 3 and stored.alarm.revision == 3
    history = await query_storage.history(engine.store, stored.alarm.id)
    assert [h.action.value for h in history] == ["open", "repeat", "repeat"]
    # P1 repeats are never grouped: every revision goes out.
    assert [d.revision for d in await query_storage.deliveries(engine.store, stored.alarm.id)] == [
        1,
        2,
        3,
    ]


async def test_maintenance_alarm_closes_itself_when_the_device_recovers(store: SqlStore) -> None:
    clock = Clock()
    engine = engine_for(store, clock)
    await add_device(store, "cam-009")
    await ingest(engine, make_event(1, device_id="cam-009", kind="health.offline"))
    clock.advance(600)
    await ingest(engine, make_event(2, device_id="cam-009", kind="health.online"))

    (stored,) = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=10)
    assert stored.alarm.state is AlarmState.CLOSED
    assert stored.alarm.closed_reason is not None and "recovered" in stored.alarm.closed_reason
    history = await query_storage.history(engine.store, stored.alarm.id)
    assert [(h.action.value, h.actor) for h in history] == [
        ("open", "rules"),
        ("auto_close", "system"),
    ]
    # A new outage opens a new alarm (the closed one stays closed).
    await ingest(engine, make_event(3, device_id="cam-009", kind="health.offline"))
    assert await count(store, "alarms") == 2


async def test_an_event_the_rules_cannot_evaluate_is_rejected_and_the_batch_goes_on(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(store, Clock())
    await add_device(store, "btn-001", kind="panic")
    await add_device(store, "btn-002", kind="panic")
    real = real_evaluate

    def flaky(event: DeviceEvent, *args: Any, **kwargs: Any) -> Any:
        if event.device_id == "btn-001":
            raise ValueError("rule template produced an invalid key")
        return real(event, *args, **kwargs)

    monkeypatch.setattr(alarm_engine_module, "evaluate", flaky)
    await ingest(engine, press(1, "btn-001"), press(2, "btn-002"))

    alarms = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=9)
    assert [a.alarm.device_id for a in alarms] == ["btn-002"]
    assert await count(store, "events") == 2
    (rejected,) = await store.rejected_messages()
    assert rejected.device_id == "btn-001" and "invalid key" in rejected.reason


async def test_unacknowledged_alarm_escalates_on_time_across_a_restart(
    request: pytest.FixtureRequest, tmp_path: Path, store: SqlStore
) -> None:
    clock = Clock()
    engine = engine_for(store, clock)
    await add_device(store, "btn-001", kind="panic")
    await ingest(engine, press(1))
    clock.advance(30)
    assert await engine.escalate_due() == 0  # P1 acknowledge deadline is 60 s
    await store.close()

    # A new process: nothing in memory, only the stored deadlines.
    backend = request.node.callspec.params["store"]
    restarted = build_store(backend, request, tmp_path)
    await restarted.open()
    try:
        clock.advance(31)
        engine2 = engine_for(restarted, clock)
        assert await engine2.escalate_due() == 1
        (stored,) = await query_storage.search(
            engine2.store, AlarmFilter(), scope_paths=None, limit=10
        )
        assert stored.alarm.escalation_level == 1
        assert stored.alarm.ack_due == clock() + timedelta(seconds=60)
        history = await query_storage.history(engine2.store, stored.alarm.id)
        assert history[-1].action.value == "escalate"
        assert history[-1].details["breaches"] == ["acknowledge"]
        sinks = [
            (d.sink, d.revision)
            for d in await query_storage.deliveries(engine2.store, stored.alarm.id)
        ]
        assert sinks == [("center", 1), ("center", 2), ("supervisor", 2)]
        # Not again until the re-notify interval passed.
        assert await engine2.escalate_due() == 0
        # Acknowledged in time for the next deadline: no further acknowledge escalation.
        await engine2.act(stored.alarm.id, "acknowledge", "user:op1", visible=lambda s: True)
        clock.advance(120)
        assert await engine2.escalate_due() == 0
    finally:
        await restarted.close()
