"""Configuration of the ONVIF side: probes, WS-Discovery and PullPoint event channels."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from adapters.onvif.client import EventChannelSettings

__all__ = ["OnvifSettings"]


class OnvifSettings(BaseModel):
    """ONVIF cameras: probing, discovery, and an event channel per registered camera."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False,
        description=(
            "Open an event channel to every enabled camera with an ONVIF address and a "
            "stored login when the hub starts (probe and discovery work either way)."
        ),
    )
    events_enabled: bool = Field(
        True, description="Subscribe to camera events (PullPoint) when `enabled` is on."
    )
    pin_policy: Literal["rewrite", "rewrite_local", "refuse"] = Field(
        "rewrite",
        description=(
            "Addresses a camera advertises for its services and streams: rewrite them to "
            "the configured host (rewrite), rewrite only private/loopback ones and refuse "
            "foreign public hosts (rewrite_local), or refuse any other host (refuse)."
        ),
    )
    call_timeout_s: float = Field(
        10.0, gt=0, le=10, description="Deadline of one call to a camera, seconds (at most 10)."
    )
    probe_concurrency: int = Field(
        16, ge=1, le=1024, description="Probes running at once across all cameras."
    )
    setup_concurrency: int = Field(
        32,
        ge=1,
        le=1024,
        description="Event subscriptions being set up at once (a restart does not storm cameras).",
    )
    max_connections: int = Field(
        4096,
        ge=16,
        le=65_536,
        description="HTTP connections to cameras at once (each event channel long-polls one).",
    )
    subscription_lifetime_s: float = Field(
        120, ge=10, le=3600, description="Event subscription lifetime asked of the camera."
    )
    renew_before_s: float = Field(
        30, gt=0, le=600, description="Renew a subscription this long before it expires."
    )
    pull_timeout_s: float = Field(
        5, gt=0, le=10, description="PullMessages long-poll: the camera answers within this."
    )
    message_limit: int = Field(
        100, ge=1, le=1024, description="Most notifications asked for per PullMessages."
    )
    backoff_initial_s: float = Field(
        1.0, gt=0, le=60, description="First wait before re-subscribing after a failure."
    )
    backoff_max_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between re-subscription attempts."
    )
    resync_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How often the registry is checked for cameras added, changed or removed.",
    )
    stale_after_s: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="An event channel without a successful pull for this long counts as stale.",
    )
    discovery_timeout_s: float = Field(
        3.0, gt=0, le=10, description="How long a WS-Discovery probe collects answers."
    )
    discovery_target: str = Field(
        "239.255.255.250:3702",
        pattern=r"^[0-9.]+:[0-9]{1,5}$",
        description=(
            "Where WS-Discovery probes go: the standard multicast group, or one "
            "address:port for a directed probe."
        ),
    )

    @model_validator(mode="after")
    def _timings_work(self) -> OnvifSettings:
        # Built once here so a config file with impossible timings fails at load.
        self.channel_settings()
        return self

    def channel_settings(self) -> EventChannelSettings:
        """The adapter's per-camera channel timings."""
        # Imported here: the client loads zeep, which `gridwatch config check` need not.
        from adapters.onvif.client import EventChannelSettings

        try:
            return EventChannelSettings(
                subscription_lifetime=timedelta(seconds=self.subscription_lifetime_s),
                renew_before=timedelta(seconds=self.renew_before_s),
                pull_timeout=timedelta(seconds=self.pull_timeout_s),
                message_limit=self.message_limit,
                call_timeout=self.call_timeout_s,
                backoff_initial=self.backoff_initial_s,
                backoff_max=self.backoff_max_s,
            )
        except ValueError as exc:
            raise ValueError(f"event channel timings: {exc}") from exc

    def discovery_address(self) -> tuple[str, int]:
        """`discovery_target` as (address, port)."""
        host, _, port = self.discovery_target.rpartition(":")
        return host, int(port)
