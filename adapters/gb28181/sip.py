"""SIP messages as GB/T 28181 uses them (an RFC 3261 subset), sans I/O.

`parse_message` turns one datagram (or one framed stream message) into a
`SipRequest` or `SipResponse`; `bytes(message)` gives the wire form back. Header
names keep their spelling so captured bytes round-trip; look-ups are
case-insensitive and know the compact forms (`v`, `f`, `t`, `i`, `l`, `c`, `m`).
Sizes are bounded: a message, a header line and the header count each have a
cap, and anything malformed raises `SipParseError` with the reason.
`SipStreamDecoder` frames messages out of a TCP byte stream by Content-Length.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_MESSAGE_BYTES",
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipStreamDecoder",
    "Via",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_via",
    "response_to",
]

#: Largest SIP message accepted (a Catalog MESSAGE of an NVR page is a few KiB).
MAX_MESSAGE_BYTES = 64 * 1024
MAX_HEADER_LINE = 4096
MAX_HEADERS = 64

_METHODS = frozenset(
    {
        "REGISTER",
        "MESSAGE",
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "SUBSCRIBE",
        "NOTIFY",
        "OPTIONS",
        "INFO",
    }
)
_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "o": "event",
}
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~\-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9]{2}) ?(.*)")
_REQUEST_LINE = re.compile(r"([A-Z]+) (\S+) SIP/2\.0")

_REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    423: "Interval Too Brief",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    503: "Service Unavailable",
}


class SipParseError(ValueError):
    """Bytes that are not a SIP message this hub accepts; the text says why."""


def _canonical(name: str) -> str:
    lowered = name.lower()
    return _COMPACT.get(lowered, lowered)


@dataclass(slots=True)
class SipMessage:
    """Headers (in order, names as written) and a body; see the request/response kinds."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case, compact form allowed), or None."""
        wanted = _canonical(name)
        for key, value in self.headers:
            if _canonical(key) == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name`, in order."""
        wanted = _canonical(name)
        return [value for key, value in self.headers if _canonical(key) == wanted]

    def set_header(self, name: str, value: str) -> None:
        """Replace every `name` header by one with `value` (appended when absent)."""
        wanted = _canonical(name)
        kept = [(k, v) for k, v in self.headers if _canonical(k) != wanted]
        position = next(
            (i for i, (k, _) in enumerate(self.headers) if _canonical(k) == wanted), len(kept)
        )
        kept.insert(min(position, len(kept)), (name, value))
        self.headers = kept

    @property
    def call_id(self) -> str:
        """The Call-ID ('' if absent)."""
        return self.header("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq number and method; raises SipParseError when absent or malformed."""
        return parse_cseq(self.header("cseq"))

    def _head_lines(self) -> list[str]:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        lines = self._head_lines()
        seen_length = False
        for name, value in self.headers:
            if _canonical(name) == "content-length":
                seen_length = True
                value = str(len(self.body))
            lines.append(f"{name}: {value}")
        if not seen_length:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(slots=True)
class SipRequest(SipMessage):
    """A SIP request: method and Request-URI first."""

    method: str = ""
    uri: str = ""

    def _head_lines(self) -> list[str]:
        return [f"{self.method} {self.uri} SIP/2.0"]


@dataclass(slots=True)
class SipResponse(SipMessage):
    """A SIP response: status code and reason phrase first."""

    status: int = 200
    reason: str = "OK"

    def _head_lines(self) -> list[str]:
        return [f"SIP/2.0 {self.status} {self.reason}"]


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    end = data.find(b"\n\n")
    if end >= 0:
        return data[:end], data[end + 2 :]
    raise SipParseError("no blank line ends the headers")


def _header_lines(head: str) -> list[str]:
    lines: list[str] = []
    for raw in head.replace("\r\n", "\n").split("\n"):
        if len(raw) > MAX_HEADER_LINE:
            raise SipParseError(f"a header line is longer than {MAX_HEADER_LINE} characters")
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = f"{lines[-1]} {raw.strip()}"  # folded continuation line
        else:
            lines.append(raw)
    return lines


def parse_message(data: bytes, *, stream: bool = False) -> SipRequest | SipResponse:
    """Parse one SIP message; raises SipParseError on anything malformed or oversized.

    On a datagram (`stream` False) a missing Content-Length means "the rest of
    the datagram"; a Content-Length larger than what arrived is an error either way.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    head_bytes, rest = _split_head(data)
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("header bytes are not UTF-8") from exc
    if _CONTROL.search(head):
        raise SipParseError("control characters in the headers")
    lines = _header_lines(head)
    first, header_lines = lines[0], lines[1:]
    if len(header_lines) > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} headers")
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.fullmatch(name):
            raise SipParseError(f"malformed header line {line[:60]!r}")
        headers.append((name, value.strip()))
    message: SipRequest | SipResponse
    status = _STATUS_LINE.fullmatch(first)
    if status is not None:
        message = SipResponse(
            headers=headers, status=int(status.group(1)), reason=status.group(2).strip()
        )
    else:
        request = _REQUEST_LINE.fullmatch(first)
        if request is None:
            raise SipParseError(f"not a SIP request or status line: {first[:60]!r}")
        if request.group(1) not in _METHODS:
            raise SipParseError(f"unsupported method {request.group(1)!r}")
        message = SipRequest(headers=headers, method=request.group(1), uri=request.group(2))
    length_text = message.header("content-length")
    if length_text is None:
        if stream:
            raise SipParseError("a stream message needs a Content-Length")
        message.body = rest
    else:
        if not length_text.isdigit():
            raise SipParseError(f"Content-Length {length_text[:20]!r} is not a number")
        length = int(length_text)
        if length > len(rest):
            raise SipParseError(f"Content-Length {length} but only {len(rest)} body bytes")
        message.body = rest[:length]
    for required in ("via", "from", "to", "call-id", "cseq"):
        if message.header(required) is None:
            raise SipParseError(f"the {required} header is missing")
    number, method = message.cseq
    if isinstance(message, SipRequest) and method != message.method:
        raise SipParseError(f"CSeq method {method} does not match {message.method}")
    del number
    return message


def parse_cseq(value: str | None) -> tuple[int, str]:
    """`"20 MESSAGE"` -> (20, "MESSAGE")."""
    if not value:
        raise SipParseError("the CSeq header is missing")
    number, _, method = value.strip().partition(" ")
    if not number.isdigit() or len(number) > 10 or not method.strip().isalpha():
        raise SipParseError(f"malformed CSeq {value[:40]!r}")
    return int(number), method.strip()


def _params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return params


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact value: display name, URI, its user part, and the parameters."""

    display: str
    uri: str
    params: dict[str, str]

    @property
    def user(self) -> str:
        """The user part of a `sip:user@host` URI ('' if none)."""
        rest = self.uri.split(":", 1)[1] if ":" in self.uri else self.uri
        user, at, _ = rest.partition("@")
        return user if at else ""

    @property
    def host_port(self) -> str:
        """The host[:port] part of the URI (without URI parameters)."""
        rest = self.uri.split(":", 1)[1] if ":" in self.uri else self.uri
        host = rest.partition("@")[2] or rest
        return host.split(";", 1)[0]

    @property
    def tag(self) -> str | None:
        """The `tag` parameter, or None."""
        return self.params.get("tag")


def parse_name_addr(value: str | None) -> NameAddr:
    """Parse `"name" <sip:user@host>;tag=x` or `sip:user@host;tag=x`."""
    if not value:
        raise SipParseError("empty address header")
    value = value.strip()
    if "<" in value:
        display, _, rest = value.partition("<")
        uri, close, params = rest.partition(">")
        if not close:
            raise SipParseError(f"unclosed '<' in {value[:60]!r}")
        return NameAddr(display.strip().strip('"'), uri.strip(), _params(params))
    uri, _, params = value.partition(";")
    return NameAddr("", uri.strip(), _params(params))


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: transport, sent-by host and port, and its parameters."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def branch(self) -> str | None:
        """The transaction branch id."""
        return self.params.get("branch")


def parse_via(value: str | None) -> Via:
    """Parse `SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1`."""
    if not value:
        raise SipParseError("the Via header is missing")
    first = value.split(",", 1)[0].strip()
    protocol, _, rest = first.partition(" ")
    parts = protocol.split("/")
    if len(parts) != 3 or parts[0].upper() != "SIP":
        raise SipParseError(f"malformed Via {value[:60]!r}")
    sent_by, _, params = rest.strip().partition(";")
    host, port = sent_by.strip(), None
    if host.startswith("["):
        end = host.find("]")
        host, tail = host[1:end], host[end + 1 :]
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = host.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SipParseError(f"bad port in Via {value[:60]!r}")
        port = int(port_text)
    return Via(parts[2].upper(), host, port, _params(params))


def response_to(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    received: tuple[str, int] | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """The response to `request`: its Via, From, To (tagged), Call-ID and CSeq copied.

    `received` fills the top Via's `received`/`rport` (RFC 3581) so the answer goes
    back to where the request came from behind NAT.
    """
    copied: list[tuple[str, str]] = []
    top_via = True
    for name, value in request.headers:
        canonical = _canonical(name)
        if canonical == "via":
            if top_via and received is not None:
                value = _stamp_via(value, received)
            top_via = False
            copied.append(("Via", value))
        elif canonical == "to":
            if to_tag and ";tag=" not in value.replace(" ", ""):
                value = f"{value};tag={to_tag}"
            copied.append(("To", value))
        elif canonical in ("from", "call-id", "cseq"):
            copied.append((_HEADER_CASE[canonical], value))
    copied.extend(headers)
    return SipResponse(
        headers=copied, status=status, reason=reason or _REASONS.get(status, "Unknown"), body=body
    )


_HEADER_CASE = {"from": "From", "call-id": "Call-ID", "cseq": "CSeq"}


def _stamp_via(value: str, received: tuple[str, int]) -> str:
    host, port = received
    parts = [p for p in value.split(";")]
    out = [parts[0]]
    for part in parts[1:]:
        key = part.strip().split("=", 1)[0].lower()
        if key == "rport":
            out.append(f"rport={port}")
        elif key != "received":
            out.append(part)
    out.append(f"received={host}")
    return ";".join(out)


class SipStreamDecoder:
    """Frames SIP messages out of a TCP byte stream (Content-Length delimited).

    Bare CRLFs between messages (RFC 5626 keepalives) are skipped. A message
    larger than `max_bytes` or a header block that never ends raises
    SipParseError: the connection should then be closed.
    """

    def __init__(self, *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_bytes

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        """Add bytes; return every complete message they finish."""
        self._buffer += data
        messages: list[SipRequest | SipResponse] = []
        while True:
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self._max:
                    raise SipParseError(f"headers longer than {self._max} bytes")
                return messages
            length = _content_length(bytes(self._buffer[:end]))
            total = end + 4 + length
            if total > self._max:
                raise SipParseError(f"message of {total} bytes exceeds {self._max}")
            if len(self._buffer) < total:
                return messages
            chunk = bytes(self._buffer[:total])
            del self._buffer[:total]
            messages.append(parse_message(chunk, stream=True))


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and _canonical(name.strip().decode("ascii", "replace")) == "content-length":
            text = value.strip()
            if not text.isdigit():
                raise SipParseError("Content-Length is not a number")
            return int(text)
    raise SipParseError("a stream message needs a Content-Length")


def header_list(message: SipMessage, names: Iterable[str]) -> dict[str, str | None]:
    """Several headers at once (for logging a refused message without its body)."""
    return {name: message.header(name) for name in names}
