"""The SIP transports: one asyncio UDP endpoint and one TCP server on the same port.

They only move bytes: each arriving message is parsed (`adapters.gb28181.sip`)
and handed to `on_message` with the `Peer` it came from; `send` writes a
message back to a peer over the transport it used. A malformed UDP datagram
goes to `on_refused` (no traceback); a malformed TCP stream does too and its
connection is closed. TCP connections are capped and closed after
`idle_timeout` without traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from adapters.gb28181.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    SipStreamDecoder,
    parse_message,
)

__all__ = ["OnMessage", "OnRefused", "Peer", "SipTransport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from: transport (`UDP`/`TCP`), address and port."""

    transport: str
    host: str
    port: int


OnMessage = Callable[[SipRequest | SipResponse, Peer], None]
OnRefused = Callable[[Peer, str, bytes], None]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = Peer("UDP", addr[0], addr[1])
        if data.strip(b"\r\n\x00") == b"":
            return  # keep-alive CRLF
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._owner.on_refused(peer, str(exc), data[:512])
            return
        self._owner.on_message(message, peer)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP error: %s", exc)


class SipTransport:
    """UDP and TCP SIP on one host and port."""

    def __init__(
        self,
        on_message: OnMessage,
        on_refused: OnRefused,
        *,
        max_connections: int = 4096,
        idle_timeout: float = 300.0,
    ) -> None:
        self.on_message = on_message
        self.on_refused = on_refused
        self._max_connections = max_connections
        self._idle = idle_timeout
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._streams: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.udp_port = 0
        self.tcp_port = 0

    async def start(self, host: str, port: int, *, tcp: bool = True) -> None:
        """Bind UDP (and TCP) on `host:port`; port 0 picks a free port (the UDP one for TCP)."""
        loop = asyncio.get_running_loop()
        # With port 0 the UDP port is picked first; TCP may find it taken: pick again.
        for attempt in range(1 if port else 20):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(host, port)
            )
            self._udp = transport
            self.udp_port = int(transport.get_extra_info("sockname")[1])
            if not tcp:
                return
            try:
                self._server = await asyncio.start_server(self._serve, host, self.udp_port)
            except OSError:
                transport.close()
                self._udp = None
                if port or attempt == 19:
                    raise
                continue
            self.tcp_port = self.udp_port
            return

    async def stop(self) -> None:
        """Close the endpoint, the server and every connection."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            for writer in list(self._streams.values()):
                writer.close()
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._server.wait_closed()
            self._server = None

    def send(self, peer: Peer, message: SipRequest | SipResponse | bytes) -> bool:
        """Send to `peer` over its transport; False when that is not possible now."""
        data = message if isinstance(message, bytes) else bytes(message)
        if peer.transport == "TCP":
            writer = self._streams.get((peer.host, peer.port))
            if writer is None or writer.is_closing():
                return False
            writer.write(data)
            return True
        if self._udp is None:
            return False
        self._udp.sendto(data, (peer.host, peer.port))
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        address = writer.get_extra_info("peername")
        if task is None or not address:
            writer.close()
            return
        key = (str(address[0]), int(address[1]))
        if len(self._streams) >= self._max_connections:
            writer.close()
            return
        self._tasks.add(task)
        self._streams[key] = writer
        peer = Peer("TCP", *key)
        decoder = SipStreamDecoder()
        try:
            while True:
                data = await asyncio.wait_for(reader.read(65536), self._idle)
                if not data:
                    break
                try:
                    messages = decoder.feed(data)
                except SipParseError as exc:
                    self.on_refused(peer, str(exc), data[:512])
                    break
                for message in messages:
                    self.on_message(message, peer)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._streams.pop(key, None)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
