"""Live video of GB/T 28181 channels: INVITE, RTP in over UDP or TCP, PS demuxed by PyAV.

One `MediaSession` per channel, shared by every user — live viewers, alarm
snapshots, the patrol, the pre-alarm buffer: the first user INVITEs the channel
(`s=Play`, `y=` SSRC, a receive port from `gb28181.media_ports`), the last one
leaving sends BYE. RTP arrives on a UDP port of the hub, or (`media_transport:
TCP`) over a TCP connection the device opens to the hub's port (`TCP/RTP/AVP`,
`a=setup:passive`, RFC 4571 framing). `PsReassembler` drops what does not belong
(other SSRCs, garbage, oversized packs) and hands whole PS frames to the session's
`StreamFeed`, which demuxes them without decoding: its packets go to the packet
taps (the pre-alarm ring, H.264 passthrough viewers) as they are; pictures are
decoded only while someone wants them (`frames()`: snapshots, the patrol,
viewers that need re-encoding, H.265 for the browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.gb28181.rtp import PsReassembler, Rfc4571Decoder
from adapters.gb28181.sdp import SdpError, live_ssrc, parse_sdp, play_offer
from adapters.gb28181.sip import parse_name_addr
from adapters.media import MediaPacket, StreamFeed, StreamHeader
from hub.gb28181.outgoing import Dialog, RequestTimeout

if TYPE_CHECKING:
    from hub.gb28181.service import Gb28181Service

__all__ = ["GB_URL_PREFIX", "Media", "MediaError", "MediaSession"]

log = logging.getLogger(__name__)

GB_URL_PREFIX = "gb28181://"
_QUEUE = 8
#: Connections a TCP receive port takes at once (the device's, and a stray one).
_TCP_CONNECTIONS = 2
_READ = 65536


class MediaError(Exception):
    """A channel's stream could not be started."""


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, session: MediaSession) -> None:
        self._session = session

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._session.receive(data)


@dataclass(eq=False)
class MediaSession:
    """One channel's live stream as the hub receives it."""

    channel_id: str
    device_id: str
    ssrc: str
    tcp: bool
    reassembler: PsReassembler
    feed: StreamFeed
    loop: asyncio.AbstractEventLoop
    port: int = 0
    users: int = 0
    frames: int = 0
    dialog: Dialog | None = None
    transport: asyncio.DatagramTransport | None = None
    server: asyncio.Server | None = None
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    subscribers: list[asyncio.Queue[Any]] = field(default_factory=list)
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)
    header_known: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    end_listeners: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.feed.add_tap(self._header_tap)

    @property
    def codec(self) -> str | None:
        """The video codec (h264, hevc…) once the stream's first packets are read."""
        return self.feed.codec

    def receive(self, data: bytes) -> None:
        """One RTP packet (on the loop): reassembled PS frames go to the demuxer."""
        for frame in self.reassembler.feed(data):
            self.feed.write(frame.data)

    def _header_tap(self, packet: MediaPacket | None, header: StreamHeader | None) -> None:
        if packet is None and header is not None:
            self.loop.call_soon_threadsafe(self.header_known.set)
            self.feed.remove_tap(self._header_tap)

    # -- decoded pictures -------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[Any]:
        """A queue of this stream's decoded pictures (None once it ends); decoding runs
        while any queue is subscribed."""
        queue: asyncio.Queue[Any] = asyncio.Queue(_QUEUE)
        self.subscribers.append(queue)
        if len(self.subscribers) == 1:
            self.feed.add_frame_tap(self._frame_tap)
        if self.ended:
            queue.put_nowait(None)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Any]) -> None:
        """Stop a queue; the last one stops the decoding."""
        if queue in self.subscribers:
            self.subscribers.remove(queue)
            if not self.subscribers:
                self.feed.remove_frame_tap(self._frame_tap)

    def _frame_tap(self, frame: Any) -> None:
        # On the feed's thread.
        with contextlib.suppress(RuntimeError):  # the loop closed under a late picture
            self.loop.call_soon_threadsafe(self.publish, frame)

    def ended_soon(self) -> None:
        """The feed's thread ended (any thread): `end` on the loop."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.end)

    def publish(self, frame: Any) -> None:
        """A decoded picture (on the loop)."""
        self.frames += 1
        self.first_frame.set()
        for queue in self.subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(frame)

    def on_end(self, listener: Callable[[], None]) -> None:
        """Call `listener` (on the loop) when the stream ends."""
        self.end_listeners.append(listener)
        if self.ended:
            listener()

    def end(self) -> None:
        """The stream ended: subscribers get None, end listeners are told."""
        if self.ended:
            return
        self.ended = True
        self.header_known.set()
        for listener in self.end_listeners:
            listener()
        for queue in self.subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(None)

    async def picture(self, timeout_s: float) -> Any:
        """One whole decoded picture (an `av.VideoFrame`); raises MediaError on timeout."""
        queue = self.subscribe()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    frame = await queue.get()
                    if frame is None:
                        raise MediaError(f"the stream of {self.channel_id} ended")
                    if not frame.is_corrupt:
                        return frame
        except TimeoutError as exc:
            raise MediaError(f"no picture of {self.channel_id} within {timeout_s:g} s") from exc
        finally:
            self.unsubscribe(queue)


class Media:
    """Starts and stops channel streams for the GB/T 28181 service."""

    def __init__(self, service: Gb28181Service) -> None:
        self._service = service
        self._sessions: dict[str, MediaSession] = {}
        self._ports: set[int] = set()
        self._serial = 0
        self._starting: dict[str, asyncio.Future[MediaSession]] = {}
        self._closed = False

    def session(self, channel_id: str) -> MediaSession | None:
        """The running stream of a channel, if any."""
        return self._sessions.get(channel_id)

    def spawn(self, work: Awaitable[None]) -> None:
        """Run `work` in the background under the service (failures logged)."""
        self._service._spawn(work)

    def sessions(self) -> list[MediaSession]:
        """Every running stream."""
        return list(self._sessions.values())

    async def acquire(self, channel_id: str) -> MediaSession:
        """The channel's stream, INVITEd when it is not running yet (one per channel).

        Channels start independently: a device that is slow to answer its INVITE holds
        up only the users of its own channels, who wait for that one INVITE."""
        while True:
            if self._closed:
                raise MediaError("the GB/T 28181 service is stopping")
            session = self._sessions.get(channel_id)
            if session is not None and not session.ended:
                session.users += 1
                return session
            starting = self._starting.get(channel_id)
            if starting is not None:
                await asyncio.shield(starting)  # its MediaError is this user's too
                continue
            if session is not None:
                # The device stopped sending: the next user INVITEs again.
                del self._sessions[channel_id]
                self.spawn(self._bye(session))
            return await self._start(channel_id)

    async def _start(self, channel_id: str) -> MediaSession:
        started: asyncio.Future[MediaSession] = asyncio.get_running_loop().create_future()
        # Waiters see the outcome; nobody waiting must not make it an unretrieved error.
        started.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._starting[channel_id] = started
        try:
            session = await self._invite(channel_id)
            if self._closed:
                await self._bye(session)  # the service stopped while the device answered
                raise MediaError("the GB/T 28181 service is stopping")
        except MediaError as exc:
            started.set_exception(exc)
            raise
        except BaseException:
            started.set_exception(MediaError(f"the INVITE of {channel_id} was abandoned"))
            raise
        finally:
            self._starting.pop(channel_id, None)
        self._sessions[channel_id] = session
        session.users += 1
        started.set_result(session)
        return session

    async def release(self, session: MediaSession) -> None:
        """One user less; BYE after the last."""
        session.users -= 1
        if session.users > 0:
            return
        if self._sessions.get(session.channel_id) is session:
            del self._sessions[session.channel_id]
        await self._bye(session)

    async def picture(self, channel_id: str, timeout_s: float) -> Any:
        """One decoded picture of a channel through its shared stream (INVITE if needed)."""
        session = await self.acquire(channel_id)
        try:
            return await session.picture(timeout_s)
        finally:
            await self.release(session)

    async def close(self) -> None:
        """End every stream; no new one starts."""
        self._closed = True
        for session in list(self._sessions.values()):
            self._sessions.pop(session.channel_id, None)
            await self._bye(session)

    async def _bind(self, session: MediaSession) -> None:
        first, last = self._service.settings.media_ports
        loop = asyncio.get_running_loop()
        host = self._service.settings.sip_host
        for port in range(first, last + 1, 2):
            if port in self._ports:
                continue
            try:
                if session.tcp:
                    session.server = await asyncio.start_server(
                        lambda r, w: self._connected(session, r, w), host, port
                    )
                else:
                    session.transport, _ = await loop.create_datagram_endpoint(
                        lambda: _Datagrams(session), local_addr=(host, port)
                    )
            except OSError:
                continue
            self._ports.add(port)
            session.port = port
            return
        raise MediaError("no free port in gb28181.media_ports")

    async def _connected(
        self, session: MediaSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """The device's RTP over TCP (RFC 4571): each connection framed on its own."""
        task = asyncio.current_task()
        if task is None or len(session.connections) >= _TCP_CONNECTIONS:
            writer.close()
            return
        session.connections.add(task)
        decoder = Rfc4571Decoder()
        try:
            while data := await reader.read(_READ):
                for packet in decoder.feed(data):
                    session.receive(packet)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            session.connections.discard(task)
            writer.close()

    async def _invite(self, channel_id: str) -> MediaSession:
        service = self._service
        device_id = await service.owner_of(channel_id)
        peer_session = service.sessions.get(device_id) if device_id else None
        if device_id is None or peer_session is None:
            raise MediaError(f"channel {channel_id} has no registered device")
        self._serial += 1
        ssrc = live_ssrc(service.settings.domain, self._serial)
        tcp = service.settings.media_transport == "TCP"
        session = MediaSession(
            channel_id,
            device_id,
            ssrc,
            tcp,
            PsReassembler(int(ssrc)),
            StreamFeed(f"gb-{channel_id}", format="mpeg"),
            asyncio.get_running_loop(),
        )
        session.feed.on_end = session.ended_soon
        await self._bind(session)
        offer = play_offer(
            platform_id=service.settings.platform_id,
            channel_id=channel_id,
            media_host=service.settings.host_for_devices(),
            media_port=session.port,
            ssrc=ssrc,
            tcp=tcp,
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
            await self._free(session)
            raise MediaError(f"channel {channel_id}: {exc}") from exc
        except BaseException:
            await self._free(session)  # cancelled while waiting: the port goes back
            raise
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
        session.feed.start()
        log.info(
            "GB/T 28181: playing %s (SSRC %s, %s port %d)",
            channel_id,
            ssrc,
            "TCP" if tcp else "UDP",
            session.port,
        )
        return session

    async def _bye(self, session: MediaSession) -> None:
        service = self._service
        device = service.sessions.get(session.device_id)
        if session.dialog is not None and device is not None:
            bye = service.outgoing.build(
                "BYE", device.peer, session.channel_id, dialog=session.dialog
            )
            session.dialog = None
            with contextlib.suppress(RequestTimeout):
                await service.outgoing.send(bye, device.peer, wait_s=4.0)
        await self._free(session)
        await asyncio.to_thread(session.feed.join, 5.0)
        log.info("GB/T 28181: stopped %s", session.channel_id)

    async def _free(self, session: MediaSession) -> None:
        if session.transport is not None:
            session.transport.close()
            session.transport = None
        if session.server is not None:
            server, session.server = session.server, None
            server.close()
            for task in list(session.connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        session.feed.close()
        self._ports.discard(session.port)
