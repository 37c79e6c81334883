"""A GB/T 28181 channel as a long-lived packet source (the pre-alarm buffer's pull).

`ChannelPull` behaves like `adapters.media.PacketPull` for an RTSP URL — taps
get every packet, undecoded, with a fresh `StreamHeader` on each new connection
— but its packets come from the channel's one shared `MediaSession`: the pull is
one more user of it (so the INVITE that serves the buffer also serves viewers,
snapshots and the patrol). When the stream ends or cannot be started, it INVITEs
again after a growing pause, as a pull reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from adapters.media import MediaPacket, PacketTap, StreamHeader
from hub.gb28181.media import Media, MediaError, MediaSession

__all__ = ["ChannelPull"]

log = logging.getLogger(__name__)

_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 30.0


class ChannelPull:
    """Packets of one channel's shared stream for as long as the pull runs."""

    def __init__(self, media: Media, channel_id: str) -> None:
        self.name = channel_id
        self._media = media
        self._loop = asyncio.get_running_loop()
        self._taps: list[PacketTap] = []
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._session: MediaSession | None = None
        self.header: StreamHeader | None = None
        self.last_error: str | None = None
        self.connections = 0
        self.packets = 0

    @property
    def connected(self) -> bool:
        """True while the channel's stream delivers."""
        session = self._session
        return session is not None and session.feed.connected

    def add_tap(self, tap: PacketTap) -> None:
        """Give every further packet to `tap` too (any thread)."""
        with self._lock:
            self._taps = [*self._taps, tap]
            header = self.header
        if header is not None:
            tap(None, header)

    def remove_tap(self, tap: PacketTap) -> None:
        """Stop giving packets to `tap`."""
        with self._lock:
            self._taps = [t for t in self._taps if t is not tap]

    def start(self) -> None:
        """Start following the channel (on the loop)."""
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name=f"gb-pull-{self.name}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop and leave the channel's stream (from any thread, like `PacketPull.stop`)."""
        task = self._task
        if task is None:
            return
        if _on_loop(self._loop):
            task.cancel()
            return
        done = threading.Event()
        task.add_done_callback(lambda _: done.set())
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs anymore
            self._loop.call_soon_threadsafe(task.cancel)
            done.wait(timeout_s)

    def _tap(self, packet: MediaPacket | None, header: StreamHeader | None) -> None:
        # On the feed's thread: hand on, as PacketPull does.
        if packet is None:
            self.header = header
        else:
            self.packets += 1
        for tap in self._taps:
            try:
                tap(packet, header)
            except Exception:
                log.exception("packet tap of channel %s failed", self.name)

    async def _run(self) -> None:
        pause = _RETRY_MIN_S
        while True:
            try:
                session = await self._media.acquire(self.name)
            except MediaError as exc:
                reason = str(exc)[:200]
                level = logging.DEBUG if reason == self.last_error else logging.INFO
                log.log(level, "GB/T 28181: buffer of %s cannot start: %s", self.name, reason)
                self.last_error = reason
            else:
                self._session = session
                ended = asyncio.Event()
                session.on_end(ended.set)
                session.feed.add_tap(self._tap)
                self.connections += 1
                if self.last_error is not None:
                    log.info("GB/T 28181: buffer of %s plays again", self.name)
                    self.last_error = None
                try:
                    await ended.wait()
                    self.last_error = "the stream ended"
                    pause = _RETRY_MIN_S
                finally:
                    session.feed.remove_tap(self._tap)
                    self._session = None
                    await asyncio.shield(self._media.release(session))
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RETRY_MAX_S)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
