"""Dispatchers that die or run side by side: SIGKILL mid-delivery loses nothing, and two
dispatchers on one PostgreSQL database never send the same outbox row at the same time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from hub.alarms import outbox_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.dispatcher import Dispatcher
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.bus import EventBus
from hub.storage import SqlStore, open_store
from tests.helpers import make_event
from tests.integration.alarm_support import add_device
from tests.integration.dispatcher_child import settings as child_settings
from tests.integration.outbox_receiver import KeyedReceiver, serve_receiver
from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
LEASE_S = 3.0


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        return dsn
    return f"sqlite:///{tmp_path / 'gw.sqlite3'}"


@contextmanager
def dispatcher_process(
    url: str,
    receiver_url: str,
    worker: str,
    *,
    lease_s: float = LEASE_S,
    data_dir: Path | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """A dispatcher in its own process, ready to deliver; stopped (by PID) at the end.

    With `data_dir`, the child takes its node id from there, and it must be `worker`.
    """
    naming = f"--data-dir={data_dir}" if data_dir is not None else f"--worker={worker}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.dispatcher_child",
            f"--url={url}",
            f"--receiver={receiver_url}",
            f"--lease={lease_s}",
            naming,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.split() == ["READY", worker], f"dispatcher did not start ({process.poll()})"
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


async def queue_alarms(store: SqlStore, settings: AlarmSettings, count: int) -> list[str]:
    """Open `count` panic alarms; return their outbox idempotency keys."""
    engine = AlarmEngine(store, settings, bus=EventBus[AlarmChange]("c"))
    events = []
    for n in range(count):
        device = f"btn-{n:03d}"
        await add_device(store, device, kind="panic")
        events.append(make_event(n, device_id=device, kind="panic.press", payload={"n": n}))
    await store.ingest(events, in_transaction=engine.in_transaction)
    async with store.reading() as tx:
        rows = await tx.fetchall("SELECT idempotency_key FROM outbox ORDER BY id")
    return [str(row[0]) for row in rows]


async def outbox_rows(store: SqlStore) -> dict[str, tuple[str, str | None, str | None]]:
    """key -> (state, claimed_by, receipt) for every outbox row."""
    async with store.reading() as tx:
        rows = await tx.fetchall("SELECT idempotency_key, state, claimed_by, receipt FROM outbox")
    return {str(r[0]): (str(r[1]), r[2], r[3]) for r in rows}


async def test_sigkill_mid_delivery_loses_nothing(store_url: str) -> None:
    port = free_port()
    receiver = KeyedReceiver(delay_s=0.5)
    receiver_url = receiver.url(port)
    store = open_store(store_url, pool_size=2)
    await store.open()
    try:
        keys = await queue_alarms(store, child_settings(receiver_url, LEASE_S), 12)
        assert len(keys) == 12
        async with serve_receiver(receiver, port):
            with dispatcher_process(store_url, receiver_url, "first") as first:
                # Kill it while it waits for answers, after some rows were delivered.
                async with asyncio.timeout(30):
                    while not (len(receiver.answered) >= 4 and receiver.in_flight.total()):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                os.kill(first.pid, signal.SIGKILL)
                in_flight_at_kill = {k for k, n in receiver.in_flight.items() if n}
                first.wait(timeout=10)
            killed_at = time.monotonic()

            after_kill = await outbox_rows(store)
            # Rows it was sending stay claimed by the dead dispatcher: not delivered, not lost.
            for key in in_flight_at_kill:
                assert after_kill[key][:2] == ("delivering", "first")
            assert any(state == "delivered" for state, _, _ in after_kill.values())
            assert any(state == "pending" for state, _, _ in after_kill.values())

            with dispatcher_process(store_url, receiver_url, "second"):
                async with asyncio.timeout(60):
                    while True:
                        rows = await outbox_rows(store)
                        if all(state == "delivered" for state, _, _ in rows.values()):
                            break
                        await asyncio.sleep(0.05)
            reclaimed_after = time.monotonic() - killed_at
    finally:
        await store.close()

    # Every row delivered, each one only after the receiver answered it 2xx.
    assert set(rows) == set(keys)
    for key, (state, _, receipt) in rows.items():
        assert state == "delivered" and receipt == "HTTP 204"
        assert key in receiver.answered, f"{key} counted delivered but never answered"
    # Repeats only ever carry the same key and the same body: one incident per key.
    assert set(receiver.arrivals) == set(keys)
    assert receiver.changed_bodies == [] and receiver.bad_signatures == 0
    assert receiver.concurrent_duplicates == []
    # The rows in flight at the kill were sent again once their lease ran out.
    assert in_flight_at_kill
    for key in in_flight_at_kill:
        assert receiver.count(key) == 2
    assert reclaimed_after >= LEASE_S - 1.0
    # Only rows the killed dispatcher held were sent twice (some of its requests were
    # still on the wire, or answered but not yet recorded, when it died).
    repeated = {key for key in keys if receiver.count(key) > 1}
    held_at_kill = {k for k, (state, by, _) in after_kill.items() if state == "delivering"}
    assert in_flight_at_kill <= repeated <= held_at_kill
    assert all(after_kill[key][1] == "first" for key in held_at_kill)


@pytest.mark.postgres
async def test_two_dispatchers_on_postgres_never_send_a_row_twice_at_once(
    pg_dsn: str,
) -> None:
    port = free_port()
    receiver = KeyedReceiver(delay_s=0.1)
    settings = child_settings(receiver.url(port), LEASE_S)
    stores = [open_store(pg_dsn, pool_size=4) for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        keys = await queue_alarms(stores[0], settings, 60)
        dispatchers = [
            Dispatcher.from_settings(
                store,
                settings.delivery,
                settings.sinks,
                worker=f"node-{n}",
            )
            for n, store in enumerate(stores[1:], start=1)
        ]
        async with serve_receiver(receiver, port):
            for dispatcher in dispatchers:
                await dispatcher.start()
            try:
                async with asyncio.timeout(60):
                    while len(receiver.answered) < len(keys):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                    while True:
                        rows = await outbox_rows(stores[0])
                        if all(state == "delivered" for state, _, _ in rows.values()):
                            break
                        await asyncio.sleep(0.05)
            finally:
                for dispatcher in dispatchers:
                    await dispatcher.stop()
    finally:
        for store in stores:
            await store.close()

    assert receiver.concurrent_duplicates == []
    assert sorted(receiver.arrivals) == sorted(keys)  # each row sent exactly once
    assert all(d.delivered > 0 for d in dispatchers)  # both did part of the work
    assert sum(d.delivered for d in dispatchers) == len(keys)


@pytest.mark.postgres
async def test_claim_skips_rows_another_transaction_holds(pg_dsn: str) -> None:
    settings = child_settings("http://127.0.0.1:9/hook", LEASE_S)
    store = open_store(pg_dsn, pool_size=2)
    await store.open()
    try:
        await queue_alarms(store, settings, 6)
        holder = await psycopg.AsyncConnection.connect(pg_dsn)
        async with holder, holder.transaction():
            cursor = await holder.execute(
                "SELECT idempotency_key FROM outbox ORDER BY id LIMIT 3 FOR UPDATE"
            )
            held = {str(row[0]) for row in await cursor.fetchall()}
            now = AlarmEngine(store, settings).now()
            started = time.monotonic()
            claimed = await asyncio.wait_for(
                outbox_storage.claim(store, "other", ["center"], now, lease_until=now, limit=10), 5
            )
            elapsed = time.monotonic() - started
    finally:
        await store.close()
    got = {c.record.idempotency_key for c in claimed}
    assert len(got) == 3 and not (got & held)
    assert elapsed < 4.0  # skipped, not waited for (the wait would have taken 5 s)
