"""SIP messages and MD5 digest as GB/T 28181 devices send them."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.gb28181.digest import (
    DigestError,
    authorization_header,
    challenge_header,
    parse_challenge,
    parse_digest,
    verify,
)
from adapters.gb28181.sip import (
    MAX_MESSAGE_BYTES,
    SipParseError,
    SipRequest,
    SipResponse,
    SipStreamDecoder,
    parse_message,
    parse_name_addr,
    parse_via,
    response_to,
)

# A camera's first REGISTER, in the shape devices send it (header order and case kept).
REGISTER = (
    b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1843829745\r\n"
    b"From: <sip:34020000001320000001@3402000000>;tag=1254863201\r\n"
    b"To: <sip:34020000001320000001@3402000000>\r\n"
    b"Call-ID: 1396187716\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Contact: <sip:34020000001320000001@192.168.1.64:5060>\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: IP Camera\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

KEEPALIVE_BODY = (
    '<?xml version="1.0" encoding="GB2312"?>\r\n'
    "<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>43</SN>\r\n"
    "<DeviceID>34020000001320000001</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n"
).encode("gb18030")

MESSAGE = (
    b"MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK2071431542\r\n"
    b"From: <sip:34020000001320000001@3402000000>;tag=1729528462\r\n"
    b"To: <sip:34020000002000000001@3402000000>\r\n"
    b"Call-ID: 1587239617\r\n"
    b"CSeq: 20 MESSAGE\r\n"
    b"Content-Type: Application/MANSCDP+xml\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: IP Camera\r\n"
    b"Content-Length: " + str(len(KEEPALIVE_BODY)).encode() + b"\r\n"
    b"\r\n" + KEEPALIVE_BODY
)


@pytest.mark.parametrize("captured", [REGISTER, MESSAGE])
def test_captured_messages_round_trip_byte_for_byte(captured: bytes) -> None:
    message = parse_message(captured)
    assert bytes(message) == captured


def test_register_fields_are_readable() -> None:
    message = parse_message(REGISTER)
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.cseq == (1, "REGISTER")
    assert message.header("expires") == "3600"
    sender = parse_name_addr(message.header("From"))
    assert sender.user == "34020000001320000001"
    assert sender.tag == "1254863201"
    via = parse_via(message.header("v"))
    assert (via.transport, via.host, via.port) == ("UDP", "192.168.1.64", 5060)
    assert via.branch == "z9hG4bK1843829745"


def test_message_body_is_cut_at_content_length() -> None:
    message = parse_message(MESSAGE + b"trailing garbage")
    assert message.body == KEEPALIVE_BODY


def test_compact_header_names_are_understood() -> None:
    compact = REGISTER.replace(b"Call-ID:", b"i:").replace(b"Content-Length:", b"l:")
    message = parse_message(compact)
    assert message.call_id == "1396187716"
    assert bytes(message) == compact


def test_response_copies_the_transaction_and_tags_to() -> None:
    request = parse_message(REGISTER)
    assert isinstance(request, SipRequest)
    response = response_to(
        request, 401, to_tag="abc", received=("10.0.0.9", 40000), headers=[("Expires", "0")]
    )
    again = parse_message(bytes(response))
    assert isinstance(again, SipResponse)
    assert (again.status, again.reason) == (401, "Unauthorized")
    assert again.call_id == "1396187716"
    assert parse_name_addr(again.header("To")).tag == "abc"
    via = parse_via(again.header("Via"))
    assert via.params["received"] == "10.0.0.9"
    assert via.params["rport"] == "40000"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"HELLO\r\n\r\n", "not a SIP request"),
        (REGISTER.replace(b"REGISTER sip", b"PUBLISH sip"), "unsupported method"),
        (REGISTER.replace(b"Call-ID: 1396187716\r\n", b""), "call-id"),
        (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: x REGISTER"), "CSeq"),
        (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE"), "does not match"),
        (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 99"), "only 0 body"),
        (REGISTER.replace(b"\r\n\r\n", b"\r\n"), "blank line"),
        (REGISTER.replace(b"Expires: 3600", b"Expires 3600"), "malformed header"),
        (REGISTER.replace(b"IP Camera", b"IP\x01Camera"), "control characters"),
        (REGISTER + b"x" * MAX_MESSAGE_BYTES, "exceeds"),
        (REGISTER.replace(b"Max-Forwards: 70\r\n", b"X: y\r\n" * 100), "more than"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SipParseError, match=reason):
        parse_message(data)


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise_anything_but_a_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@given(st.integers(min_value=1, max_value=len(MESSAGE) - 1))
def test_stream_decoder_frames_messages_split_anywhere(cut: int) -> None:
    decoder = SipStreamDecoder()
    stream = b"\r\n\r\n" + MESSAGE + REGISTER
    first = decoder.feed(stream[:cut])
    rest = decoder.feed(stream[cut:])
    messages = first + rest
    assert [bytes(m) for m in messages] == [MESSAGE, REGISTER]


def test_stream_decoder_refuses_an_endless_header_block() -> None:
    decoder = SipStreamDecoder(max_bytes=4096)
    with pytest.raises(SipParseError):
        decoder.feed(b"REGISTER sip:x SIP/2.0\r\n" + b"X: y\r\n" * 2000)


# ---------------------------------------------------------------------------- digest

REALM = "3402000000"
URI = "sip:34020000002000000001@3402000000"


@pytest.mark.parametrize("qop", [None, "auth"])
def test_digest_proves_the_password_and_nothing_else(qop: str | None) -> None:
    challenge = parse_challenge(challenge_header(REALM, "9bd055", qop=qop is not None))
    header = authorization_header(
        username="34020000001320000001",
        realm=challenge["realm"],
        password="12345678",
        method="REGISTER",
        uri=URI,
        nonce=challenge["nonce"],
        qop=qop,
    )
    credentials = parse_digest(header)
    assert verify(credentials, method="REGISTER", password="12345678")
    assert not verify(credentials, method="REGISTER", password="12345679")
    assert not verify(credentials, method="INVITE", password="12345678")


def test_digest_matches_the_rfc_2617_computation() -> None:
    # The worked example of RFC 2617 section 3.5.
    header = (
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
        'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert verify(parse_digest(header), method="GET", password="Circle Of Life")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic dXNlcjpwYXNz",
        'Digest username="a",realm="b"',
        'Digest username="a",realm="b",nonce="c",uri="d",response="e",algorithm=SHA-256',
        'Digest username="a",realm="b",nonce="c",uri="d",response="e",qop=auth',
        'Digest username="a" realm="b"',
        "Digest " + "x=" * 2000,
    ],
)
def test_unusable_authorization_headers_are_refused(header: str | None) -> None:
    with pytest.raises(DigestError):
        parse_digest(header)
