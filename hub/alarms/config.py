"""Configuration of the alarm engine: rules, SLA, linkage, delivery and sinks.

A sink is configuration, not code: each entry of `alarms.sinks` names a type
(webhook, cap, amqp, mqtt), where it delivers, its secrets and which alarms go
there. Secrets are `SecretStr`, never logged nor shown by `config example`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from alarms.models import AlarmCategory
from alarms.rules import DEFAULT_RULES, AlarmRule, RuleSet
from alarms.sla import DEFAULT_SLA_POLICY, SlaPolicy

__all__ = [
    "AlarmSettings",
    "DeliverySettings",
    "LinkageSettings",
    "SinkSettings",
    "SinkType",
    "merge_site_rules",
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
    cap_languages: list[str] = Field(
        default_factory=lambda: ["zh-CN", "en-US"],
        min_length=1,
        max_length=8,
        description=(
            "CAP <info> blocks (cap sinks), one per language in this order: headline, "
            "description and instruction in that language (e.g. [zh-CN] for a governance "
            "center that reads only Chinese)."
        ),
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
        for language in self.cap_languages:
            if not re.fullmatch(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*", language):
                raise ValueError(f"cap_languages: {language!r} is not a tag such as zh-CN")
        return self


class DeliverySettings(_Section):
    """The outbox dispatcher."""

    poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="Look for due rows at least this often."
    )
    lease_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="A claimed row is held this long and the lease is extended while its "
        "dispatcher lives; a row whose dispatcher died is taken by another node after it.",
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


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` laid over it; nested mappings merge, anything else replaces."""
    merged = dict(base)
    for key, value in changes.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _merged(below, value)
        else:
            merged[key] = value
    return merged


def _rule_problem(index: int, name: object, error: ValidationError) -> str:
    where = [".".join(str(part) for part in item["loc"]) for item in error.errors()]
    messages = [item["msg"] for item in error.errors(include_url=False)]
    details = "; ".join(f"{w}: {m}" if w else m for w, m in zip(where, messages, strict=True))
    return f"rule {index} ({name!r}): {details}"


def merge_site_rules(
    entries: Sequence[Mapping[str, Any]], *, builtin: RuleSet = DEFAULT_RULES
) -> RuleSet:
    """The built-in rules with a site's rules applied by name.

    An entry named like a built-in rule changes only the fields it gives (nested
    `match` and `linkage` fields merge; lists replace), in the built-in's place in
    the order. Any other entry is a complete new rule; new rules are tried before
    the built-in ones, in the order given, so a site's more specific rule wins.
    Raises ValueError listing every entry that does not make a valid rule.
    """
    by_name = {rule.name: rule for rule in builtin.rules}
    changed: dict[str, AlarmRule] = {}
    added: list[AlarmRule] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = entry.get("name")
        if not isinstance(name, str):
            problems.append(f"rule {index}: every rule needs a name")
            continue
        if name in seen:
            problems.append(f"rule {index} ({name!r}): the name is used twice")
            continue
        seen.add(name)
        known = by_name.get(name)
        fields = _merged(known.model_dump(), entry) if known is not None else dict(entry)
        try:
            rule = AlarmRule.model_validate(fields)
        except ValidationError as exc:
            problems.append(_rule_problem(index, name, exc))
            continue
        if known is not None:
            changed[name] = rule
        else:
            added.append(rule)
    if problems:
        raise ValueError("; ".join(problems))
    return RuleSet(rules=[*added, *(changed.get(rule.name, rule) for rule in builtin.rules)])


class AlarmSettings(_Section):
    """Alarm rules, SLA and delivery to the governance center and police dispatch."""

    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Site rules by name: an entry named like a built-in rule changes the "
        "fields it gives (enabled: false turns it off); other entries are new rules, tried "
        "before the built-in ones (first match wins). See docs/alarms.md.",
    )
    builtin_rules: bool = Field(
        default=True,
        description="false: only the rules listed under alarms.rules apply, no built-in ones.",
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
    _rule_set: RuleSet = PrivateAttr(default=DEFAULT_RULES)

    @field_validator("rules", mode="before")
    @classmethod
    def _rule_list(cls, value: object) -> object:
        # A mapping with a `rules` list (the shape of a rule set) is the same list.
        if isinstance(value, Mapping) and set(value) == {"rules"}:
            return value["rules"]
        return value

    @model_validator(mode="after")
    def _build_rules(self) -> AlarmSettings:
        base = DEFAULT_RULES if self.builtin_rules else RuleSet(rules=[])
        if not self.builtin_rules and not self.rules:
            raise ValueError("builtin_rules: false needs at least one rule under alarms.rules")
        self._rule_set = merge_site_rules(self.rules, builtin=base) if self.rules else base
        return self

    @model_validator(mode="after")
    def _unique_sinks(self) -> AlarmSettings:
        names = [sink.name for sink in self.sinks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"sink names must be unique: {', '.join(duplicates)}")
        return self

    def rule_set(self) -> RuleSet:
        """The built-in rules with the site's rules applied (see `merge_site_rules`)."""
        return self._rule_set

    def sla_policy(self) -> SlaPolicy:
        """The configured SLA policy, or the built-in one."""
        return self.sla or DEFAULT_SLA_POLICY
