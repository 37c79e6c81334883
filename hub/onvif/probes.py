"""What an ONVIF probe of a camera is, without doing one: the camera's address from its
`onvif_url`, the stored login opened server-side, the outcome and the document stored
for it, what discovery found and what onboarding asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from adapters.onvif.models import (
    Candidate,
    DeviceInformation,
    MediaProfile,
    ProbeFailure,
    ProbeResult,
)
from camera_registry.models import Credentials
from hub.devices.registry import Registry
from hub.onvif.storage import DeviceIdentity, OnvifTarget

__all__ = [
    "DEFAULT_PORTS",
    "DiscoveredCamera",
    "OnboardRequest",
    "OnvifUnavailable",
    "ProbeFailed",
    "ProbeOutcome",
    "camera_address",
    "camera_origin",
    "identity_of",
    "open_login",
    "probe_result_document",
]

#: The port an http(s) ONVIF address without one means.
DEFAULT_PORTS = {"http": 80, "https": 443}


class OnvifUnavailable(Exception):
    """The device cannot be probed as it is registered (no ONVIF address, no login)."""


class ProbeFailed(Exception):
    """Talking to the camera failed; `failure` is the class a maintainer acts on."""

    def __init__(self, failure: ProbeFailure, message: str, outcome: ProbeOutcome) -> None:
        super().__init__(message)
        self.failure = failure
        self.outcome = outcome


def camera_origin(onvif_url: str) -> tuple[str, str, int]:
    """Scheme, host and port of a camera's ONVIF address (`https://10.0.0.7/onvif/...`)."""
    try:
        parts = urlsplit(onvif_url.strip())
        port = parts.port
    except ValueError as exc:
        raise OnvifUnavailable(f"unreadable ONVIF address: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise OnvifUnavailable("the ONVIF address must be an http(s) URL with a host")
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


def camera_address(onvif_url: str) -> tuple[str, int]:
    """Host and port of a camera's ONVIF address (`http://10.0.0.7:8000/onvif/...`)."""
    _, host, port = camera_origin(onvif_url)
    return host, port


def _profile_document(profile: MediaProfile) -> dict[str, Any]:
    return asdict(profile)


def probe_result_document(result: ProbeResult) -> dict[str, Any]:
    """A probe result as stored and returned (JSON-ready; URIs carry no credentials)."""
    offset = result.clock_offset
    return {
        "host": result.host,
        "port": result.port,
        "probed_at": result.probed_at.isoformat(),
        "device": asdict(result.device),
        "services": dict(result.services),
        "profiles": [_profile_document(p) for p in result.profiles],
        "clock_offset_s": offset.total_seconds() if offset is not None else None,
        "warnings": list(result.warnings),
    }


def identity_of(result: ProbeResult) -> DeviceIdentity:
    """What a probe result says the device is, as registry fields."""
    info: DeviceInformation = result.device
    snapshots = [p.snapshot_uri for p in result.profiles if p.snapshot_uri]
    return DeviceIdentity(
        vendor=info.manufacturer or None,
        model=info.model or None,
        firmware=info.firmware_version or None,
        serial=info.serial_number or None,
        rtsp_urls=tuple(p.stream_uri for p in result.profiles if p.stream_uri),
        snapshot_url=snapshots[0] if snapshots else None,
    )


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe of a registered device: the result or the failure, and what changed."""

    device_id: str
    probed_at: datetime
    result: ProbeResult | None = None
    failure: ProbeFailure | None = None
    error: str | None = None
    changed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the camera answered the whole probe."""
        return self.result is not None


@dataclass(frozen=True, slots=True)
class DiscoveredCamera:
    """A WS-Discovery answer, with the device it is registered as (if any)."""

    candidate: Candidate
    host: str | None
    port: int | None
    first_seen_at: datetime
    seen_at: datetime
    device_id: str | None


@dataclass(frozen=True, slots=True)
class OnboardRequest:
    """Turn a discovered (or known) camera into a registered device."""

    device_id: str
    name: str
    xaddr: str  # the camera's device service address, e.g. from discovery
    credentials: Credentials = field(repr=False)
    jurisdiction: str | None = None
    project: str | None = None
    endpoint: str | None = None  # the discovery endpoint reference, to remember the link


def open_login(registry: Registry | None, target: OnvifTarget) -> Credentials:
    """The camera's stored login, decrypted (here, server-side, and nowhere else)."""
    if target.credentials is None:
        raise OnvifUnavailable("no login is stored for this device")
    if registry is None:
        raise OnvifUnavailable("this hub has no device registry to open stored logins")
    try:
        return registry.cipher.open(target.device_id, target.credentials)
    except Exception as exc:
        # The cipher's message names the key problem, never the secret.
        raise OnvifUnavailable(f"the stored login does not decrypt: {exc}") from exc
