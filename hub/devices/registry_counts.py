"""Keeping the subtree device counts a small sum: the count deltas the triggers append
are folded after large writes and, while the hub runs, whenever enough have piled up."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hub.devices import storage as repo
from hub.storage import SqlStore

__all__ = ["FOLD_AFTER_DELTAS", "CountFolder"]

log = logging.getLogger(__name__)

#: Fold when this many deltas have piled up since the last fold.
FOLD_AFTER_DELTAS = 5000
# How often to look (health changes add deltas without passing through the registry).
_FOLD_CHECK_S = 30.0


class CountFolder:
    """Folds `device_counts` deltas for one store."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._folded_rows = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start `run` in the background (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="registry-counts")

    async def stop(self) -> None:
        """Stop the background folding."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def fold(self, *, force: bool = False) -> int:
        """Fold the deltas when enough have piled up (or `force`); how many were folded."""
        if not force and await repo.count_deltas(self.store) < (
            self._folded_rows + FOLD_AFTER_DELTAS
        ):
            return 0
        folded = await repo.compact_counts(self.store)
        self._folded_rows = await repo.count_deltas(self.store)
        return folded

    async def run(self) -> None:
        """Fold the deltas whenever enough have piled up, until cancelled."""
        while True:
            await asyncio.sleep(_FOLD_CHECK_S)
            try:
                await self.fold()
            except Exception:
                log.exception("folding device count deltas failed; will retry")

    async def after_write(self, written: int) -> None:
        """Fold at once after a write of `written` devices, when it was a large one."""
        # Its deltas would slow every count read, and the planner would go on
        # planning for the registry's old size.
        if written < FOLD_AFTER_DELTAS:
            return
        try:
            await self.fold(force=True)
            await repo.refresh_statistics(self.store)
        except Exception:
            log.exception("folding device count deltas failed; the background loop will retry")
