"""Host pinning, credential stripping, clock offset and SOAP building for cameras."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.onvif import soap
from adapters.onvif.models import Candidate, MediaProfile
from adapters.onvif.parsers import parse_probe_matches
from adapters.onvif.security import (
    ForeignHostRefused,
    PinPolicy,
    clock_offset,
    pin_uri,
    strip_userinfo,
)
from adapters.safexml import XmlRefused, parse_duration, parse_untrusted_xml


@pytest.mark.parametrize(
    "advertised",
    [
        "http://127.0.0.1:5432/onvif/media_service",
        "http://192.168.1.64/onvif/media_service",
        "http://ipc/onvif/media_service",
        "http://admin:secret@10.1.2.3:8000/onvif/media_service",
    ],
)
def test_foreign_service_addresses_are_rewritten_to_the_configured_camera(
    advertised: str,
) -> None:
    assert pin_uri(advertised, "10.20.30.40", 8080) == "http://10.20.30.40:8080/onvif/media_service"


def test_refuse_policy_raises_for_another_port_on_the_same_host() -> None:
    with pytest.raises(ForeignHostRefused, match=r"127\.0\.0\.1:5432"):
        pin_uri("http://127.0.0.1:5432/onvif/x", "127.0.0.1", 8080, policy=PinPolicy.REFUSE)
    assert pin_uri("http://127.0.0.1:8080/a?b=1", "127.0.0.1", 8080, policy=PinPolicy.REFUSE) == (
        "http://127.0.0.1:8080/a?b=1"
    )


def test_rewrite_local_refuses_a_foreign_public_host_only() -> None:
    pinned = pin_uri(
        "http://192.168.0.10/onvif/x", "203.0.113.7", 80, policy=PinPolicy.REWRITE_LOCAL
    )
    assert pinned == "http://203.0.113.7/onvif/x"
    with pytest.raises(ForeignHostRefused, match="foreign public host"):
        pin_uri("http://8.8.4.4/onvif/x", "203.0.113.7", 80, policy=PinPolicy.REWRITE_LOCAL)


def test_stream_uris_keep_their_port_and_lose_credentials() -> None:
    pinned = pin_uri(
        "rtsp://admin:12345@192.168.1.64:554/Streaming/Channels/101?transportmode=unicast",
        "10.0.0.9",
        None,
        schemes=frozenset({"rtsp"}),
    )
    assert pinned == "rtsp://10.0.0.9/Streaming/Channels/101?transportmode=unicast"
    pinned = pin_uri("rtsp://127.0.0.1:8554/main", "10.0.0.9", None, schemes=frozenset({"rtsp"}))
    assert pinned == "rtsp://10.0.0.9:8554/main"
    with pytest.raises(ForeignHostRefused, match="scheme"):
        pin_uri("file:///etc/passwd", "10.0.0.9", None)


def test_ipv6_hosts_are_bracketed() -> None:
    assert pin_uri("http://[fe80::1]/onvif/x", "2001:db8::5", 80) == "http://[2001:db8::5]/onvif/x"


def test_strip_userinfo_removes_credentials_everywhere() -> None:
    assert strip_userinfo("http://admin:pw@10.0.0.9/snap.jpg?user=admin&pwd=pw&ch=1") == (
        "http://10.0.0.9/snap.jpg?ch=1"
    )
    assert strip_userinfo("rtsp://10.0.0.9:554/live") == "rtsp://10.0.0.9:554/live"


def test_a_profile_refuses_uris_with_credentials() -> None:
    with pytest.raises(ValueError, match="credentials"):
        MediaProfile(token="p", stream_uri="rtsp://admin:pw@10.0.0.9/live")


def test_clock_offset_uses_the_round_trip_midpoint() -> None:
    sent = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    received = sent + timedelta(seconds=2)
    device = datetime(2024, 5, 1, 9, 58, 31, tzinfo=UTC)
    assert clock_offset(device, sent, received) == timedelta(seconds=-90)
    with pytest.raises(ValueError, match="aware"):
        clock_offset(device.replace(tzinfo=None), sent, received)


def test_password_digest_matches_the_username_token_profile() -> None:
    nonce = b"0123456789abcdef"
    created = "2024-05-01T10:00:00.000Z"
    expected = base64.b64encode(
        hashlib.sha1(nonce + created.encode() + b"s3cret").digest()  # noqa: S324
    ).decode()
    assert soap.password_digest(nonce, created, "s3cret") == expected
    header = soap.username_token(
        soap.Credentials("admin", "s3cret"), nonce, datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    )
    assert expected in header and "s3cret" not in header
    assert "s3cret" not in repr(soap.Credentials("admin", "s3cret"))


def test_requests_are_well_formed_and_echo_reference_parameters() -> None:
    action, body = soap.pull_messages(timedelta(seconds=5), 100)
    document = soap.envelope(
        body,
        action=action,
        to="http://cam/onvif/sub?id=<1>",
        reference_parameters=(b'<x:SubscriptionId xmlns:x="urn:x">7</x:SubscriptionId>',),
    )
    root = parse_untrusted_xml(document)
    text = document.decode()
    assert "<tev:Timeout>PT5S</tev:Timeout>" in text and "SubscriptionId" in text
    assert root.tag == "{http://www.w3.org/2003/05/soap-envelope}Envelope"


def test_durations() -> None:
    assert parse_duration("PT60S") == timedelta(seconds=60)
    assert parse_duration("PT1M30S") == timedelta(seconds=90)
    assert parse_duration("P1DT1H") == timedelta(days=1, hours=1)
    with pytest.raises(ValueError, match="unsupported"):
        parse_duration("P")
    assert soap.format_duration(timedelta(minutes=2)) == "PT120S"


def test_oversized_or_utf16_doctype_documents_are_refused() -> None:
    with pytest.raises(XmlRefused, match="cap"):
        parse_untrusted_xml(b"<a>" + b"x" * 100 + b"</a>", max_bytes=50)
    sneaky = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'
    with pytest.raises(XmlRefused, match="refused"):
        parse_untrusted_xml(sneaky.encode("utf-16"))


PROBE_MATCHES = (
    Path(__file__).resolve().parents[1] / "fixtures/onvif/probe_matches.xml"
).read_bytes()


def test_discovery_candidates_are_read_from_probe_matches() -> None:
    (candidate,) = parse_probe_matches(PROBE_MATCHES, "192.168.1.64")
    assert candidate == Candidate(
        endpoint="urn:uuid:4d454930-0000-1000-8000-bcbac2a01f3c",
        xaddrs=(
            "http://192.168.1.64/onvif/device_service",
            "http://[fe80::1]/onvif/device_service",
        ),
        scopes=candidate.scopes,
        types=("dn:NetworkVideoTransmitter", "tds:Device"),
        responder="192.168.1.64",
    )
    assert candidate.name == "IPC-East-Gate"
    assert candidate.hardware == "DS-2CD2T47"
