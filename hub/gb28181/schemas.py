"""Request and response bodies of the GB/T 28181 routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["AcceptIn", "ChannelOut", "GbDeviceDetailOut", "GbDeviceOut", "GbStatusOut"]


class GbStatusOut(BaseModel):
    """The platform side as configured and running on this node."""

    enabled: bool
    platform_id: str
    domain: str
    sip_port: int = Field(description="Bound SIP port (UDP and TCP); 0 when not listening.")
    auto_register: bool
    registered: int = Field(description="Devices registered now, through any hub node.")
    counters: dict[str, int]


class GbDeviceOut(BaseModel):
    """A GB/T 28181 device's signalling state, arming and last alarm."""

    device_id: str
    pending: bool = Field(description="Refused as unknown; waiting for a maintainer to accept.")
    registered: bool = Field(
        description="Registered right now (through any hub node; kept across restarts)."
    )
    health: str | None = Field(description="online/offline/unknown as this node sees it.")
    transport: str | None
    host: str | None
    port: int | None
    version: str | None = Field(description="X-GB-Ver the device announced (2022: 3.0).")
    user_agent: str | None
    first_seen_at: datetime
    last_attempt_at: datetime | None
    attempts: int
    registered_at: datetime | None
    expires_at: datetime | None
    last_keepalive_at: datetime | None
    armed: bool = Field(description="Alarms armed (SetGuard or alarm subscription accepted).")
    armed_at: datetime | None
    arm_error: str | None
    last_alarm_at: datetime | None
    catalog_at: datetime | None
    channel_count: int
    info: dict[str, Any]
    contact: str | None = Field(description="The Contact the device registered with.")
    node_id: str | None = Field(description="The hub node the device registered through.")
    catalog_subscribed_until: datetime | None = Field(
        description="When the catalog subscription runs out (renewed before)."
    )
    alarm_subscribed_until: datetime | None = Field(
        description="When the alarm subscription runs out (renewed before)."
    )


class ChannelOut(BaseModel):
    """One catalog entry of a device."""

    channel_id: str
    parent_id: str | None
    name: str | None
    status: str | None
    ptz_type: int | None
    civil_code: str | None
    registered: bool = Field(description="The entry is a device in the registry.")
    updated_at: datetime


class GbDeviceDetailOut(GbDeviceOut):
    """A device with its catalog."""

    channels: list[ChannelOut]


class AcceptIn(BaseModel):
    """Accept a refused device; with a password of its own, or the platform default."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    password: SecretStr | None = Field(
        None, min_length=1, max_length=128, description="write-only; stored encrypted"
    )
