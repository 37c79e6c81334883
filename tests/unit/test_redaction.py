"""No secret reaches a log line: URLs with passwords, secret fields, auth headers."""

from __future__ import annotations

import io
import logging

import pytest

from hub.logging import RedactingFormatter, RedactionFilter, redact

SECRET = "Hunter2-Pa55"


@pytest.mark.parametrize(
    "line",
    [
        f"cannot open rtsp://admin:{SECRET}@10.1.2.3:554/Streaming/Channels/101",
        f"probe http://root:{SECRET}@cam.local/onvif/device_service",
        f"redirect to rtsp%3A%2F%2Fadmin%3A{SECRET}%40cam.local%2Flive",
        f"login failed password={SECRET} user=operator",
        f'body {{"username": "admin", "password": "{SECRET}"}}',
        f"settings {{'webhook_secret': '{SECRET}'}}",
        f"api_key: {SECRET}, retrying",
        f"Authorization: Bearer {SECRET}",
        f"token={SECRET}&next=/console",
    ],
)
def test_redact_removes_the_secret(line: str) -> None:
    out = redact(line)
    assert SECRET not in out
    assert "***" in out


def test_redaction_keeps_what_operators_need() -> None:
    out = redact("cannot open rtsp://admin:x@10.1.2.3:554/live: timeout")
    assert out == "cannot open rtsp://admin:***@10.1.2.3:554/live: timeout"


def test_a_real_log_record_with_arguments_and_traceback_is_clean() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter())
    handler.addFilter(RedactionFilter())
    logger = logging.getLogger("gridwatch.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        url = f"rtsp://admin:{SECRET}@cam/live"
        logger.warning("stream %s failed after %d tries", url, 3)
        try:
            raise ConnectionError(f"connect to {url} refused")
        except ConnectionError:
            logger.exception("probe failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "failed after 3 tries" in text
    assert "ConnectionError" in text
    assert SECRET not in text


def test_json_log_lines_are_redacted_too() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "using %s", (f"postgresql://gw:{SECRET}@db/gw",), None
    )
    out = RedactingFormatter(json_lines=True).format(record)
    assert SECRET not in out and '"level": "INFO"' in out
