"""A press storm through the batched alarm engine: exact counts, full history, few deliveries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alarms.models import AlarmState
from camera_registry.events import DeviceEvent
from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter, StoredAlarm
from hub.bus import EventBus
from hub.storage import SqlStore
from hub.storage.base import from_json
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import SECRET, Clock, add_device

pytestmark = pytest.mark.timeout(120)

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SINKS: list[dict[str, Any]] = [
    {"name": "center", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secrets": [SECRET]},
]
BUTTONS = [f"btn-{n:03d}" for n in range(1, 6)]


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


async def ingest(engine: AlarmEngine, events: list[DeviceEvent]) -> None:
    result = await engine.store.ingest(events, in_transaction=engine.in_transaction)
    engine.after_commit(result)


async def rows(store: SqlStore, sql: str) -> list[tuple[Any, ...]]:
    async with store.reading() as tx:
        return await tx.fetchall(sql)


def drain(listener: Any) -> list[AlarmChange]:
    """Every change announced so far (announcing happens synchronously after commit)."""
    found = []
    while not listener._queue.empty():
        item = listener._queue.get_nowait()
        if isinstance(item, AlarmChange):
            found.append(item)
    return found


async def alarms_by_device(engine: AlarmEngine) -> dict[str, StoredAlarm]:
    found = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=100)
    return {stored.alarm.device_id or "": stored for stored in found}


async def test_a_press_storm_keeps_exact_counts_complete_history_and_few_deliveries(
    store: SqlStore,
) -> None:
    clock = Clock()
    engine = engine_for(store, clock)
    for button in BUTTONS:
        await add_device(store, button, kind="panic")
    listener = engine.bus.subscribe(maxsize=10_000, name="test")
    presses = [
        make_event(n, device_id=BUTTONS[n % 5], kind="panic.press", source="mqtt")
        for n in range(500)
    ]
    batches = [presses[start : start + 125] for start in range(0, 500, 125)]
    for batch in batches:
        clock.advance(1)
        await ingest(engine, batch)
    last_batch_at = clock()

    alarms = await alarms_by_device(engine)
    assert sorted(alarms) == BUTTONS
    for button, stored in alarms.items():
        alarm = stored.alarm
        assert alarm.state is AlarmState.NEW and alarm.priority.level == 1
        assert alarm.count == 100, button
        assert alarm.last_seen_at == last_batch_at
        # One revision for the opening press, then one per batch for the repeats.
        assert alarm.revision == 1 + len(batches)

        history = await query_storage.history(engine.store, alarm.id)
        assert [h.action.value for h in history] == ["open"] + ["repeat"] * len(batches)
        assert [h.revision for h in history] == list(range(1, alarm.revision + 1))
        # Every press of this button is accounted for, once, in order.
        pressed = [str(e.event_id) for e in presses if e.device_id == button]
        recorded = [history[0].details["event_id"]]
        for entry in history[1:]:
            listed = [item["event_id"] for item in entry.details["events"]]
            assert entry.details["repeats"] == len(listed)
            assert entry.details["count"] == len(recorded) + len(listed)
            recorded += listed
        assert recorded == pressed

        # P1: every revision is delivered, but once per batch, not once per press.
        deliveries = await query_storage.deliveries(engine.store, alarm.id)
        assert [(d.sink, d.revision) for d in deliveries] == [
            ("center", revision) for revision in range(1, alarm.revision + 1)
        ]
        assert deliveries[-1].idempotency_key == f"{alarm.id}:{alarm.revision}:center"

    (outbox,) = await rows(store, "SELECT COUNT(*) FROM outbox")
    assert outbox[0] == len(BUTTONS) * (1 + len(batches))
    changes = await rows(store, "SELECT seq, alarm_id, revision, action FROM alarm_changes")
    assert len(changes) == len(BUTTONS) * (1 + len(batches))
    announced = drain(listener)
    assert [(c.seq, str(c.alarm_id), c.revision, c.action) for c in announced] == sorted(
        (int(seq), str(alarm_id), int(revision), action)
        for seq, alarm_id, revision, action in changes
    )
    # A delivered repeat carries the count and the number of presses, not their list.
    (row,) = await rows(store, "SELECT payload FROM outbox WHERE revision = 5 ORDER BY id LIMIT 1")
    change = from_json(row[0])["change"]
    assert change["action"] == "repeat" and change["details"]["repeats"] == 25
    assert change["details"]["count"] == 100 and "events" not in change["details"]


async def test_one_batch_closes_an_outage_and_opens_the_next(store: SqlStore) -> None:
    clock = Clock()
    engine = engine_for(store, clock)
    await add_device(store, "cam-009")
    await ingest(engine, [make_event(1, device_id="cam-009", kind="health.offline")])
    clock.advance(60)
    await ingest(
        engine,
        [
            make_event(2, device_id="cam-009", kind="health.online"),
            make_event(3, device_id="cam-009", kind="health.offline"),
            make_event(4, device_id="cam-009", kind="health.offline"),
        ],
    )

    found = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=10)
    by_state = {stored.alarm.state: stored.alarm for stored in found}
    assert set(by_state) == {AlarmState.CLOSED, AlarmState.NEW}
    closed, reopened = by_state[AlarmState.CLOSED], by_state[AlarmState.NEW]
    assert closed.revision == 2 and reopened.count == 2 and reopened.revision == 2
    history = await query_storage.history(engine.store, reopened.id)
    assert [(h.action.value, h.revision) for h in history] == [("open", 1), ("repeat", 2)]
    # P3 repeats within the dedup window are recorded quietly: no delivery for them.
    assert [d.revision for d in await query_storage.deliveries(engine.store, reopened.id)] == [1]
    assert [d.revision for d in await query_storage.deliveries(engine.store, closed.id)] == [1, 2]


async def test_a_dedup_key_shared_by_devices_repeats_across_batches(store: SqlStore) -> None:
    rules = {
        "rules": [
            {
                "name": "school_panic",
                "match": {"kinds": ["panic.press"]},
                "type": "panic",
                "priority": 1,
                "category": "emergency",
                "title": "Panic alarm at school {jurisdiction}",
                "dedup_key": "{type}:{jurisdiction}",
            }
        ]
    }
    clock = Clock()
    engine = engine_for(store, clock, rules=rules)
    await add_device(store, "btn-001", kind="panic")
    await add_device(store, "btn-002", kind="panic")
    await ingest(engine, [make_event(1, device_id="btn-001", kind="panic.press")])
    clock.advance(1)
    # Another button of the same school: the open alarm is found by its key, not its device.
    await ingest(engine, [make_event(2, device_id="btn-002", kind="panic.press")])

    (stored,) = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=10)
    assert stored.alarm.count == 2 and stored.alarm.device_id == "btn-001"


async def test_concurrent_batches_repeat_the_same_alarms_in_commit_order(
    store: SqlStore,
) -> None:
    clock = Clock()
    engine = engine_for(store, clock)
    for button in BUTTONS:
        await add_device(store, button, kind="panic")
    await ingest(
        engine, [make_event(n, device_id=b, kind="panic.press") for n, b in enumerate(BUTTONS)]
    )
    listener = engine.bus.subscribe(maxsize=10_000, name="test")
    batches = [
        [make_event(100 * b + n, device_id=BUTTONS[n % 5], kind="panic.press") for n in range(20)]
        for b in range(1, 4)
    ]
    # Two hub nodes' writers on one database: each batch waits for the open alarms
    # the other holds, and sees the other's revisions once it committed.
    await asyncio.gather(*(ingest(engine, batch) for batch in batches))
    announced = drain(listener)
    per_alarm: dict[uuid.UUID, list[int]] = {}
    for change in announced:
        per_alarm.setdefault(change.alarm_id, []).append(change.revision)
    assert len(per_alarm) == len(BUTTONS)
    for revisions in per_alarm.values():
        assert revisions == [2, 3, 4]
    alarms = await alarms_by_device(engine)
    assert {stored.alarm.count for stored in alarms.values()} == {13}
