"""Requests the platform sends to devices (MESSAGE, SUBSCRIBE, INVITE, ACK, BYE).

Each request gets its own Call-ID (unless it belongs to a dialog), From tag and
branch; over UDP it is retransmitted on RFC 3261's timer (0.5 s doubling to
4 s) until a final answer or `timeout` — over TCP it is sent once. The final
response is matched by Call-ID, CSeq number and method.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.gb28181.sip import SipRequest, SipResponse
from adapters.gb28181.transport import Peer, SipTransport

__all__ = ["Dialog", "Outgoing", "RequestTimeout"]

_T1 = 0.5
_T2 = 4.0


class RequestTimeout(Exception):
    """A device did not answer a request in time."""


@dataclass(slots=True)
class Dialog:
    """The identifiers of a dialog (an INVITE session) for its later requests."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    request_uri: str
    to_uri: str
    cseq: int


class Outgoing:
    """Sends requests to devices and waits for their final answers."""

    def __init__(self, transport: SipTransport, *, platform_id: str, domain: str, host: str):
        self._transport = transport
        self._platform_id = platform_id
        self._domain = domain
        self._host = host
        self._cseq = itertools.count(1)
        self._waiting: dict[tuple[str, int, str], asyncio.Future[SipResponse]] = {}

    def _via(self, peer: Peer) -> str:
        port = self._transport.udp_port
        branch = f"z9hG4bK{secrets.token_hex(8)}"
        return f"SIP/2.0/{peer.transport} {self._host}:{port};rport;branch={branch}"

    def _from(self, tag: str) -> str:
        return f"<sip:{self._platform_id}@{self._domain}>;tag={tag}"

    def build(
        self,
        method: str,
        peer: Peer,
        target_id: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        dialog: Dialog | None = None,
    ) -> SipRequest:
        """A request to `target_id` (a device or channel) at `peer`."""
        uri = f"sip:{target_id}@{peer.host}:{peer.port}"
        if dialog is not None:
            dialog.cseq += 1 if method != "ACK" else 0
            call_id, cseq, tag = dialog.call_id, dialog.cseq, dialog.local_tag
            to = f"<{dialog.to_uri}>" + (f";tag={dialog.remote_tag}" if dialog.remote_tag else "")
            uri = dialog.request_uri
        else:
            call_id, cseq, tag = secrets.token_hex(12), next(self._cseq), secrets.token_hex(6)
            to = f"<sip:{target_id}@{self._domain}>"
        headers = [
            ("Via", self._via(peer)),
            ("From", self._from(tag)),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Max-Forwards", "70"),
            ("User-Agent", "GridWatch"),
            ("Contact", f"<sip:{self._platform_id}@{self._host}:{self._transport.udp_port}>"),
            *extra,
        ]
        if content_type:
            headers.append(("Content-Type", content_type))
        return SipRequest(headers=headers, body=body, method=method, uri=uri)

    async def send(self, request: SipRequest, peer: Peer, *, wait_s: float = 8.0) -> SipResponse:
        """Send `request` and return the final response; RequestTimeout if none came."""
        number, method = request.cseq
        key = (request.call_id, number, method)
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        data = bytes(request)
        try:
            async with asyncio.timeout(wait_s):
                interval = _T1
                while True:
                    if not self._transport.send(peer, data):
                        raise RequestTimeout(f"{method} to {peer.host}:{peer.port}: no connection")
                    if peer.transport == "TCP":
                        return await future
                    done, _ = await asyncio.wait({future}, timeout=interval)
                    if done:
                        return future.result()
                    interval = min(interval * 2, _T2)
        except TimeoutError as exc:
            raise RequestTimeout(f"{method} to {peer.host}:{peer.port}: no answer") from exc
        finally:
            self._waiting.pop(key, None)

    def fire(self, request: SipRequest, peer: Peer) -> None:
        """Send a request that gets no answer (ACK)."""
        self._transport.send(peer, request)

    def received(self, response: SipResponse) -> bool:
        """Hand a response to its waiting request; False if nothing waits for it."""
        try:
            number, method = response.cseq
        except ValueError:
            return False
        future = self._waiting.get((response.call_id, number, method))
        if future is None:
            return False
        if response.status >= 200 and not future.done():
            future.set_result(response)
        return True
