"""The one storage suite every backend passes: SQLite, PostgreSQL, TimescaleDB."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from camera_registry.events import DeviceEvent, RejectedMessage, Severity
from hub.storage import SchemaTooNew, SqlStore, Tx
from hub.storage.migrations import latest_version
from tests.helpers import BASE_TIME, make_event

pytestmark = [pytest.mark.postgres]


async def test_schema_is_migrated_to_the_latest_version(store: SqlStore) -> None:
    assert await store.schema_version() == latest_version()
    async with store.reading() as tx:
        for table in (
            "devices",
            "device_state",
            "events",
            "alarms",
            "alarm_history",
            "outbox",
            "users",
            "audit_log",
            "rejected_messages",
        ):
            row = await tx.fetchone(f"SELECT COUNT(*) FROM {table}")
            assert row == (0,), table


async def test_migrating_again_changes_nothing(store: SqlStore) -> None:
    await store.ingest([make_event(1)])
    async with store.transaction() as tx:
        applied = await store._migrate(tx, timescale=False, now=datetime.now(UTC))
    assert applied == []
    assert await store.count_events() == 1


async def test_refuses_a_schema_newer_than_the_code(store: SqlStore) -> None:
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
            (latest_version() + 1, "from-the-future", "2030-01-01"),
        )
    with pytest.raises(SchemaTooNew, match="upgrade GridWatch"):
        async with store.transaction() as tx:
            await store._migrate(tx, timescale=False, now=datetime.now(UTC))


async def _register_camera(store: SqlStore) -> None:
    """cam-001 in the registry, with its device-state row."""
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO devices (id, name, kind, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            ("cam-001", "东门", "camera", BASE_TIME, BASE_TIME),
        )
        await tx.execute(
            "INSERT INTO device_state (device_id, updated_at) VALUES (%s, %s)",
            ("cam-001", BASE_TIME),
        )


async def _last_event_at(store: SqlStore) -> datetime:
    """When cam-001's latest stored event happened, as device state records it."""
    async with store.reading() as tx:
        row = await tx.fetchone(
            "SELECT last_event_at FROM device_state WHERE device_id = %s", ("cam-001",)
        )
    assert row is not None
    recorded = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
    return recorded


async def test_events_round_trip_with_every_field(store: SqlStore) -> None:
    event = make_event(
        3,
        device_id="34020000001320000001",
        kind="panic.press",
        severity=Severity.CRITICAL,
        key="btn-7:msg-1",
        payload={"school": "呼和浩特市第一中学", "zone": [1, 2], "ok": True},
    )
    result = await store.ingest([event])
    assert result.stored == [event] and result.duplicates == 0
    [back] = await store.events(device_id="34020000001320000001")
    assert back == event
    assert back.time.tzinfo is not None


async def test_duplicate_keys_are_stored_once_within_and_across_batches(store: SqlStore) -> None:
    first = await store.ingest(
        [make_event(1, key="k1"), make_event(2, key="k1"), make_event(3, key="k2"), make_event(4)]
    )
    assert len(first.stored) == 3 and first.duplicates == 1
    second = await store.ingest([make_event(5, key="k2"), make_event(6, key="k3")])
    assert [e.dedup_key for e in second.stored] == ["k3"] and second.duplicates == 1
    assert await store.count_events() == 4
    kept = await store.events(limit=10)
    assert sorted(e.payload["n"] for e in kept) == [1, 3, 4, 6]


async def test_large_batches_dedupe_and_touch_devices_like_small_ones(store: SqlStore) -> None:
    """Hundreds of events in one batch take the bulk path (COPY on PostgreSQL); the
    result must not differ from a batch of a few."""
    await _register_camera(store)
    big = [make_event(i, key=f"k{i % 250}") for i in range(400)]  # 150 repeats within
    first = await store.ingest(big)
    assert len(first.stored) == 250 and first.duplicates == 150
    assert [e.payload["n"] for e in first.stored] == list(range(250))
    again = [make_event(i, key=f"k{i}") for i in range(200, 500)]  # 50 stored before
    second = await store.ingest(again)
    assert len(second.stored) == 250 and second.duplicates == 50
    assert await store.count_events() == 500
    recorded = await _last_event_at(store)
    assert recorded == BASE_TIME + timedelta(seconds=499)


async def test_a_replayed_batch_and_racing_batches_store_each_key_once(store: SqlStore) -> None:
    """Bulk batches claim their keys optimistically on PostgreSQL (COPY, with ON CONFLICT
    after a stored key turns up): a whole batch replayed, the clean batches after it, and
    two batches of the same keys committed at once by two connections each store a key
    exactly once."""
    await _register_camera(store)
    fresh = [make_event(i, key=f"r{i}") for i in range(300)]
    assert len((await store.ingest(fresh)).stored) == 300
    replay = await store.ingest([make_event(i, key=f"r{i}") for i in range(300)])
    assert replay.stored == [] and replay.duplicates == 300
    for start in (300, 600):  # the first after a replay, then one after a clean batch
        batch = await store.ingest([make_event(i, key=f"r{i}") for i in range(start, start + 300)])
        assert len(batch.stored) == 300 and batch.duplicates == 0
    racing = [make_event(i, key=f"r{i}") for i in range(900, 1200)]
    one, other = await asyncio.gather(store.ingest(racing), store.ingest(racing))
    assert len(one.stored) + len(other.stored) == 300
    assert one.duplicates + other.duplicates == 300
    assert await store.count_events() == 1200
    assert await _last_event_at(store) == BASE_TIME + timedelta(seconds=1199)


async def test_rejected_messages_keep_reason_and_bytes(store: SqlStore) -> None:
    bad = RejectedMessage(
        time=BASE_TIME,
        source="mqtt",
        origin="gridwatch/v1/x/event",
        reason="malformed JSON at byte 3",
        payload=b"{\xff\x00",
        device_id="x",
    )
    result = await store.ingest([bad, make_event(1)])
    assert result.rejected == 1 and len(result.stored) == 1
    [back] = await store.rejected_messages()
    assert back.reason == "malformed JSON at byte 3"
    assert back.payload == b"{\xff\x00"
    assert back.origin == "gridwatch/v1/x/event"


async def test_event_filters_by_kind_and_time(store: SqlStore) -> None:
    await store.ingest(
        [make_event(i, kind="onvif.motion" if i % 2 else "onvif.tamper") for i in range(10)]
    )
    assert await store.count_events(kind="onvif.tamper") == 5
    since = BASE_TIME + timedelta(seconds=5)
    window = await store.events(since=since, until=since + timedelta(seconds=3))
    assert [e.payload["n"] for e in window] == [7, 6, 5]


async def test_device_state_records_the_latest_event(store: SqlStore) -> None:
    await _register_camera(store)
    await store.ingest([make_event(5), make_event(2), make_event(9, device_id="other")])
    await store.ingest([make_event(1)])  # older than what is recorded: no step back
    recorded = await _last_event_at(store)
    assert recorded == BASE_TIME + timedelta(seconds=5)


async def test_a_failing_in_transaction_step_stores_nothing(store: SqlStore) -> None:
    async def explode(tx: Tx, stored: list[DeviceEvent]) -> None:
        raise RuntimeError("rule engine failed")

    with pytest.raises(RuntimeError):
        await store.ingest([make_event(1, key="a")], in_transaction=explode)
    assert await store.count_events() == 0
    # The key was rolled back too: the retried batch stores the event.
    result = await store.ingest([make_event(1, key="a")])
    assert len(result.stored) == 1


async def test_retention_removes_only_old_events(store: SqlStore) -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    old = [make_event(i, at=now - timedelta(days=40, hours=i), key=f"old{i}") for i in range(3)]
    new = [make_event(i, at=now - timedelta(days=1, hours=i)) for i in range(3)]
    await store.ingest(old + new)
    await store.apply_retention(now)
    remaining = await store.events(limit=10)
    assert len(remaining) == 3
    assert all(e.time > now - timedelta(days=30) for e in remaining)
    # A forgotten key may be stored again (the dedup window is the retention period).
    again = await store.ingest([make_event(0, at=now, key="old0")])
    assert len(again.stored) == 1


async def test_ping_and_backend_name(store: SqlStore) -> None:
    await store.ping()
    assert store.backend in ("sqlite", "postgresql", "timescaledb")


async def test_payloads_with_integers_beyond_64_bits_are_stored(store: SqlStore) -> None:
    """Valid JSON the fast serializer refuses (a 70-bit serial number) is stored all the
    same, in a small batch and in a bulk one, and reads back equal."""
    small = make_event(1, payload={"serial": 2**70, "n": 1})
    bulk = [make_event(i, payload={"serial": 2**70 + i, "n": i}) for i in range(2, 302)]
    assert len((await store.ingest([small])).stored) == 1
    assert len((await store.ingest(bulk)).stored) == 300
    back = {e.payload["n"]: e.payload["serial"] for e in await store.events(limit=400)}
    assert back == {i: 2**70 + (i if i > 1 else 0) for i in range(1, 302)}
