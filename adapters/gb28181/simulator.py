"""A simulated GB/T 28181 device (camera or NVR) for tests, benchmarks and the demo.

It registers with digest, sends keepalives, answers catalog queries with its
channels in pages of `page_size` (as NVRs do), answers DeviceInfo and SetGuard,
accepts SUBSCRIBEs (granting `subscription_grant_s` when set, else what was
asked; an in-dialog refresh keeps its dialog, one it forgot gets 481; with
`refuse_arming` it refuses SetGuard and the alarm subscription), sends
catalog change NOTIFYs and alarms on request, and on INVITE streams MPEG-PS over RTP
(`media` — a callable that starts the stream, e.g. `simulator_media.GstPsStream`).
Over UDP by default; `transport="TCP"` connects to the platform instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from adapters.gb28181.digest import authorization_header, parse_challenge
from adapters.gb28181.manscdp import ManscdpError, decode_body, keepalive
from adapters.gb28181.sdp import MediaAnswer, SdpError, parse_sdp
from adapters.gb28181.sip import (
    SipParseError,
    SipRequest,
    SipResponse,
    SipStreamDecoder,
    parse_message,
    parse_name_addr,
    response_to,
)

__all__ = ["DeviceSimulator", "MediaStarter", "SimChannel"]

log = logging.getLogger(__name__)

#: Starts streaming to the platform for an INVITE; returns a stop function.
MediaStarter = Callable[[MediaAnswer, int], Awaitable[Callable[[], Awaitable[None]]]]


@dataclass(frozen=True, slots=True)
class SimChannel:
    """One channel of the simulated device's catalog."""

    channel_id: str
    name: str
    civil_code: str = "150207"
    status: str = "ON"
    longitude: float | None = None
    latitude: float | None = None


@dataclass(slots=True)
class _Stats:
    registered: int = 0
    keepalives_sent: int = 0
    catalog_queries: int = 0
    guard_commands: int = 0
    subscriptions: int = 0
    alarm_answers: int = 0
    #: Every SUBSCRIBE taken: (event package, refresh inside its dialog, Expires granted).
    subscribe_log: list[tuple[str, bool, int]] = field(default_factory=list)
    invites: int = 0
    byes: int = 0
    alarm_latency_s: list[float] = field(default_factory=list)


class DeviceSimulator:
    """One simulated device talking SIP to a platform over UDP or TCP."""

    def __init__(
        self,
        device_id: str,
        password: str,
        *,
        server: tuple[str, int],
        server_id: str,
        domain: str,
        channels: list[SimChannel] | None = None,
        page_size: int = 20,
        transport: str = "UDP",
        version: str | None = "3.0",
        host: str = "127.0.0.1",
        media: MediaStarter | None = None,
        charset: str = "GB2312",
    ) -> None:
        self.device_id = device_id
        self.password = password
        self.server = server
        self.server_id = server_id
        self.domain = domain
        self.channels = channels or []
        self.page_size = page_size
        self.transport = transport.upper()
        self.version = version
        self.host = host
        self.media = media
        self.charset = charset
        self.stats = _Stats()
        self.last_status: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._port = 0
        self._cseq = itertools.count(1)
        self._sn = itertools.count(1)
        self._waiting: dict[tuple[str, int], asyncio.Future[SipResponse]] = {}
        self._calls: dict[str, Callable[[], Awaitable[None]]] = {}
        self._inviting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._register_call = secrets.token_hex(8)
        self.subscription_grant_s: int | None = None
        #: Refuse SetGuard (403) and alarm subscriptions (489), as devices whose alarm
        #: output is switched off or unsupported do.
        self.refuse_arming = False
        self._dialogs: dict[str, str] = {}  # subscription Call-ID -> our To tag

    # ------------------------------------------------------------------ transport

    async def start(self) -> None:
        """Open the socket (or connection) the device talks from."""
        loop = asyncio.get_running_loop()
        if self.transport == "TCP":
            reader, writer = await asyncio.open_connection(*self.server)
            self._writer = writer
            self._port = int(writer.get_extra_info("sockname")[1])
            self._reader_task = asyncio.create_task(self._read_stream(reader))
        else:
            sim = self

            class _Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    sim._received(data)

            udp, _ = await loop.create_datagram_endpoint(
                _Protocol, local_addr=(self.host, 0), remote_addr=self.server
            )
            self._udp = udp
            self._port = int(udp.get_extra_info("sockname")[1])

    async def close(self) -> None:
        """Stop streams and close the socket."""
        for stop in list(self._calls.values()):
            with contextlib.suppress(Exception):
                await stop()
        self._calls.clear()
        if self._tasks:
            # Let a BYE's stream shutdown finish; then cancel whatever still runs.
            await asyncio.wait(list(self._tasks), timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._udp is not None:
            self._udp.close()

    async def __aenter__(self) -> DeviceSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (for hostile-input tests)."""
        if self._writer is not None:
            self._writer.write(data)
        elif self._udp is not None:
            self._udp.sendto(data)

    async def _read_stream(self, reader: asyncio.StreamReader) -> None:
        decoder = SipStreamDecoder()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            try:
                for message in decoder.feed(data):
                    self._dispatch(message)
            except SipParseError:
                return

    def _received(self, data: bytes) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return
        self._dispatch(message)

    def _dispatch(self, message: SipRequest | SipResponse) -> None:
        if isinstance(message, SipResponse):
            number, _ = message.cseq
            future = self._waiting.get((message.call_id, number))
            if future is not None and not future.done() and message.status >= 200:
                future.set_result(message)
            return
        task = asyncio.create_task(self._on_request(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ requests

    def _request(
        self,
        method: str,
        *,
        body: bytes = b"",
        call_id: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> SipRequest:
        uri = f"sip:{self.server_id}@{self.domain}"
        to_user = self.device_id if method == "REGISTER" else self.server_id
        headers = [
            (
                "Via",
                f"SIP/2.0/{self.transport} {self.host}:{self._port};rport;"
                f"branch=z9hG4bK{secrets.token_hex(6)}",
            ),
            ("From", f"<sip:{self.device_id}@{self.domain}>;tag={secrets.token_hex(4)}"),
            ("To", f"<sip:{to_user}@{self.domain}>"),
            ("Call-ID", call_id or secrets.token_hex(8)),
            ("CSeq", f"{next(self._cseq)} {method}"),
            ("Contact", f"<sip:{self.device_id}@{self.host}:{self._port}>"),
            ("Max-Forwards", "70"),
            ("User-Agent", "GridWatch GB/T 28181 simulator"),
            *(extra or []),
        ]
        if self.version and method == "REGISTER":
            headers.append(("X-GB-Ver", self.version))
        if content_type:
            headers.append(("Content-Type", content_type))
        return SipRequest(headers=headers, body=body, method=method, uri=uri)

    async def _send(self, request: SipRequest, *, wait_s: float = 5.0) -> SipResponse | None:
        number, _ = request.cseq
        key = (request.call_id, number)
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        data = bytes(request)
        try:
            async with asyncio.timeout(wait_s):
                interval = 0.5
                while True:
                    self.send_raw(data)
                    done, _ = await asyncio.wait({future}, timeout=interval)
                    if done:
                        return future.result()
                    if self.transport == "TCP":
                        return await future
                    interval = min(interval * 2, 4.0)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(key, None)

    async def register(self, *, expires: int = 3600, password: str | None = None) -> int | None:
        """REGISTER (answering the digest challenge); returns the final status, or None."""
        extra = [("Expires", str(expires))]
        first = await self._send(
            self._request("REGISTER", call_id=self._register_call, extra=extra)
        )
        if first is None or first.status != 401:
            self.last_status = first.status if first else None
            return self.last_status
        challenge = parse_challenge(first.header("www-authenticate") or "")
        uri = f"sip:{self.server_id}@{self.domain}"
        auth = authorization_header(
            username=self.device_id,
            realm=challenge["realm"],
            password=self.password if password is None else password,
            method="REGISTER",
            uri=uri,
            nonce=challenge["nonce"],
            qop="auth" if challenge.get("qop") else None,
        )
        second = await self._send(
            self._request(
                "REGISTER", call_id=self._register_call, extra=[*extra, ("Authorization", auth)]
            )
        )
        self.last_status = second.status if second else None
        if self.last_status == 200:
            self.stats.registered += 1
        return self.last_status

    async def message(self, body: bytes, *, wait_s: float = 5.0) -> int | None:
        """Send a MANSCDP MESSAGE; returns the platform's status, or None."""
        answer = await self._send(
            self._request("MESSAGE", body=body, content_type="Application/MANSCDP+xml"),
            wait_s=wait_s,
        )
        return answer.status if answer else None

    async def keepalive(self) -> int | None:
        """One keepalive."""
        self.stats.keepalives_sent += 1
        return await self.message(keepalive(next(self._sn), self.device_id, charset=self.charset))

    async def keepalive_forever(self, interval_s: float) -> None:
        """Keepalives every `interval_s` until cancelled."""
        while True:
            await self.keepalive()
            await asyncio.sleep(interval_s)

    def alarm_body(
        self,
        *,
        source_id: str | None = None,
        priority: int = 2,
        method: int = 5,
        alarm_type: int | None = 2,
        description: str = "移动侦测报警",
        time: str = "2026-12-06T10:00:00",
    ) -> bytes:
        """A `Notify/Alarm` body as devices send it."""
        info = f"<Info><AlarmType>{alarm_type}</AlarmType></Info>" if alarm_type else ""
        text = (
            f'<?xml version="1.0" encoding="{self.charset}"?>\r\n<Notify>\r\n'
            f"<CmdType>Alarm</CmdType>\r\n<SN>{next(self._sn)}</SN>\r\n"
            f"<DeviceID>{source_id or self.device_id}</DeviceID>\r\n"
            f"<AlarmPriority>{priority}</AlarmPriority>\r\n<AlarmMethod>{method}</AlarmMethod>\r\n"
            f"<AlarmTime>{time}</AlarmTime>\r\n"
            f"<AlarmDescription>{escape(description)}</AlarmDescription>\r\n{info}</Notify>\r\n"
        )
        return self._encode(text)

    async def alarm(self, **kwargs: object) -> int | None:
        """Send an alarm; returns the platform's status (200 only after it is stored)."""
        return await self.message(self.alarm_body(**kwargs))  # type: ignore[arg-type]

    def _encode(self, text: str) -> bytes:
        return text.encode("gb18030" if self.charset.upper().startswith("GB") else "utf-8")

    # ------------------------------------------------------------------ answering the platform

    def forget_subscriptions(self) -> None:
        """Forget every subscription dialog (as a device does when it restarts)."""
        self._dialogs.clear()

    def _subscribe(self, request: SipRequest) -> None:
        event = (request.header("event") or "").split(";")[0].strip()
        asked = (request.header("expires") or "").strip()
        granted = int(asked) if asked.isdigit() else 3600
        if self.subscription_grant_s is not None:
            granted = min(granted, self.subscription_grant_s)
        if self.refuse_arming and event == "presence":
            self._answer(request, 489)  # Bad Event
            return
        remote_tag = parse_name_addr(request.header("to")).tag
        own_tag = self._dialogs.get(request.call_id)
        if remote_tag and own_tag != remote_tag:
            self._answer(request, 481)  # a dialog this device does not know
            return
        tag = own_tag or secrets.token_hex(4)
        self._dialogs[request.call_id] = tag
        self.stats.subscriptions += 1
        self.stats.subscribe_log.append((event, remote_tag is not None, granted))
        response = response_to(request, 200, to_tag=tag, headers=[("Expires", str(granted))])
        self.send_raw(bytes(response))

    async def catalog_notify(self, changes: list[tuple[SimChannel, str]]) -> int | None:
        """NOTIFY the platform of catalog changes: (channel, ADD/DEL/UPDATE/ON/OFF/...) each."""
        items = "".join(
            self._item(channel).replace("</Item>", f"<Event>{event}</Event></Item>", 1)
            for channel, event in changes
        )
        body = self._encode(
            f'<?xml version="1.0" encoding="{self.charset}"?>\r\n<Notify>\r\n'
            f"<CmdType>Catalog</CmdType>\r\n<SN>{next(self._sn)}</SN>\r\n"
            f"<DeviceID>{self.device_id}</DeviceID>\r\n<SumNum>{len(changes)}</SumNum>\r\n"
            f'<DeviceList Num="{len(changes)}">\r\n{items}</DeviceList>\r\n</Notify>\r\n'
        )
        request = self._request(
            "NOTIFY",
            body=body,
            content_type="Application/MANSCDP+xml",
            extra=[("Event", "Catalog"), ("Subscription-State", "active")],
        )
        answer = await self._send(request)
        return answer.status if answer else None

    async def _on_request(self, request: SipRequest) -> None:
        if request.method == "SUBSCRIBE":
            self._subscribe(request)
        elif request.method == "MESSAGE":
            if self.refuse_arming and b"GuardCmd" in request.body:
                self._answer(request, 403)
                return
            self._answer(request, 200)
            if request.body:
                await self._command(request)
        elif request.method == "INVITE":
            await self._invite(request)
        elif request.method == "BYE":
            self.stats.byes += 1
            stop = self._calls.pop(request.call_id, None)
            self._answer(request, 200)
            if stop is not None:
                await stop()
        elif request.method == "ACK":
            return
        else:
            self._answer(request, 200)

    def _answer(
        self,
        request: SipRequest,
        status: int,
        *,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        response = response_to(
            request, status, to_tag=secrets.token_hex(4), headers=headers or [], body=body
        )
        self.send_raw(bytes(response))

    async def _command(self, request: SipRequest) -> None:
        try:
            root = decode_body(request.body)
        except ManscdpError:
            return
        cmd = root.findtext("CmdType") or ""
        sn = root.findtext("SN") or "0"
        if cmd == "Catalog":
            self.stats.catalog_queries += 1
            for body in self.catalog_pages(sn):
                await self.message(body)
        elif cmd == "DeviceInfo":
            await self.message(self._device_info(sn))
        elif cmd == "DeviceControl" and root.findtext("GuardCmd"):
            self.stats.guard_commands += 1
            await self.message(self._response("DeviceControl", sn, "<Result>OK</Result>"))
        elif cmd == "Alarm" and root.tag == "Response":
            self.stats.alarm_answers += 1

    def _response(self, cmd: str, sn: str, inner: str) -> bytes:
        return self._encode(
            f'<?xml version="1.0" encoding="{self.charset}"?>\r\n<Response>\r\n'
            f"<CmdType>{cmd}</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{self.device_id}</DeviceID>"
            f"\r\n{inner}</Response>\r\n"
        )

    def _device_info(self, sn: str) -> bytes:
        return self._response(
            "DeviceInfo",
            sn,
            "<DeviceName>GridWatch SIM</DeviceName><Result>OK</Result>"
            "<Manufacturer>GridWatch</Manufacturer><Model>SIM-NVR</Model>"
            f"<Firmware>1.0</Firmware><Channel>{len(self.channels)}</Channel>",
        )

    def catalog_pages(self, sn: str) -> list[bytes]:
        """The catalog answer in pages of `page_size` items."""
        pages: list[bytes] = []
        total = len(self.channels)
        for start in range(0, max(total, 1), self.page_size):
            chunk = self.channels[start : start + self.page_size]
            items = "".join(self._item(c) for c in chunk)
            pages.append(
                self._response(
                    "Catalog",
                    sn,
                    f'<SumNum>{total}</SumNum>\r\n<DeviceList Num="{len(chunk)}">\r\n{items}'
                    "</DeviceList>\r\n",
                )
            )
        return pages

    def _item(self, channel: SimChannel) -> str:
        position = (
            f"<Longitude>{channel.longitude}</Longitude><Latitude>{channel.latitude}</Latitude>"
            if channel.longitude is not None
            else ""
        )
        return (
            f"<Item><DeviceID>{channel.channel_id}</DeviceID><Name>{escape(channel.name)}</Name>"
            "<Manufacturer>GridWatch</Manufacturer><Model>SIM-CAM</Model><Owner>0</Owner>"
            f"<CivilCode>{channel.civil_code}</CivilCode><Address>{escape(channel.name)}</Address>"
            f"<Parental>0</Parental><ParentID>{self.device_id}</ParentID><SafetyWay>0</SafetyWay>"
            f"<RegisterWay>1</RegisterWay><Secrecy>0</Secrecy><Status>{channel.status}</Status>"
            f"{position}<Info><PTZType>3</PTZType></Info></Item>\r\n"
        )

    async def _invite(self, request: SipRequest) -> None:
        if request.call_id in self._inviting or request.call_id in self._calls:
            return  # a retransmission of an INVITE being answered (or answered)
        self._inviting.add(request.call_id)
        try:
            await self._answer_invite(request)
        finally:
            self._inviting.discard(request.call_id)

    async def _answer_invite(self, request: SipRequest) -> None:
        self.stats.invites += 1
        try:
            offer = parse_sdp(request.body)
        except SdpError:
            self._answer(request, 488)
            return
        if self.media is None or offer.ssrc is None or not offer.ssrc.isdigit():
            self._answer(request, 488)
            return
        ssrc = int(offer.ssrc)
        stop = await self.media(offer, ssrc)
        self._calls[request.call_id] = stop
        channel = parse_name_addr(request.header("to")).user or self.device_id
        sdp = (
            f"v=0\r\no={channel} 0 0 IN IP4 {self.host}\r\ns=Play\r\nc=IN IP4 {self.host}\r\n"
            f"t=0 0\r\nm=video {self._port + 2} {'TCP/RTP/AVP' if offer.tcp else 'RTP/AVP'} 96\r\n"
            "a=sendonly\r\na=rtpmap:96 PS/90000\r\n"
            + ("a=setup:active\r\na=connection:new\r\n" if offer.tcp else "")
            + f"y={offer.ssrc}\r\n"
        ).encode()
        self._answer(request, 200, body=sdp, headers=[("Content-Type", "application/sdp")])
