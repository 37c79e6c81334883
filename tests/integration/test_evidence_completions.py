"""Clips that end together are marked complete in one go; a clip cancelled while it
waits (the hub stopping) neither loses the others' completions nor stops the next."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from hub.evidence import storage
from hub.storage import SqlStore

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _completed(clip_id: uuid.UUID, n: int) -> storage.Completed:
    return storage.Completed(
        clip_id,
        start_at=NOW - timedelta(seconds=30),
        end_at=NOW + timedelta(seconds=30),
        seconds_before=30.0,
        duration_s=60.0,
        size=1000 + n,
        sha256=f"{n:064x}",
        sha1=f"{n:040x}",
        file_name=f"{clip_id}.mp4",
        tracks='["video:h264"]',
        now=NOW + timedelta(seconds=31),
    )


async def test_clips_ending_together_are_all_completed_even_if_one_is_cancelled(
    store: SqlStore,
) -> None:
    ids = [uuid.uuid4() for _ in range(30)]
    async with store.transaction() as tx:
        for n, clip_id in enumerate(ids):
            fresh = await storage.insert_clip(
                tx, clip_id, uuid.uuid4(), f"cam-{n}", None, NOW, NOW, NOW + timedelta(days=90)
            )
            assert fresh
    completions = storage.Completions(store)
    tasks = [asyncio.create_task(completions.complete(_completed(c, n))) for n, c in enumerate(ids)]
    await asyncio.sleep(0)  # every clip is waiting now
    tasks[7].cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert isinstance(results[7], asyncio.CancelledError)
    assert all(r is None for n, r in enumerate(results) if n != 7)
    # A later clip is still completed: the committing task survived the cancelled one.
    late = uuid.uuid4()
    async with store.transaction() as tx:
        await storage.insert_clip(tx, late, uuid.uuid4(), "cam-late", None, NOW, NOW, NOW)
    await asyncio.wait_for(completions.complete(_completed(late, 99)), 10)
    for n, clip_id in enumerate([*ids, late]):
        async with store.reading() as tx:
            row = await storage.clip(tx, clip_id)
        assert row is not None
        # The cancelled clip's row was written with the rest (its commit was under way).
        assert row.state == "complete" and row.size == (1099 if clip_id == late else 1000 + n)
