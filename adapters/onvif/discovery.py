"""WS-Discovery: find ONVIF cameras on one local network interface."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from adapters.onvif.answers import parse_probe_matches
from adapters.onvif.models import Candidate
from adapters.safexml import XmlRefused

__all__ = ["discover"]

logger = logging.getLogger(__name__)

_WSD_MULTICAST = ("239.255.255.250", 3702)


def _probe_message() -> bytes:
    from wsdiscovery.actions.probe import constructProbe
    from wsdiscovery.message import createSOAPMessage
    from wsdiscovery.qname import QName

    env = constructProbe(
        [QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter", "dn")], []
    )
    return str(createSOAPMessage(env)).encode()


def _discover_blocking(
    interface_ip: str, timeout: float, target: tuple[str, int]
) -> list[tuple[bytes, str]]:
    message = _probe_message()
    replies: list[tuple[bytes, str]] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        # Bound to the chosen interface on an ephemeral port: we never listen on 3702.
        sock.bind((interface_ip, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface_ip))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.sendto(message, target)
        loop_deadline = time.monotonic() + timeout
        while len(replies) < 10_000:
            remaining = loop_deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                data, (address, _port) = sock.recvfrom(65535)
            except TimeoutError:
                break
            replies.append((data, str(address)))
    return replies


async def discover(
    interface_ip: str,
    timeout: float = 3.0,  # noqa: ASYNC109 - how long to collect answers, used in the thread
    *,
    target: tuple[str, int] = _WSD_MULTICAST,
) -> list[Candidate]:
    """WS-Discovery probe for ONVIF cameras from one local interface address.

    The socket work runs in a worker thread. Replies that are not valid
    ProbeMatches are logged and skipped; duplicates (by endpoint) are merged.
    """
    replies = await asyncio.to_thread(_discover_blocking, interface_ip, timeout, target)
    found: dict[str, Candidate] = {}
    for data, responder in replies:
        try:
            candidates = parse_probe_matches(data, responder)
        except XmlRefused as exc:
            logger.info("discovery: unusable answer from %s: %s", responder, exc)
            continue
        for candidate in candidates:
            found.setdefault(candidate.endpoint, candidate)
    return list(found.values())
