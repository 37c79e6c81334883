"""Pure MQTT decoding: topic scheme, payloads, rejections, vendor mappings, schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from adapters.mqtt.models import (
    BroadcastAction,
    BroadcastCommand,
    CommandPayload,
    DeviceInfo,
    MessageType,
    MqttSettings,
    RejectReason,
    UnitStatus,
    VendorMapping,
)
from adapters.mqtt.parsers import (
    InboundMessage,
    PointerError,
    Rejection,
    decode_message,
    encode_command,
    parse_topic,
    resolve_pointer,
    status_from_event,
    subscriptions,
    to_rejected_message,
)
from adapters.mqtt.schemagen import SCHEMA_DIR, render_schemas
from camera_registry.events import DeviceEvent, Severity
from camera_registry.models import DeviceKind

PREFIX = "gridwatch/v1"
NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
DEVICES = {
    "school-07-btn-1": DeviceInfo("school-07-btn-1", DeviceKind.ALARM_POINT),
    "spk-3": DeviceInfo("spk-3", DeviceKind.BROADCAST_UNIT),
}


def decode(
    topic: str,
    body: object,
    *,
    retained: bool = False,
    mappings: tuple[VendorMapping, ...] = (),
    at: datetime = NOW,
) -> DeviceEvent | Rejection:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode_message(
        InboundMessage(topic, payload, retained, at),
        prefix=PREFIX,
        lookup=DEVICES.get,
        max_payload_bytes=64 * 1024,
        vendor_mappings=mappings,
    )


def event_topic(device: str = "school-07-btn-1", suffix: str = "event") -> str:
    return f"{PREFIX}/{device}/{suffix}"


def press(msg_id: str = "m-1", **extra: object) -> dict[str, object]:
    return {"v": 1, "msg_id": msg_id, "type": "panic.press", **extra}


def test_committed_schema_files_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.json")}
    assert on_disk == rendered, "run: python -m adapters.mqtt.schemagen"


def test_topic_scheme() -> None:
    assert parse_topic(PREFIX, "gridwatch/v1/btn-1/event") == ("btn-1", MessageType.EVENT)
    assert parse_topic(PREFIX, "gridwatch/v1/spk/cmd/ack") == ("spk", MessageType.COMMAND_ACK)
    assert parse_topic(PREFIX, "gridwatch/v1/btn-1/cmd") is None  # hub → device
    assert parse_topic(PREFIX, "gridwatch/v1/bad id!/event") is None
    assert parse_topic(PREFIX, "other/v1/btn-1/event") is None
    assert subscriptions(PREFIX) == [
        "gridwatch/v1/+/event",
        "gridwatch/v1/+/heartbeat",
        "gridwatch/v1/+/availability",
        "gridwatch/v1/+/cmd/ack",
    ]


def test_press_is_a_critical_event_keyed_by_the_device_message_id() -> None:
    device_time = "2026-03-01T16:29:58+08:00"
    event = decode(event_topic(), press("a1b2", time=device_time))
    assert isinstance(event, DeviceEvent)
    assert (event.kind, event.severity, event.source) == ("panic.press", Severity.CRITICAL, "mqtt")
    assert event.device_id == "school-07-btn-1"
    assert event.time == NOW  # the hub's receive time; device clocks drift
    assert event.payload["device_time"] == "2026-03-01T08:29:58+00:00"
    assert event.dedup_key == "mqtt:school-07-btn-1:a1b2"
    redelivered = decode(event_topic(), press("a1b2", time=device_time), at=NOW + timedelta(1))
    assert isinstance(redelivered, DeviceEvent)
    assert redelivered.dedup_key == event.dedup_key


@pytest.mark.parametrize(
    ("event_type", "severity"),
    [
        ("panic.restore", Severity.INFO),
        ("panic.tamper", Severity.MAJOR),
        ("device.low_battery", Severity.WARNING),
    ],
)
def test_other_panic_events(event_type: str, severity: Severity) -> None:
    event = decode(event_topic(), {"v": 1, "msg_id": "x", "type": event_type, "battery": 9})
    assert isinstance(event, DeviceEvent)
    assert (event.kind, event.severity, event.payload["battery"]) == (event_type, severity, 9)


def test_broadcast_status_and_device_kind_checks() -> None:
    busy = decode(
        event_topic("spk-3"), {"v": 1, "msg_id": "s", "type": "broadcast.status", "status": "busy"}
    )
    assert isinstance(busy, DeviceEvent)
    assert status_from_event(busy) is UnitStatus.BUSY
    speaker_press = decode(event_topic("spk-3"), press())
    assert isinstance(speaker_press, Rejection)
    assert speaker_press.reason is RejectReason.WRONG_DEVICE_KIND
    no_status = decode(event_topic("spk-3"), {"v": 1, "msg_id": "s", "type": "broadcast.status"})
    assert isinstance(no_status, Rejection)
    assert no_status.reason is RejectReason.INVALID_PAYLOAD


def test_heartbeats_store_at_most_one_per_interval() -> None:
    first = decode(event_topic(suffix="heartbeat"), {"v": 1, "interval_s": 60, "battery": 80})
    again = decode(
        event_topic(suffix="heartbeat"), {"v": 1, "interval_s": 60}, at=NOW + timedelta(seconds=10)
    )
    later = decode(
        event_topic(suffix="heartbeat"), {"v": 1, "interval_s": 60}, at=NOW + timedelta(seconds=60)
    )
    assert isinstance(first, DeviceEvent)
    assert isinstance(again, DeviceEvent)
    assert isinstance(later, DeviceEvent)
    assert first.kind == "device.heartbeat"
    assert first.dedup_key == again.dedup_key != later.dedup_key


def test_availability_retained_is_accepted_as_state() -> None:
    offline = decode(
        event_topic(suffix="availability"), {"v": 1, "state": "offline"}, retained=True
    )
    assert isinstance(offline, DeviceEvent)
    assert offline.kind == "device.offline"
    assert offline.payload["retained"] is True
    assert offline.dedup_key is None
    assert status_from_event(offline) is UnitStatus.OFFLINE


@pytest.mark.parametrize("suffix", ["event", "heartbeat", "cmd/ack"])
def test_retained_messages_never_become_events(suffix: str) -> None:
    rejected = decode(event_topic(suffix=suffix), press(), retained=True)
    assert isinstance(rejected, Rejection)
    assert rejected.reason is RejectReason.RETAINED_IGNORED
    assert rejected.device_id == "school-07-btn-1"


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (event_topic(), b"{not json", RejectReason.MALFORMED_JSON),
        (event_topic(), b"\xff\xfe", RejectReason.MALFORMED_JSON),
        (event_topic(), b"[" * 5000 + b"]" * 5000, RejectReason.MALFORMED_JSON),
        (event_topic(), b'{"v": NaN}', RejectReason.MALFORMED_JSON),
        (event_topic(), [1, 2], RejectReason.INVALID_PAYLOAD),
        (event_topic(), {"msg_id": "a", "type": "panic.press"}, RejectReason.INVALID_PAYLOAD),
        (
            event_topic(),
            {"v": 2, "msg_id": "a", "type": "panic.press"},
            RejectReason.UNSUPPORTED_VERSION,
        ),
        (
            event_topic(),
            {"v": True, "msg_id": "a", "type": "panic.press"},
            RejectReason.UNSUPPORTED_VERSION,
        ),
        (event_topic(), {"v": 1, "msg_id": 7, "type": "panic.press"}, RejectReason.INVALID_PAYLOAD),
        (
            event_topic(),
            {"v": 1, "msg_id": "a", "type": "panic.explode"},
            RejectReason.INVALID_PAYLOAD,
        ),
        (event_topic(), press(colour="red"), RejectReason.INVALID_PAYLOAD),
        (event_topic(), press(battery=101), RejectReason.INVALID_PAYLOAD),
        (event_topic("school-99-btn-1"), press(), RejectReason.UNKNOWN_DEVICE),
        (event_topic(), b"{" + b" " * (64 * 1024) + b"}", RejectReason.OVERSIZE),
        ("gridwatch/v1/school-07-btn-1/status", press(), RejectReason.TOPIC_OUTSIDE_SCHEME),
        ("elsewhere/alarm", press(), RejectReason.TOPIC_OUTSIDE_SCHEME),
    ],
)
def test_bad_input_is_rejected_with_its_reason(
    topic: str, body: object, reason: RejectReason
) -> None:
    rejected = decode(topic, body)
    assert isinstance(rejected, Rejection)
    assert rejected.reason is reason


def test_rejected_message_keeps_reason_topic_and_capped_payload() -> None:
    message = InboundMessage(event_topic(), b"x" * 100_000, False, NOW)
    rejection = decode(event_topic(), b"x" * 100_000)
    assert isinstance(rejection, Rejection)
    stored = to_rejected_message(message, rejection, max_payload_bytes=64 * 1024)
    assert stored.reason.startswith("oversize")
    assert stored.origin == event_topic()
    assert stored.device_id == "school-07-btn-1"
    assert len(stored.payload) == 64 * 1024


def test_command_ack_event() -> None:
    ack = decode(
        event_topic("spk-3", "cmd/ack"),
        {"v": 1, "correlation_id": "c1", "attempt": 2, "result": "failed", "reason": "busy"},
    )
    assert isinstance(ack, DeviceEvent)
    assert ack.kind == "broadcast.command_ack"
    assert dict(ack.payload) == {
        "correlation_id": "c1",
        "attempt": 2,
        "result": "failed",
        "reason": "busy",
    }
    assert ack.severity is Severity.WARNING
    from_button = decode(
        event_topic(suffix="cmd/ack"), {"v": 1, "correlation_id": "c1", "result": "ok"}
    )
    assert isinstance(from_button, Rejection)


def test_json_pointer_rfc6901_examples() -> None:
    document = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8, " ": 7}
    assert resolve_pointer(document, "") == document
    assert resolve_pointer(document, "/foo") == ["bar", "baz"]
    assert resolve_pointer(document, "/foo/0") == "bar"
    assert resolve_pointer(document, "/") == 0
    assert resolve_pointer(document, "/a~1b") == 1
    assert resolve_pointer(document, "/m~0n") == 8
    assert resolve_pointer(document, "/ ") == 7
    for missing in ("/foo/2", "/foo/01", "/foo/-", "/nope", "/foo/0/x", "foo"):
        with pytest.raises(PointerError):
            resolve_pointer(document, missing)


ACME = VendorMapping(
    name="acme",
    topic="acme/+/{device_id}/sos",
    event_type_pointer="/evt/code",
    kinds={"1": "panic.press", "2": "panic.restore", "tamper": "panic.tamper"},
    msg_id_pointer="/seq",
    time_pointer="/ts",
    time_format="epoch_ms",
)


def test_vendor_mapping_feeds_the_same_events() -> None:
    body = {"evt": {"code": 1}, "seq": 42, "ts": 1_772_353_800_000}
    event = decode("acme/site9/school-07-btn-1/sos", body, mappings=(ACME,))
    assert isinstance(event, DeviceEvent)
    assert (event.kind, event.severity) == ("panic.press", Severity.CRITICAL)
    assert event.dedup_key == "mqtt:acme:school-07-btn-1:42"
    assert event.payload["device_time"] == "2026-03-01T08:30:00+00:00"
    assert subscriptions(PREFIX, (ACME,))[-1] == "acme/+/+/sos"


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (
            "acme/x/school-07-btn-1/sos",
            {"evt": {"code": 9}, "seq": 1, "ts": 0},
            RejectReason.UNMAPPED_EVENT_TYPE,
        ),
        (
            "acme/x/school-07-btn-1/sos",
            {"evt": {}, "seq": 1, "ts": 0},
            RejectReason.INVALID_PAYLOAD,
        ),
        (
            "acme/x/school-07-btn-1/sos",
            {"evt": {"code": 1}, "seq": 1, "ts": "noon"},
            RejectReason.INVALID_PAYLOAD,
        ),
        ("acme/x/nobody/sos", {"evt": {"code": 1}, "seq": 1, "ts": 0}, RejectReason.UNKNOWN_DEVICE),
        ("acme/x/school-07-btn-1/sos", b"garbage", RejectReason.MALFORMED_JSON),
        (
            "acme/x/school-07-btn-1/sos/extra",
            {"evt": {"code": 1}},
            RejectReason.TOPIC_OUTSIDE_SCHEME,
        ),
    ],
)
def test_vendor_mapping_rejections(topic: str, body: object, reason: RejectReason) -> None:
    rejected = decode(topic, body, mappings=(ACME,))
    assert isinstance(rejected, Rejection)
    assert rejected.reason is reason


def test_vendor_mapping_without_message_id_hashes_the_message() -> None:
    mapping = VendorMapping(
        name="bolt",
        topic="bolt/#",
        device_id_pointer="/dev",
        event_type_pointer="/alarm",
        kinds={"true": "panic.press"},
    )
    body = {"dev": "school-07-btn-1", "alarm": True}
    first = decode("bolt/a/b", body, mappings=(mapping,))
    again = decode("bolt/a/b", body, mappings=(mapping,))
    assert isinstance(first, DeviceEvent)
    assert isinstance(again, DeviceEvent)
    assert first.dedup_key == again.dedup_key


def test_vendor_mapping_config_is_checked() -> None:
    with pytest.raises(ValidationError):
        VendorMapping(name="x", topic="a/#/b", event_type_pointer="/c", kinds={"1": "panic.press"})
    with pytest.raises(ValidationError):
        VendorMapping(name="x", topic="a/b", event_type_pointer="/c", kinds={"1": "panic.press"})
    with pytest.raises(ValidationError):
        VendorMapping(
            name="x", topic="a/{device_id}", event_type_pointer="c", kinds={"1": "panic.press"}
        )


def test_broadcast_commands_validate_per_action() -> None:
    BroadcastCommand(action=BroadcastAction.TTS, text="请立即疏散", zone="east", priority=1)
    BroadcastCommand(action=BroadcastAction.STOP)
    for bad in (
        {"action": "play"},
        {"action": "tts", "text": "x", "url": "a.mp3"},
        {"action": "volume", "volume": 101},
        {"action": "stop", "volume": 5},
        {"action": "play", "url": "a.mp3", "priority": 0},
    ):
        with pytest.raises(ValidationError):
            BroadcastCommand.model_validate(bad)
    body = encode_command(
        BroadcastCommand(action=BroadcastAction.VOLUME, volume=30),
        correlation_id="c9",
        attempt=2,
        sent_at=NOW,
    )
    decoded = CommandPayload.model_validate_json(body)
    assert decoded.command.volume == 30
    assert (decoded.v, decoded.correlation_id, decoded.attempt) == (1, "c9", 2)


def test_settings_refuse_unknown_fields_and_hide_the_password() -> None:
    settings = MqttSettings(username="hub", password="s3cret")
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValidationError):
        MqttSettings(hots="typo")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        MqttSettings(reconnect_min_s=10, reconnect_max_s=1)


def test_drill_press_carries_the_drill_flag_into_the_event() -> None:
    drill = decode(event_topic(), press("d-1", drill=True))
    real = decode(event_topic(), press("r-1"))
    assert isinstance(drill, DeviceEvent) and isinstance(real, DeviceEvent)
    assert drill.payload["drill"] is True
    assert "drill" not in real.payload
    assert "drill" not in decode(event_topic(), press("r-2", drill=False)).payload  # type: ignore[union-attr]


def test_drill_flag_must_be_a_boolean() -> None:
    rejected = decode(event_topic(), press("d-2", drill="yes"))
    assert isinstance(rejected, Rejection)
    assert rejected.reason is RejectReason.INVALID_PAYLOAD
