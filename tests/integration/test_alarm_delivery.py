"""The outbox against a real HTTP receiver on 127.0.0.1 that fails, stalls, retires or is down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.alarms import outbox_storage, query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from hub.storage import SqlStore
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import SECRET, Receiver, add_device, running_receiver
from tests.peers import free_port

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
FAST = {
    "poll_interval_s": 0.05,
    "lease_s": 5.0,
    "backoff_base_s": 0.05,
    "backoff_cap_s": 0.3,
}


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def settings_for(port: int, **sink: Any) -> AlarmSettings:
    return AlarmSettings.model_validate(
        {
            "sinks": [
                {
                    "name": "center",
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{port}/hook",
                    "secrets": [SECRET],
                    "timeout_s": 1.0,
                    **sink,
                }
            ],
            "delivery": FAST,
        }
    )


async def open_alarms(engine: AlarmEngine, count: int) -> list[str]:
    events = []
    for n in range(count):
        device = f"btn-{n:03d}"
        await add_device(engine.store, device, kind="panic")
        events.append(make_event(n, device_id=device, kind="panic.press", payload={"n": n}))
    result = await engine.store.ingest(events, in_transaction=engine.in_transaction)
    engine.after_commit(result)
    found = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=100)
    return [f"{stored.alarm.id}:1:center" for stored in found]


async def wait_delivered(engine: AlarmEngine, keys: list[str]) -> None:
    async def all_done() -> bool:
        found = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=100)
        states = {
            d.idempotency_key: d.state
            for stored in found
            for d in await query_storage.deliveries(engine.store, stored.alarm.id)
        }
        return all(states.get(key) == "delivered" for key in keys)

    async with asyncio.timeout(30):
        while not await all_done():  # noqa: ASYNC110 - polling storage, the source of truth
            await asyncio.sleep(0.05)


async def test_every_alarm_is_delivered_once_per_revision_through_failures(
    store: SqlStore,
) -> None:
    port = free_port()
    settings = settings_for(port)
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    engine.on_outbox(dispatcher.wake)
    keys = await open_alarms(engine, 6)
    receiver = Receiver(script=["500", "slow", "500", "503", "slow"], slow_seconds=2.0)

    await dispatcher.start()
    try:
        # The receiver is down: connections are refused, attempts fail.
        async with asyncio.timeout(10):
            while dispatcher.failed == 0:  # noqa: ASYNC110 - the dispatcher's own task
                await asyncio.sleep(0.02)
        async with running_receiver(receiver, port):
            await wait_delivered(engine, keys)
    finally:
        await dispatcher.stop()

    assert set(receiver.accepted) == set(keys)
    assert receiver.bad_signatures == 0
    for key, body in receiver.accepted.items():
        assert body["alarm_id"] == key.split(":")[0]
        assert body["event"] == "alarm.open" and body["alarm"]["priority"] == 1
    # Retries were real: more requests than incidents, each incident accepted once.
    assert len(receiver.received) > len(keys)
    seen = [json.loads(body)["alarm_id"] for headers, body in receiver.received]
    assert set(seen) == {key.split(":")[0] for key in keys}
    rows = [
        d
        for stored in await query_storage.search(
            engine.store, AlarmFilter(), scope_paths=None, limit=100
        )
        for d in await query_storage.deliveries(engine.store, stored.alarm.id)
    ]
    assert all(row.receipt == "HTTP 204" and row.delivered_at for row in rows)
    assert any(row.attempts > 1 for row in rows)


async def test_410_disables_the_sink_until_an_operator_re_enables_it(store: SqlStore) -> None:
    port = free_port()
    settings = settings_for(port)
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    engine.on_outbox(dispatcher.wake)
    # Both rows are claimed together and in flight at once: both hear 410.
    receiver = Receiver(script=["410", "410"])
    async with running_receiver(receiver, port):
        keys = await open_alarms(engine, 2)
        await dispatcher.start()
        try:
            async with asyncio.timeout(10):
                while not (await outbox_storage.disabled_sinks(engine.store)):  # noqa: ASYNC110 - storage
                    await asyncio.sleep(0.05)
            # Both 410 answers recorded: nothing is being delivered any more.
            async with asyncio.timeout(10):
                while True:
                    (state,) = await outbox_storage.sink_states(engine.store, ["center"])
                    if not state.counts.get("delivering"):
                        break
                    await asyncio.sleep(0.05)
            assert state.disabled and state.reason and "410" in state.reason
            assert state.counts.get("delivered", 0) == 0
            assert state.counts.get("pending") == 2  # waiting, not lost and not dead
            assert len(receiver.received) == 2  # nothing more after the sink was disabled

            await outbox_storage.set_sink_disabled(
                engine.store, "center", False, None, engine.now()
            )
            dispatcher.wake()
            await wait_delivered(engine, keys)
        finally:
            await dispatcher.stop()
    assert set(receiver.accepted) == set(keys)


async def test_attempt_limit_dead_letters_the_row(store: SqlStore) -> None:
    port = free_port()
    settings = settings_for(port, max_attempts=3)
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    receiver = Receiver(script=["500"] * 10)
    async with running_receiver(receiver, port):
        (key,) = await open_alarms(engine, 1)
        await dispatcher.start()
        try:
            async with asyncio.timeout(10):
                while True:
                    (state,) = await outbox_storage.sink_states(engine.store, ["center"])
                    if state.counts.get("dead"):
                        break
                    await asyncio.sleep(0.05)
        finally:
            await dispatcher.stop()
    assert len(receiver.received) == 3
    alarm_id = key.split(":")[0]
    found = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=1)
    (row,) = await query_storage.deliveries(engine.store, found[0].alarm.id)
    assert str(found[0].alarm.id) == alarm_id
    assert row.state == "dead" and row.attempts == 3 and row.last_error == "HTTP 500"


async def test_a_row_whose_dispatchers_keep_dying_is_dead_lettered(store: SqlStore) -> None:
    """Each lease that runs out counts as an attempt: a row that stops every dispatcher
    trying it ends dead at the attempt limit instead of being reclaimed for ever."""
    port = free_port()
    settings = settings_for(port, max_attempts=3)
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    dispatcher = Dispatcher.from_settings(engine.store, settings.delivery, settings.sinks)
    receiver = Receiver()
    async with running_receiver(receiver, port):
        keys = await open_alarms(engine, 2)
        doomed, survivor = sorted(keys)
        # Both were claimed by dispatchers that died while sending: leases long expired.
        # The doomed one has been through that twice already, the survivor never.
        async with store.transaction() as tx:
            for key, attempts in ((doomed, 2), (survivor, 0)):
                await tx.execute(
                    "UPDATE outbox SET state = 'delivering', claimed_by = 'dead-worker',"
                    " claimed_until = %s, attempts = %s WHERE idempotency_key = %s",
                    ("2000-01-01T00:00:00+00:00", attempts, key),
                )
        try:
            assert await dispatcher.run_once() == 2
        finally:
            await dispatcher.stop()  # closes the sink's connections
    deliveries = {
        d.idempotency_key: d
        for stored in await query_storage.search(
            engine.store, AlarmFilter(), scope_paths=None, limit=10
        )
        for d in await query_storage.deliveries(engine.store, stored.alarm.id)
    }
    assert deliveries[doomed].state == "dead" and deliveries[doomed].attempts == 3
    assert "lease ran out" in (deliveries[doomed].last_error or "")
    # The survivor's reclaim counted as one attempt, its delivery as the second.
    assert deliveries[survivor].state == "delivered" and deliveries[survivor].attempts == 2
    sent = {headers["webhook-id"] for headers, _ in receiver.received}
    assert sent == {survivor}
