"""SDP for GB/T 28181 live play (INVITE offer and the device's answer), sans I/O.

The platform offers where it receives (`c=`, `m=video <port> RTP/AVP 96` over
UDP, or `TCP/RTP/AVP` with `a=setup:passive` when the device connects to it),
`s=Play`, and the stream's SSRC on the GB/T 28181 `y=` line; PS is payload type
96 at 90 kHz. The SSRC is ten digits: `0` (live) + digits 4-8 of the domain +
a four-digit serial.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MediaAnswer", "SdpError", "live_ssrc", "parse_sdp", "play_offer"]


class SdpError(ValueError):
    """An SDP body that cannot be used to receive the stream."""


def live_ssrc(domain: str, serial: int) -> str:
    """The `y=` SSRC of a live stream: 0, domain digits 4-8, serial (0-9999)."""
    if len(domain) < 8 or not domain.isdigit():
        raise ValueError("the domain must be (at least) eight digits")
    return f"0{domain[3:8]}{serial % 10_000:04d}"


def play_offer(
    *,
    platform_id: str,
    channel_id: str,
    media_host: str,
    media_port: int,
    ssrc: str,
    tcp: bool = False,
) -> bytes:
    """The SDP offer of a live-play INVITE: receive PS over RTP at `media_host:media_port`."""
    proto = "TCP/RTP/AVP" if tcp else "RTP/AVP"
    lines = [
        "v=0",
        f"o={platform_id} 0 0 IN IP4 {media_host}",
        "s=Play",
        f"u={channel_id}:0",
        f"c=IN IP4 {media_host}",
        "t=0 0",
        f"m=video {media_port} {proto} 96 98 97",
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
        "a=rtpmap:98 H264/90000",
        "a=rtpmap:97 MPEG4/90000",
    ]
    if tcp:
        lines += ["a=setup:passive", "a=connection:new"]
    lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """What an SDP says about its video stream."""

    session: str
    host: str
    port: int
    tcp: bool
    setup: str | None
    ssrc: str | None
    payload_types: dict[int, str]
    direction: str | None


def parse_sdp(body: bytes) -> MediaAnswer:
    """Read the video stream of an SDP (offer or answer); raises SdpError."""
    if len(body) > 8192:
        raise SdpError("SDP longer than 8 KiB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    session = host = ""
    port: int | None = None
    tcp = False
    setup = ssrc = direction = None
    types: dict[int, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        key, value = line[0], line[2:].strip()
        if key == "s":
            session = value
        elif key == "c":
            parts = value.split()
            if len(parts) == 3:
                host = parts[2]
        elif key == "m" and value.startswith("video") and port is None:
            parts = value.split()
            if len(parts) < 4 or not parts[1].isdigit():
                raise SdpError(f"malformed m= line {line[:60]!r}")
            port = int(parts[1])
            tcp = parts[2].upper().startswith("TCP")
        elif key == "a":
            name, _, attr = value.partition(":")
            if name == "setup":
                setup = attr
            elif name in ("sendonly", "recvonly", "sendrecv", "inactive"):
                direction = name
            elif name == "rtpmap":
                number, _, encoding = attr.partition(" ")
                if number.isdigit():
                    types[int(number)] = encoding.split("/")[0].upper()
        elif key == "y":
            ssrc = value
    if port is None or not host:
        raise SdpError("no video stream (m=video and c=) in the SDP")
    if not 0 <= port < 65536:
        raise SdpError(f"port {port} out of range")
    return MediaAnswer(session, host, port, tcp, setup, ssrc, types, direction)
