"""Value types of the ONVIF adapter: probe results, discovery candidates, channel health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import urlsplit

__all__ = [
    "Candidate",
    "ChannelHealth",
    "DeviceInformation",
    "MediaProfile",
    "ProbeFailure",
    "ProbeResult",
]


def _check_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")


class ProbeFailure(StrEnum):
    """Why talking to a camera failed, in terms a maintainer can act on."""

    AUTH = "auth"  # wrong user name / password (or clock too far off to sign)
    UNREACHABLE = "unreachable"  # connection refused, no route, DNS
    TIMEOUT = "timeout"  # connected but no answer in time
    PROTOCOL = "protocol"  # answered, but not with usable ONVIF (fault, bad XML, too big)
    REFUSED = "refused"  # the camera pointed us at a host we will not send credentials to


@dataclass(frozen=True, slots=True)
class DeviceInformation:
    """What GetDeviceInformation says about the camera."""

    manufacturer: str = ""
    model: str = ""
    firmware_version: str = ""
    serial_number: str = ""
    hardware_id: str = ""


@dataclass(frozen=True, slots=True)
class MediaProfile:
    """One media profile with its stream and snapshot addresses (credential-free)."""

    token: str
    name: str = ""
    encoding: str | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    bitrate_kbps: int | None = None
    video_source_token: str | None = None
    stream_uri: str | None = None
    snapshot_uri: str | None = None

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("a media profile needs a token")
        for uri in (self.stream_uri, self.snapshot_uri):
            if uri is not None and urlsplit(uri).username is not None:
                raise ValueError("profile URIs must not carry credentials")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Everything a probe learned about one camera, safe to store and show."""

    host: str
    port: int
    probed_at: datetime
    device: DeviceInformation
    services: Mapping[str, str] = field(default_factory=dict)  # namespace → pinned XAddr
    profiles: tuple[MediaProfile, ...] = ()
    clock_offset: timedelta | None = None  # camera clock minus hub clock
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_aware("probed_at", self.probed_at)
        if not 0 < self.port < 65536:
            raise ValueError(f"invalid port {self.port}")
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))

    @property
    def events_xaddr(self) -> str | None:
        """The event service address, if the camera has one."""
        return self.services.get("http://www.onvif.org/ver10/events/wsdl")

    @property
    def stream_uris(self) -> dict[str, str]:
        """Profile token → RTSP URI, for profiles that have one."""
        return {p.token: p.stream_uri for p in self.profiles if p.stream_uri}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A device that answered a WS-Discovery probe."""

    endpoint: str  # the EndpointReference address, stable per device
    xaddrs: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    responder: str | None = None  # IP address the answer came from

    def __post_init__(self) -> None:
        if not self.endpoint:
            raise ValueError("a discovery candidate needs an endpoint reference")

    def _scope_values(self, prefix: str) -> list[str]:
        return [s[len(prefix) :] for s in self.scopes if s.startswith(prefix)]

    @property
    def name(self) -> str | None:
        """The `onvif://www.onvif.org/name/...` scope, if given."""
        values = self._scope_values("onvif://www.onvif.org/name/")
        return values[0] if values else None

    @property
    def hardware(self) -> str | None:
        """The `onvif://www.onvif.org/hardware/...` scope, if given."""
        values = self._scope_values("onvif://www.onvif.org/hardware/")
        return values[0] if values else None


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    """A snapshot of one camera's event channel, for health detail and metrics."""

    device_id: str
    state: str  # "starting", "subscribed", "backoff", "stopped"
    subscribed_since: datetime | None = None
    last_successful_pull: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    pulls: int = 0
    renewals: int = 0
    renew_failures: int = 0
    resubscriptions: int = 0
    messages_total: int = 0
    messages_per_topic: Mapping[str, int] = field(default_factory=dict)
    unknown_topics: Mapping[str, int] = field(default_factory=dict)
    malformed_messages: int = 0
    clock_offset: timedelta | None = None

    def __post_init__(self) -> None:
        for name in ("subscribed_since", "last_successful_pull", "last_error_at"):
            _check_aware(name, getattr(self, name))
        object.__setattr__(
            self, "messages_per_topic", MappingProxyType(dict(self.messages_per_topic))
        )
        object.__setattr__(self, "unknown_topics", MappingProxyType(dict(self.unknown_topics)))

    def subscription_age(self, now: datetime) -> timedelta | None:
        """How long the current subscription has lived at `now`."""
        return None if self.subscribed_since is None else now - self.subscribed_since
