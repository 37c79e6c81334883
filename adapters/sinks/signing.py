"""Standard Webhooks signatures (https://www.standardwebhooks.com/), pure.

The signed content is `f"{msg_id}.{timestamp}.{body}"`, the MAC is
HMAC-SHA256 with the base64-decoded `whsec_...` secret, and the header value
is `v1,<base64 mac>`. During key rotation the message is signed with every
active key and the signatures are space-separated; a receiver accepts the
message if any one of them verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

__all__ = [
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "SignatureError",
    "headers_for",
    "parse_secret",
    "sign",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
#: How far a message timestamp may be from the receiver's clock (replay window).
DEFAULT_TOLERANCE = timedelta(minutes=5)
_MIN_SECRET_BYTES = 16
_MSG_ID = re.compile(r"[!-~]{1,256}")  # printable ASCII, no spaces: it goes in a header


class SignatureError(ValueError):
    """A webhook message whose signature or timestamp does not verify."""


def parse_secret(secret: str | bytes) -> bytes:
    """The key bytes of a `whsec_<base64>` secret (raw bytes are returned as they are)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        if not secret.startswith(SECRET_PREFIX):
            raise ValueError(f"webhook secrets look like {SECRET_PREFIX}<base64>")
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as error:
            # The message must not echo the secret, only say what is wrong with it.
            raise ValueError("webhook secret is not valid base64 after whsec_") from error
    if len(key) < _MIN_SECRET_BYTES:
        raise ValueError(f"webhook secret must be at least {_MIN_SECRET_BYTES} bytes")
    return key


def _seconds(timestamp: int | datetime) -> int:
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return int(timestamp.timestamp())
    if isinstance(timestamp, bool) or timestamp < 0:
        raise ValueError(f"timestamp must be non-negative unix seconds, got {timestamp!r}")
    return timestamp


def sign(secret: bytes, msg_id: str, timestamp: int | datetime, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(secret, f"{msg_id}.{timestamp}.{body}")>`."""
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("msg_id must be 1..256 printable ASCII characters without spaces")
    content = f"{msg_id}.{_seconds(timestamp)}.".encode() + body
    mac = hmac.new(secret, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers_for(
    msg_id: str, timestamp: int | datetime, body: bytes, secrets: Sequence[str | bytes]
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret in `secrets`."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign")
    seconds = _seconds(timestamp)
    signatures = " ".join(sign(parse_secret(secret), msg_id, seconds, body) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": signatures,
    }


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str | bytes],
    *,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> str:
    """Check a received message; return its webhook-id or raise `SignatureError`.

    Header names are matched case-insensitively. Any `v1` signature made with
    any of `secrets` is accepted, so receivers can rotate keys without a gap.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    raw_signatures = lowered.get("webhook-signature")
    if not msg_id or not raw_timestamp or not raw_signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not raw_timestamp.isdigit():
        raise SignatureError("webhook-timestamp is not unix seconds")
    timestamp = int(raw_timestamp)
    skew = abs(_seconds(now) - timestamp)
    if skew > tolerance.total_seconds():
        raise SignatureError(f"webhook-timestamp is {skew} s away from now; possible replay")
    offered = [
        token.partition(",")[2]
        for token in raw_signatures.split()
        if token.partition(",")[0] == "v1"
    ]
    if not offered:
        raise SignatureError("no v1 signature in webhook-signature")
    for secret in secrets:
        expected = sign(parse_secret(secret), msg_id, timestamp, body).partition(",")[2].encode()
        # Compare bytes: compare_digest refuses non-ASCII str, and headers are untrusted.
        if any(hmac.compare_digest(expected, candidate.encode()) for candidate in offered):
            return msg_id
    raise SignatureError("no signature matches any known secret")
