"""Logins in camera URLs: put in, taken out and redacted the same way everywhere."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from camera_registry.urls import (
    mask_passwords,
    redact_text,
    redact_url,
    with_credentials,
    without_credentials,
)

hosts = st.sampled_from(
    ["10.0.0.5", "cam.local", "[fe80::1]", "[2001:db8::5]", "[::1]", "摄像头.example"]
)
ports = st.sampled_from(["", ":554", ":8554", ":80"])
paths = st.sampled_from(["/live", "/Streaming/Channels/101", "/onvif/snapshot", ""])
queries = st.sampled_from(
    ["", "?x=1", "?channel=1&subtype=0", "?token=abc123", "?user=u&pwd=p&ch=2"]
)
old_logins = st.sampled_from(["", "old@", "old:secret@", "a%40b:c%3Ad@"])
secrets = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=24,
)


@st.composite
def camera_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["rtsp", "http", "https", "rtsps"]))
    return f"{scheme}://{draw(old_logins)}{draw(hosts)}{draw(ports)}{draw(paths)}{draw(queries)}"


@given(camera_urls(), secrets, secrets)
def test_a_login_put_in_is_read_back_exactly(url: str, user: str, password: str) -> None:
    built = with_credentials(url, user, password)
    parts = urlsplit(built)
    assert unquote(parts.username or "") == user
    assert unquote(parts.password or "") == password
    # Host, port, path and query are untouched; an older login is replaced, not doubled.
    assert parts.netloc.count("@") == 1
    assert without_credentials(built) == without_credentials(url)


@given(camera_urls(), secrets, secrets)
def test_redacted_urls_show_no_login(url: str, user: str, password: str) -> None:
    built = with_credentials(url, user, password)
    shown = redact_url(built)
    parts = urlsplit(shown)
    assert parts.username == "***" and parts.password is None
    assert redact_url(shown) == shown
    for key in ("token=abc123", "pwd=p", "user=u"):
        assert key not in shown


@given(camera_urls())
def test_taking_the_login_out_keeps_the_address(url: str) -> None:
    clean = without_credentials(url)
    assert "@" not in urlsplit(clean).netloc
    assert urlsplit(clean).hostname == urlsplit(url).hostname
    assert urlsplit(clean).port == urlsplit(url).port
    assert "token=" not in clean and "pwd=" not in clean


def test_no_username_leaves_the_url_alone() -> None:
    assert with_credentials("rtsp://10.0.0.5/live", None, "x") == "rtsp://10.0.0.5/live"
    assert with_credentials("rtsp://10.0.0.5/live", "", None) == "rtsp://10.0.0.5/live"
    assert with_credentials("rtsp://[fe80::1]:554/a", "u", None) == "rtsp://u@[fe80::1]:554/a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Connection refused: 'rtsp://admin:pa%40ss@10.0.0.5:554/x'",
            "Connection refused: 'rtsp://***@10.0.0.5:554/x'",
        ),
        ("GET http://cam/snap.jpg?token=s3cr3t&ch=1", "GET http://cam/snap.jpg?token=***&ch=1"),
    ],
)
def test_text_redaction(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_log_masking_keeps_the_user_name() -> None:
    assert mask_passwords("open rtsp://admin:x@[fe80::1]:554/live") == (
        "open rtsp://admin:***@[fe80::1]:554/live"
    )
    encoded = "rtsp%3A%2F%2Fadmin%3Ahunter2%40cam%2Flive"
    assert "hunter2" not in mask_passwords(encoded)
