"""The storage Dialect's SQL pieces run and mean the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.storage import SqlStore
from hub.storage.base import Json
from hub.storage.dialect import POSTGRESQL, SQLITE, Dialect
from tests.conftest import build_store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        async with backend.transaction() as tx:
            await tx.execute(
                "CREATE TABLE dialect_probe (id TEXT PRIMARY KEY, path TEXT, tags {JSON})".format(
                    JSON="JSONB" if backend.dialect.is_postgresql else "TEXT"
                )
            )
            for row_id, path, tags in (
                ("Gate-1", "/150207/150207001/", ["north", "gate"]),
                ("gate-2", "/150207/150207001/009/", ["south"]),
                ("yard-3", "/150207/150207002/", []),
            ):
                await tx.execute(
                    "INSERT INTO dialect_probe (id, path, tags) VALUES (%s, %s, %s)",
                    (row_id, path, Json(tags)),
                )
        yield backend
    finally:
        await backend.close()


async def ids(store: SqlStore, where: str, params: list[object]) -> list[str]:
    async with store.transaction() as tx:
        rows = await tx.fetchall(
            f"SELECT id FROM dialect_probe WHERE {where} ORDER BY id",
            params,
        )
    return [str(row[0]) for row in rows]


def test_a_dialect_is_its_backend_name() -> None:
    assert SQLITE == "sqlite" and POSTGRESQL == "postgresql"
    assert Dialect("postgresql").is_postgresql and not SQLITE.is_postgresql


async def test_each_piece_means_the_same_on_both_backends(store: SqlStore) -> None:
    dialect = store.dialect
    assert isinstance(dialect, Dialect)
    sql, params = dialect.one_of("id", ["gate-2", "yard-3", "nobody"])
    assert await ids(store, sql, params) == ["gate-2", "yard-3"]
    sql, params = dialect.json_array_contains("tags", "gate")
    assert await ids(store, sql, params) == ["Gate-1"]
    sql, params = dialect.subtree("path", "/150207/150207001/", "/150207/150207001/*")
    assert await ids(store, sql, params) == ["Gate-1", "gate-2"]
    assert await ids(store, f"id {dialect.ilike()} %s", ["GATE%"]) == ["Gate-1", "gate-2"]
    assert await ids(store, f"{dialect.unindexed('path')} = %s", ["/150207/150207002/"]) == [
        "yard-3"
    ]
    async with store.transaction() as tx:
        assert await dialect.table_exists(tx, "dialect_probe")
        assert not await dialect.table_exists(tx, "no_such_table")
        assert await dialect.columns(tx, "dialect_probe") == {"id", "path", "tags"}
        lock = dialect.transaction_lock(42)
        if lock is not None:
            await tx.fetchone(lock)
        locked = await tx.fetchall(
            f"SELECT id FROM dialect_probe WHERE id = %s{dialect.row_lock()}", ("yard-3",)
        )
        claimed = await tx.fetchall(
            f"SELECT id FROM dialect_probe ORDER BY id LIMIT 1{dialect.skip_locked()}"
        )
    assert [r[0] for r in locked] == ["yard-3"] and [r[0] for r in claimed] == ["Gate-1"]
    assert (dialect.transaction_lock(1) is None) == (not dialect.is_postgresql)
