"""Request and response bodies of the ONVIF routes (probe, channel health, discovery)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = [
    "CandidateOut",
    "ChannelHealthOut",
    "DeviceInformationOut",
    "DeviceOnvifOut",
    "DiscoveryOut",
    "LastProbeOut",
    "OnboardIn",
    "ProbeOut",
    "ProfileOut",
]


class DeviceInformationOut(BaseModel):
    """What the camera says it is (GetDeviceInformation)."""

    manufacturer: str
    model: str
    firmware_version: str
    serial_number: str
    hardware_id: str


class ProfileOut(BaseModel):
    """One media profile; URIs are pinned to the camera's address and carry no login."""

    token: str
    name: str
    encoding: str | None
    width: int | None
    height: int | None
    frame_rate: float | None
    bitrate_kbps: int | None
    video_source_token: str | None
    stream_uri: str | None
    snapshot_uri: str | None


class ProbeOut(BaseModel):
    """A successful probe, as stored on the device."""

    device_id: str
    ok: bool = True
    probed_at: datetime
    host: str
    port: int
    device: DeviceInformationOut
    services: dict[str, str] = Field(description="service namespace → pinned address")
    profiles: list[ProfileOut]
    stream_uris: list[str] = Field(description="the device's rtsp_urls after this probe")
    snapshot_uri: str | None
    clock_offset_s: float | None = Field(description="camera clock minus hub clock, seconds")
    warnings: list[str]
    changed: list[str] = Field(description="device fields this probe changed")


class ChannelHealthOut(BaseModel):
    """A camera's PullPoint event channel, as the hub sees it now."""

    state: str = Field(description="starting, subscribed, backoff or stopped")
    subscribed_since: datetime | None
    subscription_age_s: float | None
    last_successful_pull: datetime | None
    seconds_since_last_pull: float | None
    last_error: str | None
    last_error_at: datetime | None
    consecutive_failures: int
    pulls: int
    renewals: int
    renew_failures: int
    resubscriptions: int
    messages_total: int
    messages_per_topic: dict[str, int]
    unknown_topics: dict[str, int]
    malformed_messages: int
    clock_offset_s: float | None


class LastProbeOut(BaseModel):
    """The newest stored probe of the device."""

    probed_at: datetime
    ok: bool
    failure: str | None
    error: str | None
    requested_by: str


class DeviceOnvifOut(BaseModel):
    """A device's ONVIF side: address, last probe and event channel health."""

    device_id: str
    onvif_url: str | None
    has_credentials: bool
    events_running: bool = Field(description="the hub maintains event channels (onvif.enabled)")
    event_channel: ChannelHealthOut | None
    last_probe: LastProbeOut | None


class CandidateOut(BaseModel):
    """A device that answered WS-Discovery."""

    endpoint: str
    xaddrs: list[str]
    scopes: list[str]
    name: str | None
    hardware: str | None
    responder: str | None
    host: str | None
    port: int | None
    first_seen_at: datetime
    seen_at: datetime
    device_id: str | None = Field(description="the registered device it is, if any")


class DiscoveryOut(BaseModel):
    """A discovery run: cameras not registered yet, and those that are."""

    interface: str
    candidates: list[CandidateOut]
    registered: list[CandidateOut]


class OnboardIn(BaseModel):
    """Register a discovered camera: probe it with this login, then create the device."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    device_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=128)
    xaddr: str = Field(
        min_length=8,
        max_length=512,
        description="the camera's device service address, e.g. from discovery",
    )
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=128)
    jurisdiction: str | None = Field(None, description="jurisdiction code to register it under")
    project: str | None = None
    endpoint: str | None = Field(None, description="the discovery endpoint reference, if any")
