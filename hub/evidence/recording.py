"""Recording one camera's clip of one alarm from its buffer, written while it arrives.

The pre-roll (all the ring holds; the cutter finds the key frame `pre_s` of
pictures before the press) is written as soon as the press is placed; the
post-roll is written as it arrives (woken at least every second); the clip ends
with the picture that completes the post-roll — the buffer's source wakes the
recording the moment it arrives — or `late_s` after the post-roll was due when
the stream stalls, or when the hub stops. Writing runs in worker threads, one
call at a time per clip.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from adapters.media import ClipCutter, ClipFile, ClipWriter, Placed
from hub.evidence.buffers import CameraBuffer

__all__ = ["Recorded", "record_clip"]

log = logging.getLogger(__name__)

# Woken at least this often while the post-roll arrives: what came is written then,
# so closing the clip has only the index and the digests left to do.
_WRITE_EVERY_S = 1.0


_P = ParamSpec("_P")
_T = TypeVar("_T")


async def _off_loop(
    executor: Executor, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T:
    call = functools.partial(work, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)


@dataclass(frozen=True, slots=True)
class Recorded:
    """A written clip and where the press falls in it."""

    file: ClipFile
    start_received: float
    end_received: float
    press_offset_s: float
    complete: bool  # the whole post-roll is in

    def shortfall(self, post_s: float) -> str | None:
        """Why the clip holds less than the post-roll after the press; None when it is whole.

        A clip ended by a stalled stream (or the hub stopping) is still evidence and is
        kept, but it must say that it is short rather than pass for a whole one.
        """
        if self.complete:
            return None
        after = max(self.file.duration_s - self.press_offset_s, 0.0)
        return (
            f"the post-roll is short: {after:.0f} s of {post_s:.0f} s after the alarm"
            " (the camera's stream stalled or the hub stopped)"
        )


async def record_clip(
    buffer: CameraBuffer,
    path: Path,
    *,
    press: float,
    pre_s: float,
    post_s: float,
    max_bytes: int,
    late_s: float,
    title: str,
    clock: Callable[[], float],
    stopping: Callable[[], bool],
    executor: Executor,
    pre_roll_read: Callable[[], None] = lambda: None,
) -> Recorded | str:
    """Record the clip into `path`; the reason when there is none."""
    ring = buffer.ring
    cutter = ClipCutter(press, pre_s, post_s, max_bytes=max_bytes)
    writer: ClipWriter | None = None
    deadline = time.monotonic() + max(press + post_s - clock(), 0.0) + late_s
    with buffer.watch(press) as watch:
        # All the ring holds (bounded): the cut finds the key frame pre_s of pictures back.
        # Read in a thread: a spilling ring reads its files back.
        batch, seq = await _off_loop(executor, ring.window, float("-inf"))
        pre_roll_read()  # the ring may age again: what follows comes by `after(seq)`
        header = ring.header
        if header is None or not batch:
            return "the camera sent no video"
        try:
            while True:
                placed: list[Placed] = cutter.feed(batch)
                if cutter.placed and cutter.at is not None:
                    watch.until_s = cutter.at + post_s
                    watch.placed = True
                ended = cutter.done or time.monotonic() > deadline or stopping()
                if ended and not cutter.done:
                    placed += cutter.finish()
                if placed:
                    if writer is None:
                        writer = await _off_loop(executor, ClipWriter, path, header, title=title)
                    await _off_loop(executor, writer.write, placed)
                if ended:
                    break
                await watch.wait(min(_WRITE_EVERY_S, deadline - time.monotonic()))
                batch, seq, whole = await _off_loop(executor, ring.after, seq)
                if not whole or ring.header is not header:
                    log.warning(
                        "evidence: stream of %s restarted during the clip", buffer.camera_id
                    )
                    batch = []
                    deadline = 0.0  # end with what there is
            if cutter.no_key_frame or writer is None:
                return "the buffer holds no key frame"
            if cutter.end_received <= press:
                # A stream that stopped before the press: pictures of before only are no
                # clip of the alarm (and must not be delivered as one).
                return "the camera sent nothing after the alarm (its stream had stopped)"
            written = await _off_loop(executor, writer.close)
            writer = None
        finally:
            if writer is not None:
                await _off_loop(executor, writer.abort)
    return Recorded(
        file=written,
        start_received=cutter.start_received,
        end_received=cutter.end_received,
        press_offset_s=cutter.press_offset_s,
        complete=cutter.complete,
    )
