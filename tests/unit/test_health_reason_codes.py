"""Health reasons as codes with parameters, carried from evidence to transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from camera_registry.health import (
    CONCLUSIVE,
    Evidence,
    HealthPolicy,
    HealthTracker,
    transition_event,
)
from camera_registry.models import HealthState
from hub.devices.health_storage import StoredHealth
from hub.mqtt.health import HealthChange, MqttHealth

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _offline(error: str) -> Evidence:
    return Evidence(
        HealthState.OFFLINE,
        f"timeout: {error}",
        details={"code": "probe.timeout", "params": {"error": error}},
    )


def test_a_transition_carries_its_evidence_code_and_the_failure_count() -> None:
    tracker = HealthTracker("cam-1", HealthPolicy(failures_to_offline=3), T0)
    for n in range(2):
        assert (
            tracker.observe(HealthState.OFFLINE, _offline("5 s"), T0 + timedelta(minutes=n)) is None
        )
    transition = tracker.observe(HealthState.OFFLINE, _offline("5 s"), T0 + timedelta(minutes=2))
    assert transition is not None
    assert transition.code == "probe.timeout"
    assert dict(transition.params) == {"error": "5 s", "failures": 3}
    assert transition_event(transition, "patrol").payload["reason_code"] == "probe.timeout"


def test_silence_and_unconfirmed_recovery_have_codes_of_their_own() -> None:
    tracker = HealthTracker(
        "btn-1", HealthPolicy(heartbeat_interval_s=20, missed_heartbeats_to_offline=3), T0
    )
    silent = tracker.check_heartbeat(T0 + timedelta(seconds=61))
    assert silent is not None and silent.code == "heartbeat.silent"
    assert dict(silent.params) == {"silent_s": 61, "missed": 3, "interval_s": 20}
    blur = Evidence(
        HealthState.DEGRADED,
        "blurred",
        faults=("blur",),
        details={"code": "vqd.blur", "params": {"faults": "blur", "count": 1}},
    )
    two_faults = HealthTracker("cam-2", HealthPolicy(faults_to_degrade=2), T0)
    back = two_faults.observe(HealthState.DEGRADED, blur, T0)
    assert back is not None and back.state is HealthState.ONLINE
    assert back.code == "health.reachable_unconfirmed" and back.params["code"] == "vqd.blur"


def test_evidence_without_a_code_gives_a_plain_transition() -> None:
    tracker = HealthTracker("cam-3", CONCLUSIVE, T0)
    transition = tracker.observe(HealthState.ONLINE, "fine", T0)
    assert transition is not None and transition.code is None and dict(transition.params) == {}


def test_mqtt_health_changes_keep_their_codes() -> None:
    stored = {"btn-1": StoredHealth("btn-1", "online", T0, "MQTT heartbeat")}
    change = HealthChange(
        "btn-1",
        "offline",
        T0 + timedelta(seconds=70),
        "missed heartbeats over MQTT",
        "heartbeat.missed",
        {"last_heard": T0.isoformat()},
    )
    [transition] = MqttHealth(missed_intervals=3).decide([change], stored)
    assert transition.code == "heartbeat.missed"
    assert dict(transition.params) == {"last_heard": T0.isoformat()}
