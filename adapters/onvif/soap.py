"""Pure building of the SOAP 1.2 requests the event channel sends (no I/O).

Nonce and creation time are passed in, so the WS-Security UsernameToken digest
is deterministic and testable.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

__all__ = [
    "Credentials",
    "content_type",
    "create_pull_point_subscription",
    "envelope",
    "format_duration",
    "get_capabilities_events",
    "get_system_date_and_time",
    "password_digest",
    "pull_messages",
    "renew",
    "unsubscribe",
    "username_token",
]

_ENV = "http://www.w3.org/2003/05/soap-envelope"
_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_DIGEST = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordDigest"
)
_BASE64 = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
_WSA = "http://www.w3.org/2005/08/addressing"
_TEV = "http://www.onvif.org/ver10/events/wsdl"
_WSNT = "http://docs.oasis-open.org/wsn/b-2"
_TDS = "http://www.onvif.org/ver10/device/wsdl"

ACTION_CREATE = f"{_TEV}/EventPortType/CreatePullPointSubscriptionRequest"
ACTION_PULL = f"{_TEV}/PullPointSubscription/PullMessagesRequest"
ACTION_RENEW = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewRequest"
ACTION_UNSUBSCRIBE = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeRequest"
ACTION_DATE = f"{_TDS}/GetSystemDateAndTime"
ACTION_CAPABILITIES = f"{_TDS}/GetCapabilities"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A camera account; `repr` never shows the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"


def password_digest(nonce: bytes, created: str, password: str) -> str:
    """WS-Security PasswordDigest: Base64(SHA-1(nonce + created + password))."""
    # SHA-1 is what the UsernameToken profile mandates; there is no choice here.
    digest = hashlib.sha1(nonce + created.encode() + password.encode()).digest()  # noqa: S324
    return base64.b64encode(digest).decode("ascii")


def _created(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def username_token(credentials: Credentials, nonce: bytes, created_at: datetime) -> str:
    """The wsse:Security header element, `created_at` already on the camera's clock."""
    created = _created(created_at)
    return (
        f'<wsse:Security xmlns:wsse="{_WSSE}" xmlns:wsu="{_WSU}" env:mustUnderstand="true">'
        "<wsse:UsernameToken>"
        f"<wsse:Username>{escape(credentials.username)}</wsse:Username>"
        f'<wsse:Password Type="{_DIGEST}">'
        f"{password_digest(nonce, created, credentials.password)}</wsse:Password>"
        f'<wsse:Nonce EncodingType="{_BASE64}">{base64.b64encode(nonce).decode()}</wsse:Nonce>'
        f"<wsu:Created>{created}</wsu:Created>"
        "</wsse:UsernameToken></wsse:Security>"
    )


def envelope(
    body: str,
    *,
    action: str,
    to: str,
    security: str | None = None,
    reference_parameters: tuple[bytes, ...] = (),
    message_id: str | None = None,
) -> bytes:
    """A complete SOAP 1.2 envelope with WS-Addressing headers."""
    headers = [
        f"<wsa:Action>{escape(action)}</wsa:Action>",
        f"<wsa:To>{escape(to)}</wsa:To>",
    ]
    if message_id:
        headers.append(f"<wsa:MessageID>{escape(message_id)}</wsa:MessageID>")
    # The subscription's reference parameters go back verbatim (WS-Addressing 1.0 §3.3);
    # they were re-serialized from a parsed element, so they are well-formed.
    headers.extend(p.decode("utf-8", "replace") for p in reference_parameters)
    if security:
        headers.append(security)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<env:Envelope xmlns:env="{_ENV}" xmlns:wsa="{_WSA}" xmlns:tev="{_TEV}" '
        f'xmlns:wsnt="{_WSNT}" xmlns:tds="{_TDS}">'
        f"<env:Header>{''.join(headers)}</env:Header>"
        f"<env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def format_duration(value: timedelta) -> str:
    """xs:duration in whole seconds, e.g. `PT60S`."""
    seconds = max(1, int(value.total_seconds()))
    return f"PT{seconds}S"


def create_pull_point_subscription(initial_termination: timedelta) -> tuple[str, str]:
    """(action, body) for CreatePullPointSubscription."""
    body = (
        "<tev:CreatePullPointSubscription>"
        f"<tev:InitialTerminationTime>{format_duration(initial_termination)}"
        "</tev:InitialTerminationTime>"
        "</tev:CreatePullPointSubscription>"
    )
    return ACTION_CREATE, body


def pull_messages(timeout: timedelta, message_limit: int) -> tuple[str, str]:
    """(action, body) for PullMessages."""
    if not 0 < message_limit <= 1024:
        raise ValueError("message_limit must be 1..1024")
    body = (
        "<tev:PullMessages>"
        f"<tev:Timeout>{format_duration(timeout)}</tev:Timeout>"
        f"<tev:MessageLimit>{message_limit}</tev:MessageLimit>"
        "</tev:PullMessages>"
    )
    return ACTION_PULL, body


def renew(termination: timedelta) -> tuple[str, str]:
    """(action, body) for Renew."""
    body = (
        f"<wsnt:Renew><wsnt:TerminationTime>{format_duration(termination)}"
        "</wsnt:TerminationTime></wsnt:Renew>"
    )
    return ACTION_RENEW, body


def unsubscribe() -> tuple[str, str]:
    """(action, body) for Unsubscribe."""
    return ACTION_UNSUBSCRIBE, "<wsnt:Unsubscribe/>"


def get_system_date_and_time() -> tuple[str, str]:
    """(action, body) for GetSystemDateAndTime."""
    return ACTION_DATE, "<tds:GetSystemDateAndTime/>"


def get_capabilities_events() -> tuple[str, str]:
    """(action, body) for GetCapabilities limited to the event service."""
    return (
        ACTION_CAPABILITIES,
        "<tds:GetCapabilities><tds:Category>Events</tds:Category></tds:GetCapabilities>",
    )


def content_type(action: str) -> str:
    """SOAP 1.2 Content-Type carrying the action."""
    return f"application/soap+xml; charset=utf-8; action={quoteattr(action)}"
