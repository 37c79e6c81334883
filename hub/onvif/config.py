"""Configuration of the ONVIF side: probes, WS-Discovery and PullPoint event channels."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapters.onvif.mapping import KIND_PATTERN, TOPIC_GLOB_PATTERN, TopicMapping
from camera_registry.events import Severity

if TYPE_CHECKING:
    import ssl

    from adapters.onvif.client import EventChannelSettings

__all__ = ["OnvifSettings", "OnvifTopicMapping"]


class OnvifTopicMapping(BaseModel):
    """Maps a camera's event topic to an event kind, without a new release.

    Example: an `Acme` fence controller sends `tns1:RuleEngine/tnsacme:Fence/Alarm`
    with `<SimpleItem Name="Triggered" Value="yes"/>`; the mapping
    `{name: acme_fence, topic: "RuleEngine/Fence/*", data_item: [Triggered],
    true_values: ["yes"], kind: onvif.intrusion}` turns it into intrusion events.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9_]{1,32}$", description="Short id, shown in the event's payload."
    )
    topic: str = Field(
        min_length=1,
        max_length=256,
        pattern=TOPIC_GLOB_PATTERN,
        description=(
            "Topic glob, compared without namespace prefixes and case: "
            "`tns1:RuleEngine/tnsacme:Fence/*` and `RuleEngine/Fence/*` are the same."
        ),
    )
    data_item: list[str] = Field(
        min_length=1,
        max_length=8,
        description="SimpleItem names carrying the state (Data items first, then Source).",
    )
    true_values: list[str] = Field(
        default_factory=lambda: ["true", "1"],
        min_length=1,
        max_length=16,
        description="Values (case-insensitive) that mean the condition is on.",
    )
    false_values: list[str] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Values that mean off; when given, any other value is refused as malformed. "
            "When absent, every value not in true_values means off."
        ),
    )
    kind: str = Field(
        pattern=KIND_PATTERN,
        max_length=64,
        description="Event kind to produce, e.g. onvif.intrusion, onvif.digital_input.",
    )
    severity: Severity = Field(Severity.WARNING, description="Severity of the 'on' edge.")
    pulse: bool = Field(
        False,
        description="A one-off happening (a line crossed): no 'off' is expected or held.",
    )

    @field_validator("data_item", "true_values")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("entries must not be blank")
        return value

    def adapter_mapping(self) -> TopicMapping:
        """The adapter's pure form of this mapping."""
        return TopicMapping(
            name=self.name,
            topic=self.topic,
            items=tuple(self.data_item),
            kind=self.kind,
            true_values=frozenset(self.true_values),
            false_values=None if self.false_values is None else frozenset(self.false_values),
            severity=self.severity,
            pulse=self.pulse,
        )


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
        16_384,
        ge=16,
        le=65_536,
        description=(
            "HTTP connections to cameras at once. Each event channel long-polls on one, so "
            "keep this above the number of cameras (and the process's open-file limit "
            "above it)."
        ),
    )
    subscription_lifetime_s: float = Field(
        120, ge=10, le=3600, description="Event subscription lifetime asked of the camera."
    )
    renew_before_s: float = Field(
        30, gt=0, le=600, description="Renew a subscription this long before it expires."
    )
    pull_timeout_s: float = Field(
        20,
        gt=0,
        le=60,
        description=(
            "PullMessages long-poll: the camera answers within this, at once when an event "
            "comes. Longer means fewer idle pulls (CPU) at no cost in event latency; a "
            "camera that stops answering is noticed after this plus call_timeout_s."
        ),
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

    tls_verify: bool = Field(
        True,
        description=(
            "Verify the certificate of cameras reached over https:// (their ONVIF address "
            "or snapshot URL). Turn off only for cameras with self-signed certificates "
            "on a network the site trusts."
        ),
    )
    tls_ca_file: str | None = Field(
        None,
        description="CA bundle (PEM) that signed the cameras' certificates; system CAs if absent.",
    )
    topic_mappings: list[OnvifTopicMapping] = Field(
        default_factory=list,
        max_length=256,
        description=(
            "Site mappings of camera event topics to event kinds, asked before the "
            "built-in topic parsers (first match wins)."
        ),
    )

    @model_validator(mode="after")
    def _timings_work(self) -> OnvifSettings:
        # Built once here so a config file with impossible timings fails at load.
        self.channel_settings()
        return self

    @model_validator(mode="after")
    def _mappings_work(self) -> OnvifSettings:
        names = [m.name for m in self.topic_mappings]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"topic mapping names must be unique: {duplicates}")
        self.adapter_mappings()
        return self

    @model_validator(mode="after")
    def _ca_file_exists(self) -> OnvifSettings:
        if self.tls_ca_file is not None and not Path(self.tls_ca_file).is_file():
            raise ValueError(f"tls_ca_file {self.tls_ca_file!r} is not a readable file")
        return self

    def camera_tls(self) -> ssl.SSLContext:
        """The TLS context for https:// cameras, from `tls_verify` and `tls_ca_file`."""
        from adapters.onvif.http import tls_context

        return tls_context(verify=self.tls_verify, ca_file=self.tls_ca_file)

    def adapter_mappings(self) -> tuple[TopicMapping, ...]:
        """The site's topic mappings in the adapter's form, in order."""
        return tuple(m.adapter_mapping() for m in self.topic_mappings)

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
