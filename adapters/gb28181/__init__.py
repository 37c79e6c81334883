"""GB/T 28181: SIP signalling, MANSCDP bodies, SDP and RTP/MPEG-PS media.

Pure modules (no sockets, no clock): `sip` (messages, parse/serialize, TCP
framing), `digest` (MD5 digest for REGISTER), `manscdp` (XML bodies through the
shared hardened parser, catalog assembly), `alarm_types` (alarm method/type
table), `sdp` (live-play offer/answer), `rtp` (RTP and PS frame reassembly, RFC
4571 framing), `ps_mux` (PS frames per picture, for the simulator). I/O modules:
`transport` (asyncio UDP + TCP SIP), `simulator` (a device for tests and the
demo) and `ps_stream` (its GStreamer stream as PS over RTP); import them
explicitly.
"""

from adapters.gb28181.alarm_types import AlarmKind, classify_alarm
from adapters.gb28181.digest import DigestError, parse_digest, verify
from adapters.gb28181.manscdp import ManscdpError, decode
from adapters.gb28181.sip import SipParseError, SipRequest, SipResponse, parse_message

__all__ = [
    "AlarmKind",
    "DigestError",
    "ManscdpError",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "classify_alarm",
    "decode",
    "parse_digest",
    "parse_message",
    "verify",
]
