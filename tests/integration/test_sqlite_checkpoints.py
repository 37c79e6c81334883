"""SQLite's WAL is checkpointed on a thread of its own, never inside a commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hub.storage.sqlite import SQLiteStore
from tests.helpers import make_event


def _events_in_database_file(path: Path) -> int:
    """Events in the database file itself: `immutable` reads it without the WAL
    (0 while even the schema is only in the WAL)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'events'").fetchall()
        if not tables:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def _settled_count(path: Path) -> int:
    """`_events_in_database_file`, or -1 while a checkpoint is half-way through
    writing the file (an immutable reader then sees a torn page)."""
    try:
        return _events_in_database_file(path)
    except sqlite3.DatabaseError:
        return -1


async def test_commits_leave_checkpoints_to_the_checkpoint_thread(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    store = SQLiteStore(path, checkpoint_interval_s=3600)
    await store.open()
    try:
        # About 8 MB: well past the 1,000 WAL pages at which SQLite's default
        # would checkpoint inside a commit.
        for batch in range(60):
            await store.ingest(
                [
                    make_event(n, payload={"n": n, "note": "x" * 2500})
                    for n in range(batch * 50, batch * 50 + 50)
                ]
            )
        assert await store.count_events() == 3000
        assert _events_in_database_file(path) == 0  # all of it still in the WAL
    finally:
        await store.close()
    assert _events_in_database_file(path) == 3000  # the last close checkpoints


async def test_the_checkpoint_thread_moves_committed_pages_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    store = SQLiteStore(path, checkpoint_interval_s=0.05)
    await store.open()
    try:
        await store.ingest([make_event(n) for n in range(200)])
        async with asyncio.timeout(10):
            while _settled_count(path) < 200:  # noqa: ASYNC110 - the file itself
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the checkpoint that wrote the file has been counted
        runs = store.checkpoints
        assert runs >= 1
        await asyncio.sleep(0.3)  # nothing committed since: no checkpoint either
        assert store.checkpoints == runs
    finally:
        await store.close()
