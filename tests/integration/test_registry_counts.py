"""Subtree counts and listing pages stay right under every kind of write, on each backend.

Counts are kept by triggers as deltas (see migration 2); these tests change
devices the ways the hub does (registry writes, health transitions written by
other services straight into `device_state`, subtree moves, cascaded deletes)
and compare the counts with a join over the devices themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from camera_registry.jurisdiction import JurisdictionLevel, JurisdictionNode
from camera_registry.models import DeviceIn, DeviceKind
from hub.auth.audit_storage import query as audit_query
from hub.crypto import CredentialCipher, Keyring, generate_key
from hub.devices import storage as repo
from hub.devices.registry import Actor, Registry
from hub.storage import SqlStore
from hub.storage.migration import OptionalStep
from tests.conftest import build_store

ACTOR = Actor("system:test-counts")
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
TOWN_A = "/150102/150102001/"
GRID_A1 = "/150102/150102001/150102001001/"


def _tree() -> list[JurisdictionNode]:
    return [
        JurisdictionNode(code="150102", name="新城区", level=JurisdictionLevel.DISTRICT),
        JurisdictionNode(code="150102001", name="东街道", level="town", parent_code="150102"),
        JurisdictionNode(code="150102002", name="西街道", level="town", parent_code="150102"),
        JurisdictionNode(
            code="150102001001", name="一社区", level="village", parent_code="150102001"
        ),
        JurisdictionNode(
            code="150102002001", name="二社区", level="village", parent_code="150102002"
        ),
    ]


def _devices() -> list[DeviceIn]:
    places = ["150102001", "150102001001", "150102002", "150102002001", None]
    kinds = [DeviceKind.CAMERA, DeviceKind.CAMERA, DeviceKind.ALARM_POINT, DeviceKind.NVR]
    return [
        DeviceIn(
            id=f"dev-{n:03d}",
            name=f"中山路{n % 7}号",
            kind=kinds[n % len(kinds)],
            jurisdiction=places[n % len(places)],
            address="锡林南路" if n % 3 == 0 else None,
        )
        for n in range(40)
    ]


def _registry(store: SqlStore) -> Registry:
    return Registry(store, CredentialCipher(Keyring([generate_key()])))


async def _seeded_registry(store: SqlStore, actor: Actor = ACTOR) -> Registry:
    """A registry holding the test tree and its 40 devices, written by `actor` in one batch."""
    registry = _registry(store)
    await registry.upsert_jurisdictions(_tree(), actor=ACTOR)
    await registry.bulk_upsert(_devices(), actor=actor, scope=None)
    return registry


async def _truth(store: SqlStore, path: str | None) -> repo.SubtreeCounts:
    """The counts the slow way: a join over every device and its state."""
    async with store.reading() as tx:
        rows = await tx.fetchall(
            "SELECT d.jurisdiction_path, d.kind, COALESCE(s.health, 'unknown') FROM devices d"
            " LEFT JOIN device_state s ON s.device_id = d.id"
        )
    counts = repo.SubtreeCounts()
    depth = len(path.strip("/").split("/")) if path else 0
    for node_path, kind, health in rows:
        if path is not None and not (node_path or "").startswith(path):
            continue
        counts.total += 1
        counts.by_kind[kind] = counts.by_kind.get(kind, 0) + 1
        counts.by_health[health] = counts.by_health.get(health, 0) + 1
        codes = node_path.strip("/").split("/") if node_path else []
        if len(codes) > depth:
            counts.by_child[codes[depth]] = counts.by_child.get(codes[depth], 0) + 1
    return counts


async def _assert_counts_right(registry: Registry, store: SqlStore) -> None:
    for path in (None, "/150102/", TOWN_A, GRID_A1, "/150102/150102002/"):
        assert await registry.counts(path, scope=None) == await _truth(store, path), path
    # A town operator asking for the district sees only their town's devices.
    scoped = await registry.counts("/150102/", scope=(TOWN_A,))
    town = await _truth(store, TOWN_A)
    assert (scoped.total, scoped.by_kind, scoped.by_health) == (
        town.total,
        town.by_kind,
        town.by_health,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "timescale"])
async def test_counts_follow_every_write_and_survive_folding(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = build_store(backend, request, tmp_path)
    async with store:
        registry = _registry(store)
        await registry.start()
        try:
            await registry.upsert_jurisdictions(_tree(), actor=ACTOR)
            await registry.bulk_upsert(_devices(), actor=ACTOR, scope=None)
            await _assert_counts_right(registry, store)

            # Health written by other services straight into device_state:
            # plain updates, upserts, and a state row removed on its own.
            async with store.transaction() as tx:
                await tx.execute(
                    "UPDATE device_state SET health = 'online' WHERE device_id IN (%s, %s, %s)",
                    ["dev-000", "dev-001", "dev-002"],
                )
                await tx.execute(
                    "INSERT INTO device_state (device_id, health, updated_at)"
                    " VALUES (%s, 'offline', %s) ON CONFLICT (device_id) DO UPDATE SET"
                    " health = excluded.health, updated_at = excluded.updated_at",
                    ["dev-003", NOW],
                )
                await tx.execute("DELETE FROM device_state WHERE device_id = %s", ["dev-001"])
                await tx.execute(
                    "UPDATE device_state SET last_seen_at = %s WHERE device_id = %s",
                    [NOW, "dev-002"],
                )
            await _assert_counts_right(registry, store)

            # A device changes kind and node; another is deleted by the registry,
            # one more straight away (its state goes by cascade).
            moved = _devices()[2].model_copy(
                update={"kind": DeviceKind.CAMERA, "jurisdiction": "150102001001"}
            )
            await registry.update(moved, actor=ACTOR, scope=None)
            assert await registry.delete("dev-003", actor=ACTOR, scope=None)
            async with store.transaction() as tx:
                await tx.execute("DELETE FROM devices WHERE id = %s", ["dev-000"])
            await _assert_counts_right(registry, store)

            # A whole community moves to the other town: its devices follow.
            await registry.upsert_jurisdictions(
                [
                    JurisdictionNode(
                        code="150102001001",
                        name="一社区",
                        level="village",
                        parent_code="150102002",
                    )
                ],
                actor=ACTOR,
            )
            await _assert_counts_right(registry, store)
            assert await registry.counts(TOWN_A, scope=None) == await _truth(store, TOWN_A)

            before = await repo.count_deltas(store)
            await registry.fold_counts(force=True)
            assert await repo.count_deltas(store) <= before
            await _assert_counts_right(registry, store)
        finally:
            await registry.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_every_sort_pages_through_each_device_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = build_store(backend, request, tmp_path)
    async with store:
        # One batch: every device has the same updated_at, the worst case for a cursor.
        registry = await _seeded_registry(store)
        for subtree in (None, TOWN_A):
            flt = repo.DeviceFilter(subtree=subtree)
            everything = await registry.list_devices(flt, scope=None, limit=500)
            expected = sorted(i.device.id for i in everything.items)
            assert everything.next_cursor is None
            for sort in repo.SORT_KEYS:
                for descending in (False, True):
                    seen: list[str] = []
                    cursor = None
                    while True:
                        page = await registry.list_devices(
                            flt,
                            scope=None,
                            sort=sort,
                            descending=descending,
                            limit=3,
                            cursor=cursor,
                        )
                        seen.extend(i.device.id for i in page.items)
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                    assert sorted(seen) == expected, (sort, descending, subtree)
                    assert len(seen) == len(set(seen)), (sort, descending, subtree)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_text_search_finds_name_address_or_id_never_across_them(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = build_store(backend, request, tmp_path)
    async with store:
        registry = await _seeded_registry(store)

        async def ids(text: str, scope: tuple[str, ...] | None = None) -> set[str]:
            page = await registry.list_devices(repo.DeviceFilter(text=text), scope=scope, limit=500)
            return {i.device.id for i in page.items}

        assert await ids("3号") == {f"dev-{n:03d}" for n in range(40) if n % 7 == 3}
        assert await ids("锡林南") == {f"dev-{n:03d}" for n in range(40) if n % 3 == 0}
        assert await ids("DEV-01") == {f"dev-{n:03d}" for n in range(10, 20)}
        # Name "中山路0号" followed by address "锡林南路": text spanning both is no match.
        assert await ids("号 锡林") == set()
        assert await ids("100%") == set()
        in_town = await ids("中山路", scope=(TOWN_A,))
        for device_id in in_town:
            found = await registry.get(device_id, scope=None)
            assert found is not None and (found.jurisdiction_path or "").startswith(TOWN_A)
        assert in_town < await ids("中山路")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_bulk_write_audits_each_device_with_who_changed_it(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = build_store(backend, request, tmp_path)
    async with store:
        await _seeded_registry(store, actor=Actor("user:zhang", "10.1.2.3"))
        rows = await audit_query(store, action="device.create", limit=1000)
        assert Counter(r.target for r in rows) == Counter(d.id for d in _devices())
        assert {(r.actor, r.remote_addr) for r in rows} == {("user:zhang", "10.1.2.3")}
        last = await audit_query(store, target="dev-007")
        assert [(r.action, r.actor) for r in last] == [("device.create", "user:zhang")]


async def test_an_optional_step_that_cannot_run_is_skipped_with_a_warning(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a server without pg_trgm (or without the right to create it) does.
    caplog.set_level(logging.WARNING)
    store = build_store("postgres", request, tmp_path)
    async with store:
        async with store.transaction() as tx:
            missing = OptionalStep("an index", ["SELECT 1"], extension="no_such_extension")
            assert not await store._optional_step(tx, missing)
            failing = OptionalStep(
                "a broken index",
                ["CREATE TABLE optional_probe (x INTEGER)", "CREATE INDEX ON nowhere (x)"],
            )
            assert not await store._optional_step(tx, failing)
            # The transaction goes on, without the half-done step.
            row = await tx.fetchone("SELECT to_regclass('optional_probe') IS NULL")
            assert row is not None and row[0] is True
        async with store.reading() as tx:
            trgm = await tx.fetchone(
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'devices_text_trgm'"
            )
        assert trgm is not None and int(trgm[0]) in (0, 1)
    assert "no_such_extension is not available" in caplog.text
    assert "going on without a broken index" in caplog.text


@pytest.mark.parametrize("health_first", [True, False])
async def test_a_move_and_a_health_change_racing_on_one_device_are_both_counted(
    health_first: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Two hub nodes: one moves a camera to another node while the other's patrol
    # marks it offline. Whichever commits first, the counts end where the rows do.
    dsn = request.getfixturevalue("pg_dsn")
    store = build_store("postgres", request, tmp_path)
    async with store:
        registry = await _seeded_registry(store)
        device = "dev-001"  # a camera in 150102001001
        async with (
            await psycopg.AsyncConnection.connect(dsn) as mover,
            await psycopg.AsyncConnection.connect(dsn) as patrol,
        ):
            move = mover.execute(
                "UPDATE devices SET jurisdiction = '150102002',"
                " jurisdiction_path = '/150102/150102002/' WHERE id = %s",
                [device],
            )
            mark = patrol.execute(
                "UPDATE device_state SET health = 'offline' WHERE device_id = %s", [device]
            )
            first, second = (mark, move) if health_first else (move, mark)
            first_conn, second_conn = (patrol, mover) if health_first else (mover, patrol)
            await first
            # The second writer waits for the first one's row lock ...
            waiting = asyncio.create_task(second)
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await first_conn.commit()
            # ... and counts with what the first one committed.
            await waiting
            await second_conn.commit()
        await _assert_counts_right(registry, store)
        moved = await registry.counts("/150102/150102002/", scope=None)
        assert moved.by_health.get("offline") == 1
