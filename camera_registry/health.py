"""A device's health state machine: evidence in, transitions with reasons out. No I/O.

States (`HealthState`):

- `unknown`  after start-up, until the first conclusive evidence;
- `online`   reachable and its picture (if judged) is fine;
- `degraded` reachable but with a quality fault (blur, frozen, occlusion, ...);
- `offline`  only after `failures_to_offline` consecutive failures, or
  `missed_heartbeats_to_offline` heartbeat intervals (plus `heartbeat_grace_intervals`
  of one) with no evidence at all.

A single lost probe never takes a device offline (no flapping); while the
failures are counting up the device keeps its state, and `suspect` says so.
Time is always passed in: the tracker never reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from camera_registry.events import DeviceEvent, Severity, validate_device_id
from camera_registry.models import HealthState

__all__ = [
    "CONCLUSIVE",
    "HEALTH_EVENT_PREFIX",
    "Evidence",
    "HealthPolicy",
    "HealthStatus",
    "HealthTracker",
    "Transition",
    "silence_limit_s",
    "transition_event",
]

#: Every device kind announces its health changes as `health.<state>` events
#: (`health.offline`, `health.online`, `health.degraded`): the alarm rules match
#: these, whichever protocol proved the change.
HEALTH_EVENT_PREFIX = "health."

logger = logging.getLogger(__name__)


class HealthPolicy(BaseModel):
    """How much evidence moves a device between states."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failures_to_offline: int = Field(
        3,
        ge=1,
        le=100,
        title="Failures to offline",
        description="Consecutive failed probes before a device is declared offline.",
    )
    faults_to_degrade: int = Field(
        1,
        ge=1,
        le=100,
        title="Faults to degrade",
        description="Consecutive probes with a quality fault before a device is degraded.",
    )
    heartbeat_interval_s: float | None = Field(
        None,
        gt=0,
        title="Heartbeat interval (s)",
        description="How often the device reports by itself; None if it never does.",
    )
    missed_heartbeats_to_offline: int = Field(
        3,
        ge=1,
        le=100,
        title="Missed heartbeats to offline",
        description="Heartbeat intervals without any evidence before the device is offline.",
    )
    heartbeat_grace_intervals: float = Field(
        0.0,
        ge=0,
        le=5,
        title="Heartbeat grace (intervals)",
        description=(
            "Further fraction of an interval a device may be late before the last missed "
            "heartbeat counts (3 missed + 0.5 at 20 s: offline 70 s after last heard)."
        ),
    )

    def silence_limit_s(self) -> float | None:
        """How long the device may stay silent before it is offline (None: no heartbeat)."""
        if self.heartbeat_interval_s is None:
            return None
        return silence_limit_s(
            self.heartbeat_interval_s,
            self.missed_heartbeats_to_offline,
            self.heartbeat_grace_intervals,
        )


def silence_limit_s(interval_s: float, missed_intervals: int, grace_intervals: float) -> float:
    """How long a device announcing heartbeats every `interval_s` may stay silent before
    it is offline: `missed_intervals` whole intervals plus `grace_intervals` of one, so
    the last of the missed heartbeats counts as missed only when it is clearly late (a
    heartbeat delayed after two lost ones is not an outage)."""
    return interval_s * (missed_intervals + grace_intervals)


#: For evidence that is already conclusive (a broker's last will, a device's own
#: status, a heartbeat watcher's verdict): one observation moves the state.
CONCLUSIVE = HealthPolicy(failures_to_offline=1, faults_to_degrade=1)

_EVENT_SEVERITY = {
    HealthState.OFFLINE: Severity.MAJOR,
    HealthState.DEGRADED: Severity.WARNING,
    HealthState.ONLINE: Severity.INFO,
}


def _require_utc(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() != timedelta(0):
        raise ValueError("health times must be timezone-aware UTC")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one probe, heartbeat or device message said about a device.

    `observed` is ONLINE (all good), DEGRADED (reachable, quality fault) or
    OFFLINE (a failed attempt); `reason` is the sentence a maintainer reads;
    `source` names who saw it (`rtsp_probe`, `mqtt_heartbeat`, `onvif`).
    `details["code"]` and `details["params"]`, when given, are the reason as a
    code with parameters (`vqd.blur`, `{"score": ...}`) that a console renders
    in its own language; transitions carry them on.
    """

    observed: HealthState
    reason: str
    source: str = "probe"
    faults: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        observed = HealthState(self.observed)
        if observed is HealthState.UNKNOWN:
            raise ValueError("evidence cannot observe 'unknown'")
        if not self.reason or len(self.reason) > 500:
            raise ValueError("evidence needs a reason of 1..500 characters")
        if not self.source or len(self.source) > 32:
            raise ValueError("evidence source must be 1..32 characters")
        if self.faults and observed is not HealthState.DEGRADED:
            raise ValueError("only DEGRADED evidence carries faults")
        object.__setattr__(self, "observed", observed)
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))


@dataclass(frozen=True, slots=True)
class Transition:
    """A device changed state at `at`, because of `reason` (stored as history)."""

    device_id: str
    previous: HealthState
    state: HealthState
    at: datetime
    reason: str
    evidence: Evidence | None = None
    #: The reason as a code with parameters (see `Evidence`), when known.
    code: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_device_id(self.device_id)
        _require_utc(self.at)
        if self.previous is self.state:
            raise ValueError("a transition must change the state")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """The tracker's current view of a device, for the registry list."""

    device_id: str
    state: HealthState
    since: datetime
    reason: str
    last_evidence_at: datetime | None
    consecutive_failures: int
    consecutive_faults: int

    @property
    def suspect(self) -> bool:
        """True while failures are counting up but have not yet reached offline."""
        return self.state is not HealthState.OFFLINE and self.consecutive_failures > 0


class HealthTracker:
    """The health state machine of one device."""

    def __init__(self, device_id: str, policy: HealthPolicy, started_at: datetime) -> None:
        validate_device_id(device_id)
        _require_utc(started_at)
        self.device_id = device_id
        self.policy = policy
        self._state = HealthState.UNKNOWN
        self._since = started_at
        self._reason = "no evidence since start-up"
        self._started_at = started_at
        self._last_at: datetime | None = None
        self._failures = 0
        self._faults = 0

    @classmethod
    def resume(
        cls,
        device_id: str,
        policy: HealthPolicy,
        state: HealthState,
        since: datetime,
        reason: str = "stored state",
    ) -> HealthTracker:
        """A tracker that continues from a stored state (entered at `since`);
        evidence older than `since` is then ignored."""
        tracker = cls(device_id, policy, since)
        tracker._state = HealthState(state)
        tracker._reason = reason
        tracker._last_at = since
        return tracker

    @property
    def state(self) -> HealthState:
        """The current state."""
        return self._state

    def status(self) -> HealthStatus:
        """A snapshot of the current state, since when and why."""
        return HealthStatus(
            device_id=self.device_id,
            state=self._state,
            since=self._since,
            reason=self._reason,
            last_evidence_at=self._last_at,
            consecutive_failures=self._failures,
            consecutive_faults=self._faults,
        )

    def observe(
        self, observed: HealthState, evidence: Evidence | str, at: datetime
    ) -> Transition | None:
        """Take one piece of evidence at `at`; return the transition it causes, if any.

        `evidence` may be a plain reason string. Evidence older than the last
        one taken is ignored (it arrived late and says nothing about now).
        """
        _require_utc(at)
        if isinstance(evidence, str):
            evidence = Evidence(observed=observed, reason=evidence)
        elif evidence.observed is not HealthState(observed):
            raise ValueError("observed state and evidence disagree")
        if self._last_at is not None and at < self._last_at:
            logger.debug("device %s: evidence from %s is older than the last", self.device_id, at)
            return None
        self._last_at = at

        target: HealthState | None
        if evidence.observed is HealthState.OFFLINE:
            self._failures += 1
            self._faults = 0
            target = None
            if self._failures >= self.policy.failures_to_offline:
                target = HealthState.OFFLINE
                reason = (
                    f"{self._failures} consecutive failures, last: {evidence.reason}"
                    if self._failures > 1
                    else evidence.reason
                )
        elif evidence.observed is HealthState.DEGRADED:
            self._failures = 0
            self._faults += 1
            reason = evidence.reason
            if self._faults >= self.policy.faults_to_degrade:
                target = HealthState.DEGRADED
            elif self._state in (HealthState.UNKNOWN, HealthState.OFFLINE):
                # It answers, so it is not offline; the fault is not confirmed yet.
                target = HealthState.ONLINE
                reason = f"reachable again ({evidence.reason}, not yet confirmed)"
            else:
                target = None
        else:
            self._failures = 0
            self._faults = 0
            target = HealthState.ONLINE
            reason = evidence.reason
        if target is None or target is self._state:
            return None
        code, params = _coded(evidence)
        if code is not None and target is HealthState.OFFLINE and self._failures > 1:
            params = {**params, "failures": self._failures}
        elif code is not None and target is not evidence.observed:
            code, params = "health.reachable_unconfirmed", {"code": code, **params}
        return self._move(target, at, reason, evidence, code, params)

    def heard(self, at: datetime) -> None:
        """Take a sign of life that proves no state (a press, a command ack): the
        heartbeat silence counts from `at` on."""
        _require_utc(at)
        if self._last_at is None or at > self._last_at:
            self._last_at = at

    def check_heartbeat(self, at: datetime) -> Transition | None:
        """Declare the device offline when it has been silent too long at `at`.

        Silence counts from the last evidence, or from start-up if none came.
        Does nothing without a `heartbeat_interval_s` in the policy.
        """
        _require_utc(at)
        interval = self.policy.heartbeat_interval_s
        limit = self.policy.silence_limit_s()
        if interval is None or limit is None or self._state is HealthState.OFFLINE:
            return None
        last = self._last_at or self._started_at
        silent = (at - last).total_seconds()
        if silent < limit:
            return None
        missed = int(silent // interval)
        reason = f"silent for {silent:.0f} s: {missed} heartbeats of {interval:g} s missed"
        params = {"silent_s": round(silent), "missed": missed, "interval_s": interval}
        return self._move(HealthState.OFFLINE, at, reason, None, "heartbeat.silent", params)

    def _move(
        self,
        state: HealthState,
        at: datetime,
        reason: str,
        evidence: Evidence | None,
        code: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Transition:
        transition = Transition(
            self.device_id, self._state, state, at, reason, evidence, code, params or {}
        )
        logger.info(
            "device %s: %s -> %s: %s", self.device_id, self._state.value, state.value, reason
        )
        self._state, self._since, self._reason = state, at, reason
        return transition


def _coded(evidence: Evidence) -> tuple[str | None, dict[str, Any]]:
    code = evidence.details.get("code")
    if not isinstance(code, str) or not code:
        return None, {}
    params = evidence.details.get("params")
    return code, dict(params) if isinstance(params, Mapping) else {}


def transition_event(
    transition: Transition, source: str, payload: Mapping[str, Any] | None = None
) -> DeviceEvent:
    """The `health.<state>` event announcing `transition` (for the alarm rules and the
    event stream); `payload` adds to the from/to/reason fields."""
    return DeviceEvent(
        time=transition.at,
        device_id=transition.device_id,
        kind=f"{HEALTH_EVENT_PREFIX}{transition.state.value}",
        severity=_EVENT_SEVERITY.get(transition.state, Severity.INFO),
        source=source,
        payload={
            "from": transition.previous.value,
            "to": transition.state.value,
            "reason": transition.reason,
            **({"reason_code": transition.code} if transition.code else {}),
            **(payload or {}),
        },
    )
