"""A GB/T 28181 channel as the live-view relay's player (`gb28181://<channel id>` URLs).

The player shares the channel's one `MediaSession` with every other user. For a
viewer whose browser takes H.264 (`passthrough`) and a channel that sends H.264,
the demuxed packets go to the browser as they are — nothing is decoded or
re-encoded. Otherwise (H.265, which browsers do not take over WebRTC, or a
viewer that asked for VP8) the pictures are decoded for the relay to encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from adapters.media import MediaPacket, StreamHeader
from adapters.webrtc import SharedVideoTrack
from hub.gb28181.media import Media, MediaError, MediaSession

__all__ = ["GbPlayer"]

log = logging.getLogger(__name__)

#: Longest wait for a channel's first packets after its INVITE was answered.
_FIRST_PACKETS_S = 20.0


class _GbTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, player: GbPlayer) -> None:
        super().__init__()
        self._player = player

    async def recv(self) -> Any:
        return await self._player.next()

    def stop(self) -> None:
        super().stop()
        self._player.stopped()


class GbPlayer:
    """A channel's stream as the relay's player (`.video`, no `.audio`)."""

    def __init__(self, media: Media, channel_id: str, *, passthrough: bool) -> None:
        self._media = media
        self.channel_id = channel_id
        self.passthrough_requested = passthrough
        self._loop = asyncio.get_running_loop()
        self._session: MediaSession | None = None
        self._frames: asyncio.Queue[Any] | None = None
        self._packets: SharedVideoTrack | None = None
        self._stopped = False
        self.packets_passed = 0
        self.frames_passed = 0
        self.audio = None
        self.video = _GbTrack(self)
        self._start = asyncio.ensure_future(self._open())

    @property
    def passthrough(self) -> bool:
        """True when this player hands the channel's H.264 packets on undecoded."""
        return self._packets is not None

    async def _open(self) -> None:
        session = await self._media.acquire(self.channel_id)
        self._session = session
        try:
            async with asyncio.timeout(_FIRST_PACKETS_S):
                await session.header_known.wait()
        except TimeoutError as exc:
            raise MediaError(f"channel {self.channel_id} sent no readable video") from exc
        if session.ended:
            raise MediaError(f"the stream of {self.channel_id} ended")
        if self.passthrough_requested and session.codec == "h264":
            self._packets = SharedVideoTrack()
            session.feed.add_tap(self._tap)
            session.on_end(self._packets.stop)
        else:
            self._frames = session.subscribe()
        log.info(
            "GB/T 28181: live view of %s (%s, %s)",
            self.channel_id,
            session.codec,
            "passthrough" if self._packets is not None else "decoded",
        )

    def _tap(self, packet: MediaPacket | None, _: StreamHeader | None) -> None:
        # On the feed's thread.
        track = self._packets
        if packet is not None and packet.video and track is not None:
            track.feed(packet.data, packet.pts, packet.time_base, packet.keyframe)

    async def next(self) -> Any:
        """The next packet (passthrough) or picture; MediaStreamError once it ends."""
        try:
            await asyncio.shield(self._start)
        except MediaError as exc:
            raise MediaStreamError from exc
        if self._packets is not None:
            packet = await self._packets.recv()
            self.packets_passed += 1
            return packet
        assert self._frames is not None  # noqa: S101 - set by _open
        frame = await self._frames.get()
        if frame is None:
            raise MediaStreamError
        self.frames_passed += 1
        return frame

    def stopped(self) -> None:
        """The relay stopped the track (maybe from a thread): release the channel."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        async def release() -> None:
            with contextlib.suppress(MediaError, asyncio.CancelledError):
                await self._start
            session = self._session
            if session is None:
                return
            session.feed.remove_tap(self._tap)
            if self._packets is not None:
                self._packets.stop()
            if self._frames is not None:
                session.unsubscribe(self._frames)
            await self._media.release(session)

        self._media.spawn(release())
