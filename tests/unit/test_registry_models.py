"""Device write/read models: validation, write-only credentials, URL hygiene."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from camera_registry import (
    Device,
    DeviceIn,
    DeviceKind,
    GbId,
    HealthState,
    Project,
    strip_credentials,
    url_has_credentials,
)

PASSWORD = "Hk#2024-very-secret"
NOW = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def camera(**overrides: Any) -> DeviceIn:
    fields: dict[str, Any] = {
        "id": "15010200001320000001",
        "name": "新华大街与中山路口东北角",
        "kind": "camera",
        "project": "sharp_eyes",
        "jurisdiction": "150102001",
        "latitude": 40.8151,
        "longitude": 111.6702,
        "rtsp_urls": ["rtsp://10.15.1.21:554/Streaming/Channels/101"],
        "onvif_url": "http://10.15.1.21/onvif/device_service",
        "credentials": {"username": "admin", "password": PASSWORD},
        "tags": ["路口"],
    }
    fields.update(overrides)
    return DeviceIn.model_validate(fields)


def test_a_full_camera_record_is_accepted() -> None:
    device = camera()
    assert device.kind is DeviceKind.CAMERA
    assert device.gb_id == GbId("15010200001320000001")
    assert device.credentials is not None
    assert device.credentials.password.get_secret_value() == PASSWORD


def test_credentials_never_leave_the_write_model() -> None:
    device = camera()
    assert PASSWORD not in repr(device)
    assert PASSWORD not in str(device)
    assert "credentials" not in device.model_dump()
    assert PASSWORD not in device.model_dump_json()
    assert PASSWORD not in json.dumps(device.model_dump(mode="json"))


def test_read_model_has_no_credentials_only_a_flag() -> None:
    device = Device.from_input(camera(), created_at=NOW, updated_at=NOW)
    assert device.has_credentials is True
    dumped = device.model_dump_json()
    assert PASSWORD not in dumped
    assert "admin" not in dumped
    assert (
        Device.from_input(camera(credentials=None), created_at=NOW, updated_at=NOW).has_credentials
        is False
    )
    with pytest.raises(ValidationError, match="Extra inputs"):
        Device.model_validate(
            {**device.model_dump(), "credentials": {"username": "a", "password": "b"}}
        )


def test_read_model_times_must_be_aware_and_health_is_optional() -> None:
    device = Device.from_input(
        camera(),
        created_at=NOW,
        updated_at=NOW + timedelta(minutes=5),
        health=HealthState.DEGRADED,
        health_since=NOW,
    )
    assert device.health is HealthState.DEGRADED
    assert Device.from_input(camera(), created_at=NOW, updated_at=NOW).health is None
    with pytest.raises(ValidationError):
        Device.from_input(camera(), created_at=datetime(2026, 3, 1), updated_at=NOW)  # noqa: DTZ001


def test_device_in_from_device_keeps_everything_but_credentials() -> None:
    source = camera()
    read = Device.from_input(source, created_at=NOW, updated_at=NOW)
    back = DeviceIn.from_device(read)
    assert back.credentials is None
    assert back.model_dump() == source.model_dump()


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://admin:Hk#2024-very-secret@10.15.1.21:554/Streaming/Channels/101",
        "rtsp://admin:Hk%232024-very-secret@10.15.1.21/live",
        "rtsp://admin@10.15.1.21/live",
    ],
)
def test_rtsp_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        camera(rtsp_urls=[url])
    text = str(caught.value)
    assert "must not carry credentials" in text
    assert "very-secret" not in text
    assert "admin@" not in text
    assert "very-secret" not in json.dumps(caught.value.errors(include_input=False), default=str)


def test_onvif_url_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="ONVIF URL must not carry credentials"):
        camera(onvif_url="http://admin:pw@10.15.1.21/onvif/device_service")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rtsp_urls", ["http://10.0.0.1/stream"]),
        ("rtsp_urls", ["rtsp:///nohost"]),
        ("rtsp_urls", ["rtsp://10.0.0.1/with space"]),
        ("onvif_url", "rtsp://10.0.0.1/onvif"),
    ],
)
def test_urls_must_have_the_right_scheme_and_a_host(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        camera(**{field: value})


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        (
            "rtsp://admin:12345@192.168.1.64:554/Streaming/Channels/101",
            "rtsp://192.168.1.64:554/Streaming/Channels/101",
        ),
        ("rtsp://user@host/live", "rtsp://host/live"),
        (
            "http://admin:pw@[fe80::1]:8080/onvif/device_service?x=1",
            "http://[fe80::1]:8080/onvif/device_service?x=1",
        ),
        ("rtsp://a:p@ss@10.0.0.1/x", "rtsp://10.0.0.1/x"),  # unescaped '@' in password
        ("rtsp://a:p/ss@10.0.0.1/x", "rtsp://10.0.0.1/x"),  # unescaped '/' in password
        ("rtsp://10.0.0.1/live@main", "rtsp://10.0.0.1/live@main"),  # '@' in the path
        ("rtsp://10.0.0.1:554/x?token=a@b", "rtsp://10.0.0.1:554/x?token=a@b"),
        ("not a url", "not a url"),
    ],
)
def test_strip_credentials(url: str, clean: str) -> None:
    assert strip_credentials(url) == clean
    assert url_has_credentials(url) == (url != clean)


@given(
    user=st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="@/?#"), min_size=1, max_size=12
    ),
    password=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20),
    path=st.sampled_from(
        ["", "/", "/Streaming/Channels/101", "/cam/realmonitor?channel=1&subtype=0"]
    ),
)
def test_strip_credentials_never_keeps_a_password(user: str, password: str, path: str) -> None:
    url = f"rtsp://{user}:{password}@10.15.1.21:554{path}"
    assert strip_credentials(url) == f"rtsp://10.15.1.21:554{path}"


def test_a_twenty_digit_id_must_be_a_valid_gb_code() -> None:
    with pytest.raises(ValidationError, match="province code 99"):
        camera(id="99010200001320000001")


@pytest.mark.parametrize("device_id", ["cam-01", "HK_DS-2CD.7", "a" * 64, "15010200001320"])
def test_free_ids_are_accepted(device_id: str) -> None:
    assert camera(id=device_id).id == device_id


@pytest.mark.parametrize("device_id", ["", "a" * 65, "cam 01", "摄像机1", "cam/01", "x'--"])
def test_unsafe_ids_are_refused(device_id: str) -> None:
    with pytest.raises(ValidationError, match="invalid device id"):
        camera(id=device_id)


def test_gb_id_value_is_accepted_as_id() -> None:
    assert camera(id=GbId("15010200001320000005")).id == "15010200001320000005"


def test_kind_must_agree_with_the_gb_type_code() -> None:
    with pytest.raises(ValidationError, match=r"type code 132 .* is a camera, but kind is nvr"):
        camera(kind="nvr")
    # Type codes without an implied kind leave the choice to the caller.
    assert camera(id="15010200001330000001", kind="camera").kind is DeviceKind.CAMERA


@pytest.mark.parametrize(
    "overrides",
    [
        {"latitude": 90.5},
        {"latitude": -91},
        {"longitude": 181},
        {"longitude": float("nan")},
        {"latitude": float("inf")},
        {"latitude": None},  # longitude alone
    ],
)
def test_coordinates_are_checked(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        camera(**overrides)


def test_no_coordinates_is_fine() -> None:
    assert camera(latitude=None, longitude=None).latitude is None


def test_projects_well_known_values_are_normalized_and_free_text_kept() -> None:
    assert camera(project="Sharp-Eyes").project == Project.SHARP_EYES
    assert camera(project="cloud_eye").project == "cloud_eye"
    assert camera(project="老旧小区改造").project == "老旧小区改造"


def test_text_is_stripped_and_control_characters_refused() -> None:
    assert camera(name="  东门  ").name == "东门"
    with pytest.raises(ValidationError, match="control characters"):
        camera(name="东门\n西门")
    with pytest.raises(ValidationError):
        camera(name="   ")


def test_lists_are_deduplicated_in_order() -> None:
    device = camera(
        rtsp_urls=["rtsp://10.0.0.1/a", "rtsp://10.0.0.1/b", "rtsp://10.0.0.1/a"],
        tags=["a", "b", "a"],
    )
    assert device.rtsp_urls == ["rtsp://10.0.0.1/a", "rtsp://10.0.0.1/b"]
    assert device.tags == ["a", "b"]


def test_tags_may_not_hold_list_separators() -> None:
    with pytest.raises(ValidationError):
        camera(tags=["a;b"])


def test_linked_cameras_only_for_alarm_points_and_broadcast_units() -> None:
    alarm = camera(
        id="15010200001340000001",
        kind="alarm_point",
        rtsp_urls=[],
        onvif_url=None,
        linked_cameras=["15010200001320000001", "cam-02", "cam-02"],
    )
    assert alarm.linked_cameras == ["15010200001320000001", "cam-02"]
    with pytest.raises(ValidationError, match="only alarm points and broadcast units"):
        camera(linked_cameras=["cam-02"])
    with pytest.raises(ValidationError, match="linked to itself"):
        camera(id="spk-1", kind="broadcast_unit", linked_cameras=["spk-1"])
    with pytest.raises(ValidationError, match="invalid device id"):
        camera(id="spk-1", kind="broadcast_unit", linked_cameras=["bad id"])


def test_unknown_fields_and_kinds_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        camera(colour="red")
    with pytest.raises(ValidationError):
        camera(kind="satellite")


def test_credentials_need_both_parts() -> None:
    with pytest.raises(ValidationError):
        camera(credentials={"username": "admin"})
    with pytest.raises(ValidationError):
        camera(credentials={"username": "", "password": "x"})


def test_models_are_frozen_and_have_a_json_schema() -> None:
    device = camera()
    with pytest.raises(ValidationError):
        device.name = "other"
    schema = DeviceIn.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "credentials" in schema["properties"]
    assert "credentials" not in Device.model_json_schema()["properties"]


def test_read_model_accepts_non_utc_aware_times() -> None:
    shanghai = timezone(timedelta(hours=8))
    device = Device.from_input(camera(), created_at=NOW.astimezone(shanghai), updated_at=NOW)
    assert device.created_at == NOW
