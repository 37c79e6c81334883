"""Small scripted ONVIF "cameras" on 127.0.0.1 for hostile-camera and event-channel tests.

Each is an asyncio HTTP/1.1 server on an ephemeral loopback port whose
handler gets the request path and body and writes whatever it likes — a
well-behaved SOAP answer, a billion-laughs document, a gigabyte, or one byte
per second.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

Handler = Callable[[str, bytes, asyncio.StreamWriter], Awaitable[None]]

ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
    'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" '
    'xmlns:tev="http://www.onvif.org/ver10/events/wsdl" '
    'xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
    'xmlns:wsa="http://www.w3.org/2005/08/addressing" '
    'xmlns:tt="http://www.onvif.org/ver10/schema" '
    'xmlns:ter="http://www.onvif.org/ver10/error" '
    'xmlns:tns1="http://www.onvif.org/ver10/topics">'
    "<env:Body>{body}</env:Body></env:Envelope>"
)


def soap(body: str) -> bytes:
    """A SOAP 1.2 envelope around `body`."""
    return ENVELOPE.format(body=body).encode()


def fault(subcode: str, reason: str) -> bytes:
    """A SOAP 1.2 sender fault."""
    return soap(
        "<env:Fault><env:Code><env:Value>env:Sender</env:Value>"
        f"<env:Subcode><env:Value>{subcode}</env:Value></env:Subcode></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{reason}</env:Text></env:Reason></env:Fault>'
    )


async def respond(
    writer: asyncio.StreamWriter,
    body: bytes,
    status: str = "200 OK",
    content_type: str = "application/soap+xml; charset=utf-8",
) -> None:
    """Write a complete HTTP response."""
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


@dataclass
class FakeCamera:
    """A running fake camera: where it listens and what it was asked."""

    port: int
    requests: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def host(self) -> str:
        """Always loopback."""
        return "127.0.0.1"


@asynccontextmanager
async def fake_camera(
    handler: Handler, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[FakeCamera]:
    """Serve `handler` on 127.0.0.1:<ephemeral> until the block ends (over TLS with `tls`)."""
    camera = FakeCamera(port=0)
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1]
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await reader.readexactly(length)
            camera.requests.append((path, body))
            await handler(path, body, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up (or refused the certificate), as tests provoke on purpose
        except asyncio.CancelledError:
            # Teardown of a handler that stalls on purpose. Ending normally keeps
            # Python 3.11's stream callback from logging the cancellation as an error.
            pass
        finally:
            handlers.discard(task)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    camera.port = server.sockets[0].getsockname()[1]
    try:
        yield camera
    finally:
        server.close()
        # Handlers that stall on purpose are cancelled with their connections.
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def operation(body: bytes) -> str:
    """The SOAP operation a request body calls (first element in the Body)."""
    match = re.search(rb"<(?:[\w-]+:)?Body[^>]*>\s*<(?:[\w-]+:)?(\w+)", body)
    return match.group(1).decode() if match else ""


def digest_ok(body: bytes, username: str, password: str) -> bool:
    """Check a WS-Security UsernameToken digest the way a camera does."""
    text = body.decode("utf-8", "replace")

    def value(tag: str) -> str | None:
        found = re.search(rf"<(?:\w+:)?{tag}\b[^>]*>([^<]*)</(?:\w+:)?{tag}>", text)
        return found.group(1) if found else None

    user, digest, nonce, created = (
        value("Username"),
        value("Password"),
        value("Nonce"),
        value("Created"),
    )
    if None in (user, digest, nonce, created):
        return False
    assert nonce is not None and created is not None
    expected = base64.b64encode(
        hashlib.sha1(  # noqa: S324 - what the UsernameToken profile specifies
            base64.b64decode(nonce) + created.encode() + password.encode()
        ).digest()
    ).decode()
    return user == username and digest == expected


def device_answers(media_xaddr: str, rtsp: str, snapshot: str) -> dict[str, bytes]:
    """Canned answers of a small, honest ONVIF camera (except for its addresses)."""
    media_xaddr, rtsp, snapshot = escape(media_xaddr), escape(rtsp), escape(snapshot)
    return {
        "GetSystemDateAndTime": soap(
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:UTCDateTime><tt:Time><tt:Hour>10</tt:Hour><tt:Minute>0</tt:Minute>"
            "<tt:Second>0</tt:Second></tt:Time><tt:Date><tt:Year>2024</tt:Year>"
            "<tt:Month>5</tt:Month><tt:Day>1</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        ),
        "GetDeviceInformation": soap(
            "<tds:GetDeviceInformationResponse><tds:Manufacturer>Acme</tds:Manufacturer>"
            "<tds:Model>Gate-1</tds:Model><tds:FirmwareVersion>5.7.3</tds:FirmwareVersion>"
            "<tds:SerialNumber>SN42</tds:SerialNumber><tds:HardwareId>HW1</tds:HardwareId>"
            "</tds:GetDeviceInformationResponse>"
        ),
        "GetServices": soap(
            "<tds:GetServicesResponse><tds:Service>"
            "<tds:Namespace>http://www.onvif.org/ver10/media/wsdl</tds:Namespace>"
            f"<tds:XAddr>{media_xaddr}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>5</tt:Minor></tds:Version>"
            "</tds:Service></tds:GetServicesResponse>"
        ),
        "GetProfiles": soap(
            '<trt:GetProfilesResponse><trt:Profiles token="main" fixed="true">'
            "<tt:Name>Main</tt:Name>"
            '<tt:VideoEncoderConfiguration token="enc"><tt:Name>enc</tt:Name>'
            "<tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
            "<tt:Resolution><tt:Width>1920</tt:Width><tt:Height>1080</tt:Height></tt:Resolution>"
            "<tt:Quality>5</tt:Quality></tt:VideoEncoderConfiguration>"
            "</trt:Profiles></trt:GetProfilesResponse>"
        ),
        "GetStreamUri": soap(
            f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{rtsp}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
            "</trt:MediaUri></trt:GetStreamUriResponse>"
        ),
        "GetSnapshotUri": soap(
            f"<trt:GetSnapshotUriResponse><trt:MediaUri><tt:Uri>{snapshot}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
            "</trt:MediaUri></trt:GetSnapshotUriResponse>"
        ),
    }


def honest_camera_handler(media_xaddr: str, rtsp: str, snapshot: str) -> Handler:
    """A handler answering the probe's calls from `device_answers`."""
    answers = device_answers(media_xaddr, rtsp, snapshot)

    async def handle(path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        name = operation(body)
        if name in answers:
            await respond(writer, answers[name])
        else:
            await respond(
                writer, fault("ter:ActionNotSupported", name), "500 Internal Server Error"
            )

    return handle


#: PullMessages answers shaped like those of cameras in the field (tests/fixtures/onvif).
VENDOR_PAYLOADS = {
    "axis_tampering": "axis_tampering.xml",
    "axis_io_port": "axis_io_port.xml",
    "axis_vmd3": "axis_vmd3.xml",
    "hikvision_alarm_in": "hikvision_alarm_in.xml",
    "tplink_line_cross": "tplink_line_cross.xml",
    "tplink_intrusion": "tplink_intrusion.xml",
    "imou_digital_input": "imou_digital_input.xml",
    "profile_m_people": "profile_m_people.xml",
    "reolink_people": "reolink_people.xml",
    "acme_fence": "acme_fence.xml",
}
_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "onvif"


def vendor_payload(name: str, at: datetime) -> bytes:
    """A vendor-shaped PullMessages answer, its notification times moved to `at`."""
    document = (_FIXTURES / VENDOR_PAYLOADS[name]).read_bytes()
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    return re.sub(rb'UtcTime="[^"]+"', b'UtcTime="' + stamp + b'"', document)


def server_tls(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The TLS context of an https:// fake camera."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context
