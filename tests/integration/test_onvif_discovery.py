"""WS-Discovery from a chosen interface, answered by a responder on 127.0.0.1 (never port 3702)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

from adapters.onvif.client import discover

PROBE_MATCHES = (
    Path(__file__).resolve().parents[1] / "fixtures" / "onvif" / "probe_matches.xml"
).read_bytes()


class Responder(asyncio.DatagramProtocol):
    """Answers every probe with a ProbeMatches (twice, as real cameras repeat UDP)."""

    def __init__(self) -> None:
        self.probes: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.probes.append(data)
        assert self.transport is not None
        self.transport.sendto(PROBE_MATCHES, addr)
        self.transport.sendto(PROBE_MATCHES, addr)
        self.transport.sendto(b"<not-xml", addr)


async def test_discovery_lists_each_camera_once() -> None:
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(
        Responder, local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        candidates = await discover("127.0.0.1", 1.0, target=("127.0.0.1", port))
    finally:
        transport.close()
    (probe,) = responder.probes
    assert b"Probe" in probe and b"NetworkVideoTransmitter" in probe
    (candidate,) = candidates
    assert candidate.endpoint == "urn:uuid:4d454930-0000-1000-8000-bcbac2a01f3c"
    assert candidate.xaddrs[0] == "http://192.168.1.64/onvif/device_service"
    assert candidate.responder == "127.0.0.1"
    assert candidate.name == "IPC-East-Gate"
