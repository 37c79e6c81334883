"""Standard Webhooks signatures, checked against an independent HMAC computation."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from adapters.sinks import SignatureError, headers_for, parse_secret, sign, verify

# The example published with the Standard Webhooks specification and reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NEW_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
NOW = datetime.fromtimestamp(1_714_550_400, UTC)
BODY = b'{"event":"alarm.open","alarm_id":"1","revision":1}'


def independent_signature(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    """What a receiver written from the spec alone computes."""
    key = base64.b64decode(secret.split("_", 1)[1])
    mac = hmac.new(key, msg_id.encode() + b"." + str(ts).encode() + b"." + body, "sha256")
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_matches_the_published_standard_webhooks_example() -> None:
    assert sign(parse_secret(SPEC_SECRET), SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    assert independent_signature(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_headers_carry_id_timestamp_and_a_signature_per_key() -> None:
    ts = int(NOW.timestamp())
    headers = headers_for("gw-abc:1:governance", NOW, BODY, [NEW_SECRET, OLD_SECRET])
    assert headers["webhook-id"] == "gw-abc:1:governance"
    assert headers["webhook-timestamp"] == str(ts)
    assert headers["webhook-signature"].split(" ") == [
        independent_signature(NEW_SECRET, "gw-abc:1:governance", ts, BODY),
        independent_signature(OLD_SECRET, "gw-abc:1:governance", ts, BODY),
    ]


def test_receiver_with_either_key_accepts_during_rotation() -> None:
    headers = headers_for("m1", NOW, BODY, [NEW_SECRET, OLD_SECRET])
    assert verify(headers, BODY, [OLD_SECRET], now=NOW) == "m1"
    assert verify(headers, BODY, [NEW_SECRET], now=NOW) == "m1"
    # Header names are case-insensitive on the wire.
    shouted = {name.upper(): value for name, value in headers.items()}
    assert verify(shouted, BODY, [NEW_SECRET], now=NOW) == "m1"


def test_tampered_body_wrong_key_and_stale_timestamp_are_refused() -> None:
    headers = headers_for("m1", NOW, BODY, [NEW_SECRET])
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(headers, BODY.replace(b"open", b"close"), [NEW_SECRET], now=NOW)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(headers, BODY, [OLD_SECRET], now=NOW)
    with pytest.raises(SignatureError, match="possible replay"):
        verify(headers, BODY, [NEW_SECRET], now=NOW + timedelta(minutes=6))
    assert verify(headers, BODY, [NEW_SECRET], now=NOW + timedelta(minutes=4)) == "m1"
    with pytest.raises(SignatureError, match="missing"):
        verify({"webhook-id": "m1"}, BODY, [NEW_SECRET], now=NOW)
    with pytest.raises(SignatureError, match="no v1 signature"):
        verify({**headers, "webhook-signature": "v2,abc"}, BODY, [NEW_SECRET], now=NOW)
    forged = {**headers, "webhook-signature": "v1,ñññ"}
    with pytest.raises(SignatureError, match="no signature matches"):
        verify(forged, BODY, [NEW_SECRET], now=NOW)


def test_secrets_must_be_whsec_base64_and_long_enough() -> None:
    with pytest.raises(ValueError, match="whsec_<base64>"):
        parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    with pytest.raises(ValueError, match="not valid base64") as caught:
        parse_secret("whsec_not base64!!")
    assert "not base64!!" not in str(caught.value)  # never echo the secret
    with pytest.raises(ValueError, match="at least 16 bytes"):
        parse_secret("whsec_" + base64.b64encode(b"short").decode())
    assert parse_secret(b"r" * 32) == b"r" * 32


def test_signing_refuses_header_breaking_ids_and_needs_a_key() -> None:
    key = parse_secret(NEW_SECRET)
    with pytest.raises(ValueError, match="printable ASCII"):
        sign(key, "bad id\r\nX-Injected: 1", 1, BODY)
    with pytest.raises(ValueError, match="at least one webhook secret"):
        headers_for("m1", NOW, BODY, [])
    expected = hmac.new(key, b"m1.5." + BODY, hashlib.sha256).digest()
    assert sign(key, "m1", 5, BODY) == "v1," + base64.b64encode(expected).decode()
