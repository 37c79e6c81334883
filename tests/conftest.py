"""Fixtures shared by the suite: storage backends on real peers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from hub.storage import PostgresStore, SQLiteStore, SqlStore
from tests.peers import peer_missing, port_open

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
STORE_BACKENDS = ["sqlite", "postgres", "timescale"]


def _pg_available() -> bool:
    return port_open("127.0.0.1", 5432)


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server, dropped afterwards."""
    if not _pg_available():
        peer_missing("postgresql", "nothing listens on 127.0.0.1:5432")
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        peer_missing("postgresql", f"cannot create a test database: {exc}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def timescale_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PGlite+TimescaleDB server for the session (it takes seconds to start)."""
    from tests.peers.timescale import timescale_peer

    with timescale_peer(tmp_path_factory.mktemp("pglite")) as dsn:
        yield dsn


def reset_timescale(dsn: str) -> None:
    """Empty the TimescaleDB peer so a test starts from a blank database.

    The extension itself stays: PGlite is one backend for the whole session, and
    TimescaleDB cannot be created again in a backend that has loaded it.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        views = conn.execute(
            "SELECT matviewname FROM pg_matviews WHERE schemaname = 'public'"
        ).fetchall()
        for (view,) in views:
            conn.execute(f'DROP MATERIALIZED VIEW IF EXISTS "{view}" CASCADE')
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')


@pytest.fixture
def timescale_dsn(timescale_server: str) -> str:
    """The TimescaleDB peer, emptied for this test."""
    reset_timescale(timescale_server)
    return timescale_server


def build_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> SqlStore:
    """A not-yet-open store of the given backend on a fresh database."""
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "gw.sqlite3", retention_days=30)
    if backend == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        return PostgresStore(dsn, pool_size=4, retention_days=30, use_timescale=False)
    dsn = request.getfixturevalue("timescale_dsn")
    return PostgresStore(dsn, pool_size=1, retention_days=30, use_timescale=True)


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """An open store on each backend in turn: SQLite, PostgreSQL, TimescaleDB."""
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
