"""The hub's MQTT glue without a broker: directory lookups, health from events, unit status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.mqtt import UnitStatus
from camera_registry.events import DeviceEvent, Severity
from camera_registry.models import DeviceKind, HealthState
from hub.broadcast.service import unit_status_label
from hub.config import load_settings
from hub.devices.health_storage import StoredHealth
from hub.mqtt.health import MqttHealth, health_changes
from hub.mqtt.service import DeviceDirectory
from hub.mqtt.storage import MqttDeviceRow
from hub.storage import SQLiteStore

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _row(device_id: str, kind: str, mqtt_id: str | None = None) -> MqttDeviceRow:
    return MqttDeviceRow(device_id, kind, device_id, mqtt_id, "/150102/", ())


def _event(kind: str, at: int = 0, device: str = "btn-1", **payload: Any) -> DeviceEvent:
    return DeviceEvent(
        time=T0 + timedelta(seconds=at),
        device_id=device,
        kind=kind,
        severity=Severity.INFO,
        source="mqtt",
        payload=payload,
    )


@pytest.fixture
def directory(tmp_path: Any) -> DeviceDirectory:
    directory = DeviceDirectory(SQLiteStore(tmp_path / "unused.sqlite3"))
    directory.load(
        [
            _row("school-01-btn-1", "alarm_point", "sos-77"),
            _row("school-01-spk-1", "broadcast_unit"),
            _row("cam-001", "camera"),
            _row("bad id with spaces", "alarm_point"),
        ]
    )
    return directory


def test_devices_are_found_by_their_mqtt_id_or_their_id(directory: DeviceDirectory) -> None:
    button = directory.lookup("sos-77")
    assert button is not None
    assert (button.device_id, button.kind) == ("school-01-btn-1", DeviceKind.ALARM_POINT)
    speaker = directory.lookup("school-01-spk-1")
    assert speaker is not None and speaker.kind is DeviceKind.BROADCAST_UNIT
    # A device with an MQTT id is not reachable under its registry id on MQTT.
    assert directory.lookup("school-01-btn-1") is None
    assert directory.lookup("cam-001") is None  # cameras do not speak MQTT
    assert len(directory) == 2
    assert directory.topic_id("school-01-btn-1") == "sos-77"
    assert directory.topic_id("school-01-spk-1") == "school-01-spk-1"
    assert directory.topic_id("cam-001") is None


def test_reloading_replaces_removed_devices(directory: DeviceDirectory) -> None:
    directory.load([_row("school-01-spk-1", "broadcast_unit")])
    assert directory.lookup("sos-77") is None
    assert directory.lookup("school-01-spk-1") is not None


def test_health_follows_the_newest_evidence_per_device() -> None:
    changes = health_changes(
        [
            _event("device.online", 0, retained=False),
            _event("panic.press", 1, msg_id="a"),
            _event("device.offline", 2, reason="heartbeat_missed", last_heard="08:00"),
            _event("device.heartbeat", 1, device="spk-1", interval_s=60),
            _event("broadcast.status", 3, device="spk-1", status="fault", detail="amp"),
        ]
    )
    by_device = {c.device_id: c for c in changes}
    assert by_device["btn-1"].health == "offline"
    assert "missed heartbeats" in by_device["btn-1"].reason
    assert by_device["spk-1"].health == "degraded"
    assert "amp" in by_device["spk-1"].reason


def test_events_from_other_sources_and_kinds_prove_nothing() -> None:
    other = DeviceEvent(
        time=T0, device_id="cam-1", kind="device.online", severity=Severity.INFO, source="onvif"
    )
    assert health_changes([other, _event("panic.press", msg_id="x")]) == []


@pytest.mark.parametrize(
    ("live", "stored", "label"),
    [
        (UnitStatus.BUSY, "online", "busy"),
        (UnitStatus.IDLE, "unknown", "online"),
        (UnitStatus.FAULT, "online", "fault"),
        (UnitStatus.UNKNOWN, "degraded", "fault"),
        (UnitStatus.UNKNOWN, "offline", "offline"),
        (UnitStatus.UNKNOWN, "unknown", "unknown"),
    ],
)
def test_unit_status_prefers_what_the_unit_says_now(
    live: UnitStatus, stored: str, label: str
) -> None:
    assert unit_status_label(live, stored) == label


def test_mqtt_is_off_by_default_and_configurable_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(None).mqtt.enabled is False
    monkeypatch.setenv("GRIDWATCH_MQTT__ENABLED", "true")
    monkeypatch.setenv("GRIDWATCH_MQTT__HOST", "mosquitto")
    monkeypatch.setenv("GRIDWATCH_MQTT__PASSWORD", "s3cret")
    settings = load_settings(None)
    adapter = settings.mqtt.adapter_settings()
    assert settings.mqtt.enabled and adapter.host == "mosquitto"
    assert adapter.password is not None and adapter.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def _heard(
    health: MqttHealth,
    device: str,
    at: datetime,
    interval_s: int | None = None,
    stored: str = "online",
) -> None:
    """A batch with one heartbeat (announcing `interval_s`) or, without one, an online
    announcement of `device`, over its `stored` health."""
    payload = {"interval_s": interval_s} if interval_s is not None else {}
    kind = "device.heartbeat" if interval_s is not None else "device.online"
    events = [_event(kind, int((at - T0).total_seconds()), device, **payload)]
    health.decide(health_changes(events), {device: StoredHealth(device, stored, T0, "")}, events)


def test_liveness_reports_a_silent_device_once() -> None:
    health = MqttHealth(missed_intervals=3)
    _heard(health, "school-07-btn-1", T0, 60)
    _heard(health, "spk-3", T0)  # no interval announced: not watched
    assert health.overdue(T0 + timedelta(seconds=179)) == []
    overdue = health.overdue(T0 + timedelta(seconds=181))
    assert [o.device_id for o in overdue] == ["school-07-btn-1"]
    assert health.overdue(T0 + timedelta(seconds=400)) == []
    [event] = overdue
    assert (event.kind, event.payload["reason"]) == ("device.offline", "heartbeat_missed")
    _heard(health, "school-07-btn-1", T0 + timedelta(seconds=500), stored="offline")
    assert health.overdue(T0 + timedelta(seconds=600)) == []


def test_liveness_seeded_after_a_restart_never_overrides_fresher_evidence() -> None:
    health = MqttHealth(missed_intervals=3)
    _heard(health, "btn-heard-since", T0, 60)
    # What the store knew from before the restart: older for one, the only news for the other.
    health.seed("btn-heard-since", T0 - timedelta(hours=1), 60, HealthState.ONLINE)
    health.seed("btn-silent", T0 - timedelta(seconds=100), 60, HealthState.ONLINE)
    overdue = health.overdue(T0 + timedelta(seconds=81))
    assert [o.device_id for o in overdue] == ["btn-silent"]
    assert overdue[0].payload["last_heard"] == (T0 - timedelta(seconds=100)).isoformat()
    assert health.overdue(T0 + timedelta(seconds=181))[0].device_id == "btn-heard-since"


def test_the_grace_lets_a_late_heartbeat_after_missed_ones_count() -> None:
    """3 missed intervals plus half of one: a device heard every 20 s is offline once
    silent for 70 s, not at 60 s, and the verdict goes through the health machine."""
    health = MqttHealth(missed_intervals=3, grace_intervals=0.5)
    _heard(health, "btn-1", T0, 20)
    assert health.overdue(T0 + timedelta(seconds=69)) == []
    _heard(health, "btn-1", T0 + timedelta(seconds=69), 20)  # late, but within the grace
    assert health.overdue(T0 + timedelta(seconds=138)) == []
    [event] = health.overdue(T0 + timedelta(seconds=139))
    assert event.payload["last_heard"] == (T0 + timedelta(seconds=69)).isoformat()
    assert health.state_of("btn-1") is HealthState.OFFLINE
    # The verdict, stored by the writer, is the transition the hook records.
    [transition] = health.decide(
        health_changes([event]), {"btn-1": StoredHealth("btn-1", "online", T0, "")}, [event]
    )
    assert (transition.previous, transition.state) == (HealthState.ONLINE, HealthState.OFFLINE)
    assert transition.code == "heartbeat.missed"


def test_a_press_is_a_sign_of_life_for_the_heartbeat_clock() -> None:
    health = MqttHealth(missed_intervals=3)
    _heard(health, "btn-1", T0, 20)
    press = DeviceEvent(
        time=T0 + timedelta(seconds=50),
        device_id="btn-1",
        kind="panic.press",
        severity=Severity.CRITICAL,
        source="mqtt",
    )
    assert health.decide(health_changes([press]), {}, [press]) == []
    assert health.overdue(T0 + timedelta(seconds=100)) == []
    assert [e.device_id for e in health.overdue(T0 + timedelta(seconds=110))] == ["btn-1"]
