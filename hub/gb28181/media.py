"""Live video of GB/T 28181 channels: INVITE, RTP in, PS demuxed by PyAV, frames out.

One `MediaSession` per channel, shared by every user (live-view pulls): the first
user INVITEs the channel (`s=Play`, `y=` SSRC, receive port from
`gb28181.media_ports`), the last one leaving sends BYE. RTP arrives on a UDP port
of the hub; `PsReassembler` drops what does not belong (other SSRCs, garbage,
oversized packs) and hands whole PS packs to a bounded pipe, which a thread
demuxes and decodes with PyAV (`format=mpeg`). Decoded frames go to each
subscriber's small queue (the oldest is dropped when a subscriber falls behind).
`GbPlayer` wraps a session as the player the live-view relay pulls from
(`gb28181://<channel id>` source URLs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from adapters.gb28181.rtp import PsReassembler
from adapters.gb28181.sdp import SdpError, live_ssrc, parse_sdp, play_offer
from adapters.gb28181.sip import parse_name_addr
from hub.gb28181.outgoing import Dialog, RequestTimeout

if TYPE_CHECKING:
    from hub.gb28181.service import Gb28181Service

__all__ = ["GB_URL_PREFIX", "GbPlayer", "Media", "MediaError", "MediaSession"]

log = logging.getLogger(__name__)

GB_URL_PREFIX = "gb28181://"
_PIPE_BYTES = 8 * 1024 * 1024
#: Read the stream layout from the first PES headers instead of probing seconds of video
#: (the default probe waited ~5 s for a 300 kbit/s camera before the first picture).
_DEMUX_OPTIONS = {"probesize": "4096", "analyzeduration": "0", "fflags": "nobuffer"}
_QUEUE = 8


class MediaError(Exception):
    """A channel's stream could not be started."""


class _PsPipe:
    """Bytes from the event loop to the demux thread; bounded, blocking reads."""

    def __init__(self, max_bytes: int = _PIPE_BYTES) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._max = max_bytes
        self._closed = False
        self._ready = threading.Condition()
        self.dropped = 0

    def write(self, data: bytes) -> None:
        with self._ready:
            if self._size + len(data) > self._max:
                self.dropped += 1  # the demuxer is stuck: drop rather than grow
                return
            self._chunks.append(data)
            self._size += len(data)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._ready:
            while not self._chunks and not self._closed:
                self._ready.wait(1.0)
            if not self._chunks:
                return b""
            out = bytearray()
            while self._chunks and (size < 0 or len(out) < size):
                chunk = self._chunks.popleft()
                need = len(chunk) if size < 0 else size - len(out)
                out += chunk[:need]
                if need < len(chunk):
                    self._chunks.appendleft(chunk[need:])
            self._size -= len(out)
            return bytes(out)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, session: MediaSession) -> None:
        self._session = session

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for frame in self._session.reassembler.feed(data):
            self._session.pipe.write(frame.data)


@dataclass(eq=False)
class MediaSession:
    """One channel's live stream as the hub receives it."""

    channel_id: str
    device_id: str
    port: int
    ssrc: str
    reassembler: PsReassembler
    pipe: _PsPipe = field(default_factory=_PsPipe)
    subscribers: list[asyncio.Queue[Any]] = field(default_factory=list)
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)
    users: int = 0
    frames: int = 0
    dialog: Dialog | None = None
    transport: asyncio.DatagramTransport | None = None
    thread: threading.Thread | None = None
    codec: str | None = None

    def subscribe(self) -> asyncio.Queue[Any]:
        """A queue of this stream's decoded frames."""
        queue: asyncio.Queue[Any] = asyncio.Queue(_QUEUE)
        self.subscribers.append(queue)
        return queue

    def publish(self, frame: Any) -> None:
        """A decoded frame (called on the loop)."""
        self.frames += 1
        self.first_frame.set()
        for queue in self.subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(frame)

    def end(self) -> None:
        """The stream ended: subscribers get None."""
        for queue in self.subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(None)


def _demux(session: MediaSession, loop: asyncio.AbstractEventLoop) -> None:
    import av

    try:
        container: Any = av.open(session.pipe, format="mpeg", options=dict(_DEMUX_OPTIONS))
    except Exception as exc:
        log.warning("GB/T 28181: stream of %s unreadable: %s", session.channel_id, exc)
        loop.call_soon_threadsafe(session.end)
        return
    try:
        stream = container.streams.video[0]
        session.codec = stream.codec_context.name
        for frame in container.decode(stream):
            loop.call_soon_threadsafe(session.publish, frame)
    except Exception as exc:
        log.info("GB/T 28181: stream of %s ended: %s", session.channel_id, exc)
    finally:
        container.close()
        loop.call_soon_threadsafe(session.end)


class Media:
    """Starts and stops channel streams for the GB/T 28181 service."""

    def __init__(self, service: Gb28181Service) -> None:
        self._service = service
        self._sessions: dict[str, MediaSession] = {}
        self._ports: set[int] = set()
        self._serial = 0
        self._lock = asyncio.Lock()

    def session(self, channel_id: str) -> MediaSession | None:
        """The running stream of a channel, if any."""
        return self._sessions.get(channel_id)

    async def acquire(self, channel_id: str) -> MediaSession:
        """The channel's stream, INVITEd when it is not running yet (one per channel)."""
        async with self._lock:
            session = self._sessions.get(channel_id)
            if session is None:
                session = await self._invite(channel_id)
                self._sessions[channel_id] = session
            session.users += 1
            return session

    async def release(self, session: MediaSession) -> None:
        """One user less; BYE after the last."""
        async with self._lock:
            session.users -= 1
            if session.users > 0 or self._sessions.get(session.channel_id) is not session:
                return
            del self._sessions[session.channel_id]
        await self._bye(session)

    async def close(self) -> None:
        """End every stream."""
        for session in list(self._sessions.values()):
            self._sessions.pop(session.channel_id, None)
            await self._bye(session)

    async def _bind(self, session_factory: Any) -> tuple[int, asyncio.DatagramTransport]:
        first, last = self._service.settings.media_ports
        loop = asyncio.get_running_loop()
        host = self._service.settings.sip_host
        for port in range(first, last + 1, 2):
            if port in self._ports:
                continue
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    session_factory, local_addr=(host, port)
                )
            except OSError:
                continue
            self._ports.add(port)
            return port, transport
        raise MediaError("no free port in gb28181.media_ports")

    async def _invite(self, channel_id: str) -> MediaSession:
        service = self._service
        device_id = await service.owner_of(channel_id)
        peer_session = service.sessions.get(device_id) if device_id else None
        if device_id is None or peer_session is None:
            raise MediaError(f"channel {channel_id} has no registered device")
        self._serial += 1
        ssrc = live_ssrc(service.settings.domain, self._serial)
        session = MediaSession(channel_id, device_id, 0, ssrc, PsReassembler(int(ssrc)))
        session.port, session.transport = await self._bind(lambda: _Receiver(session))
        port = session.port
        offer = play_offer(
            platform_id=service.settings.platform_id,
            channel_id=channel_id,
            media_host=service.settings.host_for_devices(),
            media_port=port,
            ssrc=ssrc,
        )
        peer = peer_session.peer
        request = service.outgoing.build(
            "INVITE",
            peer,
            channel_id,
            body=offer,
            content_type="application/sdp",
            extra=[("Subject", f"{channel_id}:{ssrc},{service.settings.platform_id}:0")],
        )
        try:
            answer = await service.outgoing.send(request, peer, wait_s=10.0)
            if answer.status != 200:
                raise MediaError(f"INVITE answered {answer.status} {answer.reason}")
            parse_sdp(answer.body)
        except (RequestTimeout, SdpError, MediaError) as exc:
            self._free(session)
            raise MediaError(f"channel {channel_id}: {exc}") from exc
        number, _ = request.cseq
        from_tag = parse_name_addr(request.header("from")).tag or ""
        session.dialog = Dialog(
            call_id=request.call_id,
            local_tag=from_tag,
            remote_tag=parse_name_addr(answer.header("to")).tag,
            request_uri=request.uri,
            to_uri=parse_name_addr(request.header("to")).uri,
            cseq=number,
        )
        service.outgoing.fire(
            service.outgoing.build("ACK", peer, channel_id, dialog=session.dialog), peer
        )
        loop = asyncio.get_running_loop()
        session.thread = threading.Thread(
            target=_demux, args=(session, loop), name=f"gb-ps-{channel_id}", daemon=True
        )
        session.thread.start()
        log.info("GB/T 28181: playing %s (SSRC %s, port %d)", channel_id, ssrc, port)
        return session

    async def _bye(self, session: MediaSession) -> None:
        service = self._service
        device = service.sessions.get(session.device_id)
        if session.dialog is not None and device is not None:
            bye = service.outgoing.build(
                "BYE", device.peer, session.channel_id, dialog=session.dialog
            )
            with contextlib.suppress(RequestTimeout):
                await service.outgoing.send(bye, device.peer, wait_s=4.0)
        self._free(session)
        if session.thread is not None:
            await asyncio.to_thread(session.thread.join, 5.0)
        log.info("GB/T 28181: stopped %s", session.channel_id)

    def _free(self, session: MediaSession) -> None:
        if session.transport is not None:
            session.transport.close()
            session.transport = None
        session.pipe.close()
        self._ports.discard(session.port)


class _GbTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, player: GbPlayer) -> None:
        super().__init__()
        self._player = player

    async def recv(self) -> Any:
        queue = await self._player.queue()
        frame = await queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        self._player.stopped()


class GbPlayer:
    """A channel's stream as the live-view relay's player (`.video`, no `.audio`)."""

    def __init__(self, media: Media, channel_id: str) -> None:
        self._media = media
        self.channel_id = channel_id
        self._loop = asyncio.get_running_loop()
        self._session: MediaSession | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._start = asyncio.ensure_future(self._open())
        self._stopped = False
        self.audio = None
        self.video = _GbTrack(self)

    async def _open(self) -> asyncio.Queue[Any]:
        self._session = await self._media.acquire(self.channel_id)
        self._queue = self._session.subscribe()
        return self._queue

    async def queue(self) -> asyncio.Queue[Any]:
        """The frame queue once the channel plays (raises MediaStreamError if it cannot)."""
        try:
            return await asyncio.shield(self._start)
        except MediaError as exc:
            raise MediaStreamError from exc

    def stopped(self) -> None:
        """The relay stopped the track (maybe from a thread): release the channel."""
        if self._stopped:
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        async def release() -> None:
            with contextlib.suppress(MediaError, asyncio.CancelledError):
                await self._start
            session = self._session
            if session is not None:
                if self._queue in session.subscribers:
                    session.subscribers.remove(self._queue)
                await self._media.release(session)

        self._media._service._spawn(release())
