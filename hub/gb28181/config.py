"""Configuration of the GB/T 28181 platform side (SIP registrar, catalog, alarms, media)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from camera_registry.gb28181 import is_gb_id

__all__ = ["Gb28181Settings"]


class Gb28181Settings(BaseModel):
    """The hub as the GB/T 28181 platform cameras and NVRs register to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False, description="Listen for GB/T 28181 devices (SIP over UDP and TCP)."
    )
    sip_host: str = Field(
        "127.0.0.1",
        description="Address the SIP server binds (0.0.0.0 for every interface).",
    )
    advertised_host: str | None = Field(
        None,
        description=(
            "Address devices reach the hub at (SDP, Contact); defaults to sip_host unless "
            "that is 0.0.0.0."
        ),
    )
    sip_port: int = Field(5060, ge=0, le=65535, description="SIP port, UDP and TCP.")
    platform_id: str = Field(
        "15020700002000000001",
        description="The hub's 20-digit GB/T 28181 id (type 200: central SIP server).",
    )
    domain: str = Field(
        "1502070000", pattern=r"^[0-9]{10}$", description="The 10-digit SIP domain (realm)."
    )
    password: SecretStr | None = Field(
        None,
        description=(
            "Platform default password for devices without a password of their own "
            "(registry credentials); secret, never logged or returned."
        ),
    )
    media_ports: tuple[int, int] = Field(
        (30000, 30999), description="RTP receive port range [first, last] for live video."
    )
    media_transport: Literal["UDP", "TCP"] = Field(
        "UDP",
        description=(
            "How channels send live video: UDP to a port of media_ports, or TCP "
            "(TCP/RTP/AVP, setup:passive: the device connects to that port; RFC 4571 "
            "framing), for devices behind NAT or on lossy links."
        ),
    )
    auto_register: bool = Field(
        False,
        description=(
            "Let a device with an unknown id register (and add it to the registry); "
            "otherwise it is refused (403) and listed for a maintainer to accept."
        ),
    )
    keepalive_interval_s: float = Field(
        30.0, gt=0, le=3600, description="Keepalive interval assumed for devices, seconds."
    )
    keepalive_missed: int = Field(
        3, ge=1, le=20, description="Missed keepalive intervals before a device is offline."
    )
    register_expires_max_s: int = Field(
        3600, ge=60, le=86_400, description="Longest registration granted, seconds."
    )
    register_expires_min_s: int = Field(
        60, ge=10, le=3600, description="Shortest registration accepted (423 below it)."
    )
    auth_failures_per_minute: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Wrong-password REGISTERs per source address and minute before it is ignored.",
    )
    catalog_on_register: bool = Field(
        True, description="Query and subscribe to the catalog after every registration."
    )
    arm_on_register: bool = Field(
        True,
        description="Arm the device (SetGuard and alarm subscription) after every registration.",
    )
    subscription_expires_s: int = Field(
        3600, ge=60, le=86_400, description="Catalog and alarm subscription lifetime asked for."
    )

    @field_validator("platform_id")
    @classmethod
    def _platform_id(cls, value: str) -> str:
        if not is_gb_id(value):
            raise ValueError("platform_id must be a valid 20-digit GB/T 28181 id")
        return value

    @model_validator(mode="after")
    def _ports(self) -> Gb28181Settings:
        first, last = self.media_ports
        if not 1024 <= first <= last <= 65535:
            raise ValueError("media_ports must be [first, last] within 1024-65535")
        return self

    def host_for_devices(self) -> str:
        """The address put in SDP and Contact headers."""
        if self.advertised_host:
            return self.advertised_host
        return "127.0.0.1" if self.sip_host in ("0.0.0.0", "::") else self.sip_host  # noqa: S104

    @property
    def offline_after_s(self) -> float:
        """Silence after the last keepalive that makes a device offline."""
        return self.keepalive_interval_s * self.keepalive_missed
