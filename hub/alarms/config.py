"""Configuration of the alarm engine: rules, SLA, linkage, delivery and sinks.

A sink is configuration, not code: each entry of `alarms.sinks` names a type
(webhook, cap, amqp, mqtt), where it delivers, its secrets and which alarms go
there. Secrets are `SecretStr`, never logged nor shown by `config example`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from alarms.models import AlarmCategory
from alarms.rules import DEFAULT_RULES, RuleSet
from alarms.sla import DEFAULT_SLA_POLICY, SlaPolicy

__all__ = [
    "AlarmSettings",
    "DeliverySettings",
    "LinkageSettings",
    "SinkSettings",
    "SinkType",
]

SinkType = Literal["webhook", "cap", "amqp", "mqtt"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SinkSettings(_Section):
    """One delivery target for alarm changes."""

    name: str = Field(
        pattern=r"^[a-z0-9_\-]{1,64}$",
        description="Unique sink name (part of the idempotency key alarm:revision:sink).",
    )
    type: SinkType = Field(description="webhook (signed JSON), cap (CAP 1.2 XML), amqp, mqtt.")
    url: SecretStr = Field(
        description="https://… for webhook/cap, amqp://user:pass@host:5672/vhost, "
        "mqtt://host:1883 (credentials in the URL stay secret)."
    )
    target: str | None = Field(
        default=None,
        max_length=255,
        description="AMQP queue name or MQTT topic (required for amqp and mqtt).",
    )
    secrets: list[SecretStr] = Field(
        default_factory=list,
        max_length=2,
        description="Webhook signing secrets (whsec_<base64>); give two while rotating keys.",
    )
    timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Longest wait for the receiver or broker."
    )
    enabled: bool = Field(default=True, description="A disabled sink gets no new rows.")
    drill: bool = Field(default=False, description="Also deliver drill alarms here.")
    categories: list[AlarmCategory] = Field(
        default_factory=list, description="Only these categories; empty means all."
    )
    max_priority: int = Field(
        default=4, ge=1, le=4, description="Only priorities 1..this (1 = P1 only)."
    )
    escalations_only: bool = Field(
        default=False,
        description="A supervisor sink: receives only escalations that reach the supervisor level.",
    )
    max_attempts: int = Field(
        default=12, ge=1, le=1000, description="Attempts before a row is dead-lettered."
    )
    cap_sender: str = Field(
        default="gridwatch@localhost",
        max_length=255,
        description="CAP <sender> (cap sinks): no spaces, commas, < or &.",
    )

    @model_validator(mode="after")
    def _complete(self) -> SinkSettings:
        url = self.url.get_secret_value()
        schemes = {
            "webhook": ("http://", "https://"),
            "cap": ("http://", "https://"),
            "amqp": ("amqp://", "amqps://"),
            "mqtt": ("mqtt://", "mqtts://"),
        }[self.type]
        if not url.startswith(schemes):
            raise ValueError(f"a {self.type} sink needs a URL starting with {' or '.join(schemes)}")
        if self.type in ("amqp", "mqtt") and not self.target:
            raise ValueError(f"a {self.type} sink needs a target (queue or topic)")
        if self.type == "webhook" and not self.secrets:
            raise ValueError("a webhook sink needs at least one signing secret (whsec_…)")
        if re.search(r"[\s,<&]", self.cap_sender):
            raise ValueError("cap_sender must not contain spaces, commas, < or &")
        return self


class DeliverySettings(_Section):
    """The outbox dispatcher."""

    poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="Look for due rows at least this often."
    )
    lease_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="A claimed row is retried by any dispatcher after this long "
        "(must exceed every sink timeout).",
    )
    batch_size: int = Field(default=50, ge=1, le=1000, description="Rows claimed at once.")
    concurrency: int = Field(default=8, ge=1, le=256, description="Deliveries in flight.")
    backoff_base_s: float = Field(
        default=4.0, gt=0, le=600, description="First retry waits up to this long (full jitter)."
    )
    backoff_cap_s: float = Field(
        default=600.0, gt=0, le=86400, description="No retry waits longer than this."
    )


class LinkageSettings(_Section):
    """What runs when an alarm opens."""

    snapshots: bool = Field(default=True, description="Fetch snapshots from linked cameras.")
    snapshot_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Per snapshot.")
    snapshot_max_bytes: int = Field(
        default=5_000_000, ge=1024, le=100_000_000, description="Larger snapshots are refused."
    )


class AlarmSettings(_Section):
    """Alarm rules, SLA and delivery to the governance center and police dispatch."""

    rules: RuleSet | None = Field(
        default=None, description="Alarm rules in order (first match wins); empty = built-in."
    )
    sla: SlaPolicy | None = Field(
        default=None, description="Per-priority deadlines and escalation; empty = built-in."
    )
    escalation_check_s: float = Field(
        default=5.0, gt=0, le=600, description="How often stored SLA deadlines are checked."
    )
    sinks: list[SinkSettings] = Field(
        default_factory=list, description="Where alarm changes are delivered."
    )
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    linkage: LinkageSettings = Field(default_factory=LinkageSettings)

    @model_validator(mode="after")
    def _unique_sinks(self) -> AlarmSettings:
        names = [sink.name for sink in self.sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sink names must be unique: {', '.join(duplicates)}")
        # A delivery outliving its lease could be sent again by another dispatcher meanwhile.
        slow = sorted(s.name for s in self.sinks if s.timeout_s >= self.delivery.lease_s)
        if slow:
            raise ValueError(
                f"delivery.lease_s ({self.delivery.lease_s:g}) must exceed the timeout_s of"
                f" every sink: {', '.join(slow)}"
            )
        return self

    def rule_set(self) -> RuleSet:
        """The configured rules, or the built-in ones."""
        return self.rules or DEFAULT_RULES

    def sla_policy(self) -> SlaPolicy:
        """The configured SLA policy, or the built-in one."""
        return self.sla or DEFAULT_SLA_POLICY
