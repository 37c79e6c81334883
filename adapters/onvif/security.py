"""Pure safety rules for talking to cameras: host pinning, credential stripping, clock offset.

Cameras advertise addresses for their services and streams, and they lie:
`http://127.0.0.1/onvif/...`, an internal 192.168.x address behind NAT, or a
host that is not the camera at all. Credentials must only ever go to the host
and port the operator configured, so every advertised URI is pinned here before
the client uses it.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from camera_registry.urls import CREDENTIAL_QUERY_KEYS, without_credentials

__all__ = [
    "CREDENTIAL_QUERY_KEYS",
    "ForeignHostRefused",
    "PinPolicy",
    "clock_offset",
    "format_host",
    "pin_uri",
    "redact_uri",
    "strip_userinfo",
]

#: Query parameters some cameras use to carry credentials in snapshot / stream URIs.

_DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}


class ForeignHostRefused(ValueError):
    """A camera advertised an address that is not the configured camera."""


class PinPolicy(StrEnum):
    """What to do with an advertised URI that points somewhere else."""

    #: Rewrite any foreign host/port to the configured one, keeping the path.
    REWRITE = "rewrite"
    #: Rewrite only addresses that cannot be the camera as seen from the hub
    #: (loopback, private, link-local, unspecified, bare host names); refuse
    #: a different public address.
    REWRITE_LOCAL = "rewrite_local"
    #: Refuse anything not already on the configured host and port.
    REFUSE = "refuse"


def format_host(host: str) -> str:
    """A host ready for a URL netloc (IPv6 literals bracketed)."""
    host = host.strip()
    if host.startswith("["):
        return host
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def _same_host(a: str, b: str) -> bool:
    a, b = a.strip("[]").lower(), b.strip("[]").lower()
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _is_local(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # A bare name (`localhost`, `ipc`, `camera.local`) only means something
        # on the camera's own network.
        return "." not in host or host.endswith((".local", ".lan", ".localdomain"))
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
    )


def pin_uri(
    advertised_uri: str,
    configured_host: str,
    configured_port: int | None,
    *,
    policy: PinPolicy = PinPolicy.REWRITE,
    schemes: frozenset[str] = frozenset({"http", "https"}),
    scheme: str | None = None,
) -> str:
    """Return `advertised_uri` aimed at the configured camera, or raise `ForeignHostRefused`.

    `configured_port` None pins the host only and keeps the advertised port
    (used for RTSP and snapshot URIs, which live on other ports of the same
    camera). `scheme` (the configured camera's) replaces the advertised one:
    a camera configured as `https://` is never spoken to in clear because it
    advertised an `http://` service address. Userinfo in the advertised URI is
    always dropped.
    """
    try:
        parts = urlsplit(advertised_uri.strip())
        advertised_port = parts.port
    except ValueError as exc:
        raise ForeignHostRefused(f"unreadable advertised address {advertised_uri[:200]!r}") from exc
    advertised_scheme = parts.scheme.lower()
    if advertised_scheme not in schemes:
        raise ForeignHostRefused(
            f"advertised address has scheme {advertised_scheme!r}, expected {sorted(schemes)}"
        )
    host = parts.hostname or ""
    # Without a port, the address means the default port of the scheme it will be spoken in.
    port = advertised_port or _DEFAULT_PORTS.get((scheme or advertised_scheme).lower())
    wanted_port = configured_port if configured_port is not None else port
    on_target = bool(host) and _same_host(host, configured_host) and port == wanted_port
    if not on_target:
        described = f"{host or '?'}:{port}"
        if policy is PinPolicy.REFUSE:
            raise ForeignHostRefused(
                f"camera advertised {described}, configured {configured_host}:{wanted_port}"
            )
        if (
            policy is PinPolicy.REWRITE_LOCAL
            and host
            and not _is_local(host)
            and not _same_host(host, configured_host)
        ):
            raise ForeignHostRefused(f"camera advertised the foreign public host {described}")
    final_scheme = scheme.lower() if scheme is not None else advertised_scheme
    netloc = format_host(configured_host)
    final_port = wanted_port
    if final_port is not None and final_port != _DEFAULT_PORTS.get(final_scheme):
        netloc = f"{netloc}:{final_port}"
    return urlunsplit((final_scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def strip_userinfo(uri: str) -> str:
    """`uri` without `user:pass@` and without credential-carrying query parameters."""
    return without_credentials(uri)


def redact_uri(uri: str) -> str:
    """A form of `uri` safe for logs: credentials removed, over-long values cut."""
    try:
        return without_credentials(uri)[:300]
    except ValueError:
        return "<unreadable uri>"


def clock_offset(device_utc: datetime, sent_at: datetime, received_at: datetime) -> timedelta:
    """Camera clock minus hub clock, from a GetSystemDateAndTime round trip.

    The camera read its clock somewhere between `sent_at` and `received_at`;
    the midpoint is the best estimate. The camera reports whole seconds, so
    the result is only good to about a second — plenty for WS-Security.
    """
    for name, value in (
        ("device_utc", device_utc),
        ("sent_at", sent_at),
        ("received_at", received_at),
    ):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    if received_at < sent_at:
        raise ValueError("received_at is before sent_at")
    midpoint = sent_at + (received_at - sent_at) / 2
    return device_utc - midpoint
