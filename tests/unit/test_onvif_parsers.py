"""ONVIF notification parsing: PullMessages documents → DeviceEvents."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.onvif.parsers import (
    PARSERS,
    EventSignal,
    NotificationInterpreter,
    NotificationMessage,
    PropertyStateTracker,
    SoapFault,
    TopicRegistry,
    normalize_topic,
    parse_create_pull_point_response,
    parse_events_xaddr,
    parse_pull_messages_response,
    parse_renew_response,
    parse_system_date_and_time,
)
from adapters.safexml import XmlRefused
from camera_registry.events import DeviceEvent, Severity

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "onvif"
T0 = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def interpret(
    name: str, interpreter: NotificationInterpreter | None = None, at: datetime = T0
) -> tuple[list[DeviceEvent], NotificationInterpreter]:
    interpreter = interpreter or NotificationInterpreter("cam-1")
    return interpreter.interpret(parse_pull_messages_response(fixture(name)), at), interpreter


def test_motion_on_then_off_gives_two_events_with_state_and_sources() -> None:
    interpreter = NotificationInterpreter("cam-1")
    (on,), _ = interpret("motion_on.xml", interpreter)
    (off,), _ = interpret("motion_off.xml", interpreter, T0 + timedelta(seconds=6))

    assert on.kind == off.kind == "onvif.motion"
    assert on.device_id == "cam-1" and on.source == "onvif"
    assert on.payload["state"] is True and off.payload["state"] is False
    assert on.severity is Severity.WARNING and off.severity is Severity.INFO
    assert on.payload["operation"] == "Changed"
    assert on.payload["topic"] == "RuleEngine/CellMotionDetector/Motion"
    assert on.payload["source"] == {
        "VideoSourceConfigurationToken": "VideoSourceToken",
        "VideoAnalyticsConfigurationToken": "VideoAnalyticsToken",
        "Rule": "MyMotionDetectorRule",
    }
    assert on.payload["device_time"] == "2024-05-01T10:00:03+00:00"
    assert on.dedup_key and on.dedup_key != off.dedup_key


def test_the_same_document_twice_gives_the_same_dedup_key() -> None:
    first, _ = interpret("motion_on.xml")
    second, _ = interpret("motion_on.xml")
    assert first[0].dedup_key == second[0].dedup_key


def test_tamper_line_crossing_and_digital_input() -> None:
    (tamper,), _ = interpret("tamper.xml")
    assert tamper.kind == "onvif.tamper"
    assert tamper.severity is Severity.MAJOR
    assert tamper.payload["source"] == {"Source": "VideoSource_1"}

    (crossing,), _ = interpret("line_crossing.xml")
    assert crossing.kind == "onvif.line_crossing"
    assert crossing.payload["state"] is True
    assert crossing.payload["object_id"] == "15"
    assert crossing.payload["source"]["Rule"] == "EntranceLine"
    assert crossing.payload["operation"] is None

    (contact,), _ = interpret("digital_input.xml")
    assert contact.kind == "onvif.digital_input"
    assert contact.payload["state"] is True
    assert contact.payload["source"] == {"InputToken": "DIGIT_INPUT_000"}


def test_every_notification_of_a_multi_message_response_is_kept() -> None:
    events, interpreter = interpret("multiple.xml")
    kinds = [e.kind for e in events]
    assert kinds == [
        "onvif.motion",
        "onvif.intrusion",
        "onvif.image_too_dark",
        "onvif.storage_failure",
        "onvif.hardware_failure",
        "onvif.video_loss",
        "onvif.image_too_blurry",
    ]
    by_kind = {e.kind: e for e in events}
    assert by_kind["onvif.hardware_failure"].payload["component"] == "FanFailure"
    assert by_kind["onvif.storage_failure"].payload["source"] == {"Token": "SD_DISK_20200422_123"}
    assert by_kind["onvif.video_loss"].severity is Severity.MAJOR
    # An "off" for a property never seen before is still reported (the camera said it changed).
    assert by_kind["onvif.image_too_blurry"].payload["state"] is False
    assert sum(interpreter.messages_per_topic.values()) == 7


def test_unknown_topic_is_counted_and_logged_once_per_device(
    caplog: pytest.LogCaptureFixture,
) -> None:
    interpreter = NotificationInterpreter("cam-7")
    with caplog.at_level(logging.INFO, logger="adapters.onvif.interpreter"):
        for second in range(3):
            _, _ = interpret("unknown_topic.xml", interpreter, T0 + timedelta(seconds=second))
    assert interpreter.unknown_topics.counts("cam-7") == {"Acme/PeopleCounter/Count": 3}
    logged = [r for r in caplog.records if "unknown event topic" in r.getMessage()]
    assert len(logged) == 1 and "tnsacme:Acme/PeopleCounter/Count" in logged[0].getMessage()
    # The known message in the same batch still counts.
    assert interpreter.messages_per_topic["VideoSource/MotionAlarm"] == 3


def test_malformed_notifications_are_counted_without_losing_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="adapters.onvif.interpreter"):
        events, interpreter = interpret("malformed_notifications.xml")
    assert [e.kind for e in events] == ["onvif.tamper"]
    assert events[0].payload["state"] is True  # "1" is an xs:boolean true
    assert interpreter.malformed == 3
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "without a topic" in reasons and "'maybe'" in reasons and "Exploded" in reasons


@pytest.mark.parametrize("name", ["billion_laughs.xml", "external_entity.xml"])
def test_hostile_documents_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(XmlRefused, match="document type declarations"):
        parse_pull_messages_response(fixture(name))


def test_a_truncated_document_is_refused() -> None:
    with pytest.raises(XmlRefused, match="malformed XML"):
        parse_pull_messages_response(fixture("truncated.xml"))


def test_faults_are_raised_and_classified() -> None:
    with pytest.raises(SoapFault) as expired:
        parse_pull_messages_response(fixture("fault_unknown_subscription.xml"))
    assert expired.value.is_unknown_subscription and not expired.value.is_auth_failure
    with pytest.raises(SoapFault) as denied:
        parse_pull_messages_response(fixture("fault_not_authorized.xml"))
    assert denied.value.is_auth_failure


def test_termination_and_current_time() -> None:
    result = parse_pull_messages_response(fixture("empty.xml"))
    assert result.messages == ()
    assert result.current_time == T0
    assert result.termination_time == T0 + timedelta(minutes=2)


def test_subscription_answers() -> None:
    address, parameters, times = parse_create_pull_point_response(
        fixture("create_pull_point_response.xml")
    )
    assert address == "http://192.168.0.90/onvif/services"
    assert len(parameters) == 1 and b"SubscriptionId" in parameters[0] and b">7<" in parameters[0]
    assert times.remaining() == timedelta(minutes=1)
    renewed = parse_renew_response(
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope" '
        b'xmlns:n="http://docs.oasis-open.org/wsn/b-2"><e:Body><n:RenewResponse>'
        b"<n:TerminationTime>2024-05-01T10:03:00Z</n:TerminationTime>"
        b"<n:CurrentTime>2024-05-01T10:01:00.123456789Z</n:CurrentTime>"
        b"</n:RenewResponse></e:Body></e:Envelope>"
    )
    assert renewed.termination_time == datetime(2024, 5, 1, 10, 3, tzinfo=UTC)
    assert renewed.current_time == datetime(2024, 5, 1, 10, 1, 0, 123456, tzinfo=UTC)


def test_system_date_and_time_and_events_address() -> None:
    assert parse_system_date_and_time(fixture("system_date_and_time.xml")) == datetime(
        2024, 5, 1, 9, 58, 30, tzinfo=UTC
    )
    capabilities = (
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        b'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
        b'xmlns:tt="http://www.onvif.org/ver10/schema"><s:Body><tds:GetCapabilitiesResponse>'
        b"<tds:Capabilities><tt:Events><tt:XAddr>http://10.0.0.5/onvif/event_service</tt:XAddr>"
        b"</tt:Events></tds:Capabilities></tds:GetCapabilitiesResponse></s:Body></s:Envelope>"
    )
    assert parse_events_xaddr(capabilities) == "http://10.0.0.5/onvif/event_service"


def test_topic_matching_ignores_namespace_prefixes_and_case() -> None:
    assert normalize_topic("tns1:VideoSource/MotionAlarm") == "VideoSource/MotionAlarm"
    assert normalize_topic("ns0:RuleEngine/ns0:CellMotionDetector/ns0:Motion") == (
        "RuleEngine/CellMotionDetector/Motion"
    )
    assert PARSERS.lookup("VideoSource/MotionAlarm") is PARSERS.lookup(
        "tns:videosource/motionalarm"
    )
    # A subtree registration covers the bare topic and any child, longest match wins.
    assert PARSERS.lookup("tns1:VideoSource/GlobalSceneChange") is not None
    assert PARSERS.lookup("tns1:Device/HardwareFailure/StorageFailure") is not PARSERS.lookup(
        "tns1:Device/HardwareFailure/PowerSupplyFailure"
    )
    assert PARSERS.lookup("tns1:VideoSource/Nothing") is None


def test_a_registry_refuses_duplicate_topics() -> None:
    registry = TopicRegistry()
    registry.register("tns1:A/B")(lambda m: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="twice"):
        registry.register("tns:A/B")(lambda m: None)  # type: ignore[arg-type,return-value]


def _motion(
    state: bool, operation: str | None = "Changed", source: str = "VideoSource_1"
) -> EventSignal:
    message = NotificationMessage(
        topic="VideoSource/MotionAlarm",
        raw_topic="tns1:VideoSource/MotionAlarm",
        utc_time=T0,
        property_operation=operation,
        source={"Source": source},
        data={"State": "true" if state else "false"},
    )
    parser = PARSERS.lookup(message.topic)
    assert parser is not None
    return parser(message)


def test_an_on_without_off_expires_after_the_hold_time() -> None:
    tracker = PropertyStateTracker("cam-1", hold_time=timedelta(seconds=60))
    assert len(tracker.observe(_motion(True), T0)) == 1
    assert tracker.next_expiry() == T0 + timedelta(seconds=60)
    assert tracker.expire(T0 + timedelta(seconds=59)) == []
    (off,) = tracker.expire(T0 + timedelta(seconds=60))
    assert off.payload["state"] is False and off.payload["reason"] == "expired"
    assert off.severity is Severity.INFO
    assert tracker.expire(T0 + timedelta(seconds=120)) == []  # only once
    assert tracker.active() == []


def test_a_repeated_on_keeps_the_state_alive_without_new_events() -> None:
    tracker = PropertyStateTracker("cam-1", hold_time=timedelta(seconds=60))
    tracker.observe(_motion(True), T0)
    assert tracker.observe(_motion(True), T0 + timedelta(seconds=50)) == []
    assert tracker.expire(T0 + timedelta(seconds=100)) == []
    assert len(tracker.expire(T0 + timedelta(seconds=110))) == 1


def test_initialized_after_resubscribe_does_not_repeat_a_known_on() -> None:
    tracker = PropertyStateTracker("cam-1")
    tracker.observe(_motion(True), T0)
    assert tracker.observe(_motion(True, "Initialized"), T0 + timedelta(seconds=5)) == []
    # ...but a state that changed while we were not listening is news.
    (changed,) = tracker.observe(_motion(False, "Initialized"), T0 + timedelta(seconds=6))
    assert changed.payload["state"] is False and changed.payload["initialized"] is True


def test_initialized_states_on_first_subscription() -> None:
    tracker = PropertyStateTracker("cam-1")
    assert tracker.observe(_motion(False, "Initialized", "VideoSource_2"), T0) == []
    (on,) = tracker.observe(_motion(True, "Initialized"), T0)
    assert on.payload["initialized"] is True and on.payload["state"] is True


def test_deleted_turns_a_property_off_and_forgets_it() -> None:
    tracker = PropertyStateTracker("cam-1")
    tracker.observe(_motion(True), T0)
    (off,) = tracker.observe(_motion(True, "Deleted"), T0 + timedelta(seconds=1))
    assert off.payload["state"] is False and off.payload["reason"] == "deleted"
    assert tracker.active() == []


def test_failures_are_held_until_the_camera_clears_them() -> None:
    _, interpreter = interpret("multiple.xml")
    later = interpreter.tracker.expire(T0 + timedelta(days=1))
    assert {e.kind for e in later} == {"onvif.motion", "onvif.intrusion", "onvif.image_too_dark"}
    assert {s.kind for s in interpreter.tracker.active()} == {
        "onvif.storage_failure",
        "onvif.hardware_failure",
        "onvif.video_loss",
    }


def test_separate_sources_are_separate_properties() -> None:
    tracker = PropertyStateTracker("cam-1")
    assert len(tracker.observe(_motion(True, source="VideoSource_1"), T0)) == 1
    assert len(tracker.observe(_motion(True, source="VideoSource_2"), T0)) == 1
    assert len(tracker.active()) == 2
