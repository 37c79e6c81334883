"""Alarm rules: which device events open, repeat or auto-close which alarms.

Rules are configuration (pydantic models, loadable from YAML) and `evaluate`
is a pure function: given one event, the device it came from, the open alarms
by dedup key, the rules and the current time, it returns the decisions the
caller stores in one transaction.

Semantics worth knowing:

* Rules are tried in order; the **first** enabled rule whose `match` fits an
  event opens or repeats the alarm. Auto-close is checked on every rule.
* A repeat of an active alarm (same dedup key) updates that alarm (count + 1,
  last seen) instead of opening another. Within the dedup window the repeat is
  recorded quietly (`notify=False`); after a quiet spell longer than the window
  it is announced again. A P1 repeat is always announced: P1 is never delayed
  or grouped.
* A retained MQTT message (payload `retained: true`) never opens a new alarm;
  it may still repeat an active one or auto-close.
* Drill events (payload `drill: true`) open alarms flagged `is_drill`, under a
  separate dedup key (`drill:` prefix) so a drill never merges with a real alarm.
* Alarm ids are derived from the event id and rule name, so evaluating the same
  event twice yields the same alarm id, which storage dedup absorbs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from alarms.decisions import (
    CloseAlarm,
    Decision,
    DeviceContext,
    LinkagePlan,
    OpenAlarm,
    UpdateAlarm,
)
from alarms.models import (
    ACTIVE_STATES,
    Alarm,
    AlarmAction,
    AlarmCategory,
    AlarmState,
    Priority,
    require_utc,
)
from alarms.rule_templates import _check_template, render_template
from alarms.sla import DEFAULT_SLA_POLICY, SlaPolicy, deadlines_for
from alarms.texts import LANGUAGE_PATTERN, kind_name
from alarms.workflow import apply, open_alarm
from camera_registry.events import DeviceEvent

if TYPE_CHECKING:
    from alarms.builtin_rules import DEFAULT_RULES

__all__ = [
    "DEFAULT_RULES",
    "AlarmRule",
    "BroadcastAction",
    "CloseAlarm",
    "Decision",
    "DeviceContext",
    "EventMatch",
    "LinkageConfig",
    "LinkagePlan",
    "OpenAlarm",
    "RuleSet",
    "UpdateAlarm",
    "dedup_key_for",
    "evaluate",
    "match_rule",
    "render_template",
    "repeat",
]

logger = logging.getLogger(__name__)

#: Namespace for alarm ids derived from (event id, rule name).
ALARM_ID_NAMESPACE = uuid.UUID("6f1c2a9e-4d3b-5e8a-9c7d-2b1e0f3a4c5d")
_NAME_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"
_GLOB_PATTERN = r"^[a-z0-9_.*?\[\]!]+$"
_MAX_TITLE = 500
_MAX_KEY = 200
_AUTO_CLOSE_FROM = ACTIVE_STATES | {AlarmState.RESOLVED}

PayloadValue = bool | int | float | str


class EventMatch(BaseModel):
    """Which events a rule applies to. Empty lists mean "any"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kinds: list[str] = Field(
        min_length=1,
        description="Event kinds, shell-style globs allowed (`onvif.*`, `vqd.*`).",
    )
    exclude_kinds: list[str] = Field(
        default_factory=list, description="Event kinds (globs) that never match this rule."
    )
    device_kinds: list[str] = Field(
        default_factory=list, description="Only devices of these kinds (e.g. camera, panic)."
    )
    projects: list[str] = Field(
        default_factory=list, description="Only devices of these projects (e.g. sharp_eyes)."
    )
    device_ids: list[str] = Field(default_factory=list, description="Only these devices.")
    payload_equals: dict[str, PayloadValue] = Field(
        default_factory=dict,
        description="Payload fields that must equal these values exactly (type included).",
    )

    @field_validator("kinds", "exclude_kinds")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not re.fullmatch(_GLOB_PATTERN, glob):
                raise ValueError(f"invalid event kind pattern {glob!r}")
        return value

    def matches(self, event: DeviceEvent, device: DeviceContext | None) -> bool:
        """True if `event` from `device` falls under this rule."""
        if not any(fnmatch.fnmatchcase(event.kind, glob) for glob in self.kinds):
            return False
        if any(fnmatch.fnmatchcase(event.kind, glob) for glob in self.exclude_kinds):
            return False
        return self.matches_beyond_kind(event, device)

    def matches_beyond_kind(self, event: DeviceEvent, device: DeviceContext | None) -> bool:
        """True if `event` from `device` passes the device and payload conditions."""
        if self.device_ids and event.device_id not in self.device_ids:
            return False
        if self.device_kinds and (device is None or device.kind not in self.device_kinds):
            return False
        if self.projects and (device is None or device.project not in self.projects):
            return False
        if not self.payload_equals:
            return True
        return all(
            _same_value(event.payload.get(key), expected)
            for key, expected in self.payload_equals.items()
        )


def _same_value(actual: object, expected: PayloadValue) -> bool:
    # True == 1 in Python; a rule asking for `true` must not match the number 1.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return actual == expected


class BroadcastAction(BaseModel):
    """Play a message on speakers when the alarm opens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(
        min_length=1,
        max_length=500,
        description="Text to speak (TTS); placeholders like the title are allowed.",
    )
    linked_speakers: bool = Field(
        default=True, description="Use the speakers linked to the device in the registry."
    )
    speakers: list[str] = Field(
        default_factory=list, description="Further speaker device ids to broadcast on."
    )
    volume: int | None = Field(
        default=None, ge=0, le=100, description="Volume in percent; empty keeps the unit's."
    )

    @field_validator("message")
    @classmethod
    def _message_template(cls, value: str) -> str:
        return _check_template(value)


class LinkageConfig(BaseModel):
    """What runs when an alarm opens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_device: bool = Field(
        default=False, description="Take a snapshot from the device itself (it is a camera)."
    )
    snapshot_linked_cameras: bool = Field(
        default=True, description="Take snapshots from the cameras linked to the device."
    )
    broadcast: BroadcastAction | None = Field(
        default=None, description="Broadcast a message to speakers; empty means none."
    )


class AlarmRule(BaseModel):
    """One rule: matching events -> an alarm of this type, priority and SOP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, max_length=64, description="Unique rule name.")
    enabled: bool = Field(default=True, description="Disabled rules are skipped.")
    match: EventMatch = Field(description="Which events this rule applies to.")
    type: str = Field(
        pattern=_NAME_PATTERN, max_length=64, description="Alarm type, e.g. panic, intrusion."
    )
    priority: int = Field(ge=1, le=4, description="Priority 1..4, 1 the most urgent.")
    category: AlarmCategory = Field(description="security, emergency or maintenance.")
    title: str = Field(
        min_length=1,
        max_length=_MAX_TITLE,
        description="Title template, e.g. 'Panic alarm at {device_name}'.",
    )
    sop: str = Field(
        default="", max_length=4000, description="What the operator must do (shown as is)."
    )
    title_i18n: dict[str, str] = Field(
        default_factory=dict,
        description="Title templates per language (BCP 47 tag -> template, e.g. zh-CN); "
        "`title` stands in for a language without one.",
    )
    sop_i18n: dict[str, str] = Field(
        default_factory=dict,
        description="SOP texts per language (placeholders as in the title); "
        "`sop` stands in for a language without one.",
    )
    dedup_key: str = Field(
        default="{type}:{device_id}",
        min_length=1,
        max_length=_MAX_KEY,
        description="Template of the key that makes repeats update one open alarm.",
    )
    dedup_window: timedelta = Field(
        default=timedelta(minutes=10),
        ge=timedelta(0),
        description="Repeats within this time of the last one are recorded without "
        "a new notification (P1 is always notified).",
    )
    auto_close_on: list[str] = Field(
        default_factory=list,
        description="Event kinds (globs) that close this rule's open maintenance "
        "alarms on the same device, e.g. health.online.",
    )
    linkage: LinkageConfig = Field(
        default_factory=LinkageConfig, description="Actions run when the alarm opens."
    )

    @field_validator("title", "dedup_key")
    @classmethod
    def _templates(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("title_i18n", "sop_i18n")
    @classmethod
    def _language_templates(cls, value: dict[str, str]) -> dict[str, str]:
        for language, template in value.items():
            if not re.fullmatch(LANGUAGE_PATTERN, language):
                raise ValueError(f"{language!r} is not a language tag such as zh-CN or en")
            if not template.strip() or len(template) > 4000:
                raise ValueError(f"the {language} template must have 1..4000 characters")
            _check_template(template)
        return value

    def texts(
        self, values: Mapping[str, str], payload: Mapping[str, Any]
    ) -> dict[str, dict[str, str]]:
        """Title and SOP rendered in every language the rule has templates for."""
        rendered: dict[str, dict[str, str]] = {}
        for language in sorted(self.title_i18n.keys() | self.sop_i18n.keys()):
            local = {**values, "kind_name": kind_name(values.get("kind", ""), language)}
            title = self.title_i18n.get(language, self.title)
            sop = self.sop_i18n.get(language, self.sop)
            rendered[language] = {
                "title": render_template(title, local, payload)[:_MAX_TITLE].strip(),
                "sop": render_template(sop, local, payload),
            }
        return rendered

    @field_validator("auto_close_on")
    @classmethod
    def _auto_close_globs(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not re.fullmatch(_GLOB_PATTERN, glob):
                raise ValueError(f"invalid event kind pattern {glob!r}")
        return value

    @model_validator(mode="after")
    def _auto_close_only_maintenance(self) -> AlarmRule:
        if self.auto_close_on and self.category is not AlarmCategory.MAINTENANCE:
            raise ValueError(
                "auto_close_on is only for maintenance rules; security and emergency "
                "alarms are always closed by a person"
            )
        return self

    def closes_on(self, kind: str) -> bool:
        """True if an event of `kind` closes this rule's open alarms."""
        return any(fnmatch.fnmatchcase(kind, glob) for glob in self.auto_close_on)


class RuleSet(BaseModel):
    """An ordered list of rules; the first match wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[AlarmRule] = Field(description="Rules in the order they are tried.")
    _same_match: dict[str, bool] = PrivateAttr(default_factory=dict)
    _by_kind: dict[str, tuple[tuple[AlarmRule, ...], tuple[AlarmRule, ...]]] = PrivateAttr(
        default_factory=dict
    )

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: list[AlarmRule]) -> list[AlarmRule]:
        seen: set[str] = set()
        for rule in value:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return value

    def __eq__(self, other: object) -> bool:
        # The kind index is a cache, not part of what the rule set says.
        if isinstance(other, RuleSet):
            return self.rules == other.rules
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # lists inside: never hashable

    def same_match_per_device(self, kind: str) -> bool:
        """True when which rule an event of `kind` matches, and its dedup key, depend
        only on its device and drill flag (no payload conditions, no payload fields
        in the key) and no rule auto-closes on `kind`: then a batch can match once
        per device and reuse it for the device's further events of that kind."""
        found = self._same_match.get(kind)
        if found is None:
            candidates, closing = self.for_kind(kind)
            found = not closing and all(
                not rule.match.payload_equals and "{payload" not in rule.dedup_key
                for rule in candidates
            )
            if len(self._same_match) < _KIND_INDEX_LIMIT:
                self._same_match[kind] = found
        return found

    def for_kind(self, kind: str) -> tuple[tuple[AlarmRule, ...], tuple[AlarmRule, ...]]:
        """The enabled rules whose kind globs take `kind` (in order), and those an
        event of `kind` auto-closes; worked out once per kind (the rules are frozen)."""
        found = self._by_kind.get(kind)
        if found is None:
            found = _rules_for_kind(self.rules, kind)
            if len(self._by_kind) < _KIND_INDEX_LIMIT:
                self._by_kind[kind] = found
        return found


#: Kinds remembered per rule set (event kinds are few; a flood of odd ones is not kept).
_KIND_INDEX_LIMIT = 4096


def _kind_matches(globs: Sequence[str], kind: str) -> bool:
    return any(fnmatch.fnmatchcase(kind, glob) for glob in globs)


def _rules_for_kind(
    rules: Sequence[AlarmRule], kind: str
) -> tuple[tuple[AlarmRule, ...], tuple[AlarmRule, ...]]:
    candidates = tuple(
        rule
        for rule in rules
        if rule.enabled
        and _kind_matches(rule.match.kinds, kind)
        and not _kind_matches(rule.match.exclude_kinds, kind)
    )
    closing = tuple(rule for rule in rules if rule.enabled and rule.closes_on(kind))
    return candidates, closing


def _dedupe(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _linkage(
    rule: AlarmRule, event: DeviceEvent, device: DeviceContext | None, text: str
) -> LinkagePlan:
    cameras: list[str] = []
    if rule.linkage.snapshot_device:
        cameras.append(event.device_id)
    if rule.linkage.snapshot_linked_cameras and device is not None:
        cameras.extend(device.linked_cameras)
    broadcast = rule.linkage.broadcast
    if broadcast is None:
        return LinkagePlan(snapshot_cameras=_dedupe(cameras))
    speakers = list(broadcast.speakers)
    if broadcast.linked_speakers and device is not None:
        speakers.extend(device.linked_speakers)
    return LinkagePlan(
        snapshot_cameras=_dedupe(cameras),
        broadcast_speakers=_dedupe(speakers),
        broadcast_message=text if speakers else None,
        broadcast_volume=broadcast.volume if speakers else None,
    )


#: How `{priority}` renders, per level.
_PRIORITY_TEXT = {
    level: str(Priority(level)) for level in range(Priority.HIGHEST, Priority.LOWEST + 1)
}


def _bounded_key(key: str) -> str:
    if len(key) <= _MAX_KEY:
        return key
    # Keep long keys unique but storable: a readable prefix plus a digest of the rest.
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: _MAX_KEY - 17]}#{digest}"


def _event_details(event: DeviceEvent, rule: AlarmRule | None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "event_id": str(event.event_id),
        "event_kind": event.kind,
        "event_time": event.time.isoformat(),
        "event_source": event.source,
    }
    if rule is not None:
        details["rule"] = rule.name
    return details


def _for_kind(
    rules: RuleSet | Sequence[AlarmRule], kind: str
) -> tuple[tuple[AlarmRule, ...], tuple[AlarmRule, ...]]:
    """The rules that may match events of `kind`, and those such events auto-close."""
    if isinstance(rules, RuleSet):
        return rules.for_kind(kind)
    return _rules_for_kind(rules, kind)


def _auto_closes(
    event: DeviceEvent,
    open_alarms: Mapping[str, Alarm],
    closing: Sequence[AlarmRule],
    now: datetime,
) -> list[CloseAlarm]:
    if not closing:
        return []
    types = {rule.type for rule in closing}
    decisions: list[CloseAlarm] = []
    for alarm in open_alarms.values():
        if (
            alarm.device_id != event.device_id
            or alarm.type not in types
            or alarm.category is not AlarmCategory.MAINTENANCE
            or alarm.state not in _AUTO_CLOSE_FROM
        ):
            continue
        closed, entry = apply(
            alarm,
            AlarmAction.AUTO_CLOSE,
            "system",
            now,
            note=f"auto-closed: device recovered ({event.kind})",
            details=_event_details(event, None),
        )
        decisions.append(CloseAlarm(closed, entry))
    return decisions


def _match(
    event: DeviceEvent, device: DeviceContext | None, candidates: Sequence[AlarmRule]
) -> tuple[AlarmRule, dict[str, str], str] | None:
    """The first matching rule among the kind's `candidates`, its template values and
    the event's dedup key."""
    rule = next(
        (rule for rule in candidates if rule.match.matches_beyond_kind(event, device)), None
    )
    if rule is None:
        return None
    values = {
        "type": rule.type,
        "device_id": event.device_id,
        "device_name": (device.name if device and device.name else event.device_id),
        "kind": event.kind,
        "kind_name": kind_name(event.kind, "en"),
        "project": (device.project or "") if device else "",
        "jurisdiction": (device.jurisdiction or "") if device else "",
        "priority": _PRIORITY_TEXT[rule.priority],
    }
    key = render_template(rule.dedup_key, values, event.payload)
    is_drill = event.payload.get("drill") is True
    return rule, values, _bounded_key(f"drill:{key}" if is_drill else key)


def match_rule(
    event: DeviceEvent, device: DeviceContext | None, rules: RuleSet
) -> tuple[AlarmRule, str] | None:
    """The rule `evaluate` matches `event` with and the event's dedup key (None when
    no rule matches it)."""
    matched = _match(event, device, rules.for_kind(event.kind)[0])
    return None if matched is None else (matched[0], matched[2])


def repeat(
    alarm: Alarm, event: DeviceEvent, rule: AlarmRule, now: datetime, *, revision: int
) -> UpdateAlarm:
    """What `evaluate` decides for `event` repeating the active `alarm` its rule keys
    it to, as revision `revision` (the number of a revision the batch already makes)."""
    quiet = now - alarm.last_seen_at > rule.dedup_window
    repeated, entry = apply(
        alarm,
        AlarmAction.REPEAT,
        "rules",
        now,
        details=_event_details(event, rule),
        revision=revision,
    )
    return UpdateAlarm(repeated, entry, notify=alarm.priority.is_highest or quiet)


def dedup_key_for(
    event: DeviceEvent, device: DeviceContext | None, rules: RuleSet | Sequence[AlarmRule]
) -> str | None:
    """The dedup key `evaluate` gives `event` (None when no rule matches it).

    A caller evaluating a batch reads the open alarms of these keys up front: a
    key template without `{device_id}` groups several devices under one alarm.
    """
    matched = _match(event, device, _for_kind(rules, event.kind)[0])
    return None if matched is None else matched[2]


def evaluate(
    event: DeviceEvent,
    device: DeviceContext | None,
    open_alarms: Mapping[str, Alarm],
    rules: RuleSet | Sequence[AlarmRule],
    now: datetime,
    *,
    sla: SlaPolicy = DEFAULT_SLA_POLICY,
) -> list[Decision]:
    """Decide what `event` does to alarms: open, repeat, or auto-close.

    `open_alarms` maps dedup key -> the current alarm for that key (pass at
    least the device's active and resolved alarms). Auto-close decisions come
    first, then at most one open or repeat decision.
    """
    require_utc(now, "now")
    candidates, closing = _for_kind(rules, event.kind)
    decisions: list[Decision] = list(_auto_closes(event, open_alarms, closing, now))
    closed_ids = {decision.alarm.id for decision in decisions}

    matched = _match(event, device, candidates)
    if matched is None:
        logger.debug("no alarm rule for event", extra={"kind": event.kind})
        return decisions
    rule, values, dedup_key = matched

    existing = open_alarms.get(dedup_key)
    if existing is not None and existing.is_active and existing.id not in closed_ids:
        decisions.append(repeat(existing, event, rule, now, revision=existing.revision + 1))
        return decisions

    if event.payload.get("retained") is True:
        # A retained MQTT message is the broker replaying old state on reconnect.
        logger.info(
            "retained message does not open an alarm",
            extra={"device_id": event.device_id, "kind": event.kind},
        )
        return decisions

    priority = Priority(rule.priority)
    is_drill = event.payload.get("drill") is True
    title = render_template(rule.title, values, event.payload)[:_MAX_TITLE].strip()
    deadlines = deadlines_for(priority, now, sla)
    alarm, entry = open_alarm(
        alarm_id=uuid.uuid5(ALARM_ID_NAMESPACE, f"{event.event_id}:{rule.name}"),
        type=rule.type,
        priority=priority,
        category=rule.category,
        device_id=event.device_id,
        jurisdiction=device.jurisdiction if device else None,
        title=title or rule.type,
        sop=rule.sop,
        dedup_key=dedup_key,
        at=now,
        ack_due=deadlines.ack_due,
        resolve_due=deadlines.resolve_due,
        is_drill=is_drill,
        details={
            **_event_details(event, rule),
            "severity": event.severity.value,
            **({"texts": texts} if (texts := rule.texts(values, event.payload)) else {}),
        },
    )
    message = ""
    if rule.linkage.broadcast is not None:
        message = render_template(rule.linkage.broadcast.message, values, event.payload)
    decisions.append(OpenAlarm(alarm, entry, rule.name, _linkage(rule, event, device, message)))
    return decisions


def __getattr__(name: str) -> RuleSet:
    # `DEFAULT_RULES` lives in `alarms.builtin_rules`, which is built from this
    # module's models; it is looked up lazily so either module can be imported first.
    if name == "DEFAULT_RULES":
        from alarms.builtin_rules import DEFAULT_RULES

        return DEFAULT_RULES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
