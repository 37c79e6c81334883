"""What reaches the log: HTTP client request lines stay out by default; the first
admin's one-time password never reaches a log, only a terminal or a 0600 file."""

from __future__ import annotations

import io
import logging
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hub.auth.first_admin import FIRST_ADMIN_FILE, hand_out_first_admin_password
from hub.logging import HTTP_CLIENT_LOGGERS, configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root handlers and the libraries' levels back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = {name: logging.getLogger(name).level for name in HTTP_CLIENT_LOGGERS}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, library_level in libraries.items():
        logging.getLogger(name).setLevel(library_level)


def _camera_requests(count: int) -> None:
    """HTTP requests as the hub makes them to cameras (answered in memory)."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"jpeg"))
    with httpx.Client(transport=transport) as client:
        for n in range(count):
            client.get(f"http://10.0.0.{n + 1}/snapshot.jpg")


def _stderr_of(monkeypatch: pytest.MonkeyPatch, http_client_level: str = "WARNING") -> io.StringIO:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("INFO", http_client_level=http_client_level)
    return stderr


@pytest.mark.usefixtures("restore_logging")
def test_camera_requests_write_no_info_lines_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = _stderr_of(monkeypatch)  # the defaults of `gridwatch run`
    _camera_requests(20)
    logging.getLogger("hub.test").info("the hub's own INFO lines still show")
    text = stderr.getvalue()
    assert "HTTP Request" not in text
    assert "the hub's own INFO lines still show" in text


@pytest.mark.usefixtures("restore_logging")
def test_request_lines_come_back_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = _stderr_of(monkeypatch, http_client_level="INFO")
    _camera_requests(3)
    assert stderr.getvalue().count("HTTP Request: GET http://10.0.0.") == 3


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_first_admin_password_on_a_terminal_is_printed_and_not_stored(tmp_path: Path) -> None:
    terminal = _Terminal()
    assert hand_out_first_admin_password("Pw-0ne-Time!", tmp_path, out=terminal) is None
    assert "Pw-0ne-Time!" in terminal.getvalue()
    assert not (tmp_path / FIRST_ADMIN_FILE).exists()


def test_first_admin_password_without_a_terminal_goes_to_a_private_file(tmp_path: Path) -> None:
    redirected = io.StringIO()  # stdout redirected to a file, a pipe, a journal
    path = hand_out_first_admin_password("Pw-0ne-Time!", tmp_path / "data", out=redirected)
    assert path == tmp_path / "data" / FIRST_ADMIN_FILE
    assert "Pw-0ne-Time!" not in redirected.getvalue()
    assert str(path.resolve()) in redirected.getvalue()
    assert path.read_text(encoding="utf-8").strip() == "Pw-0ne-Time!"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A second hand-out (a new database in the same directory) replaces the file.
    hand_out_first_admin_password("Other-Pw-2!", tmp_path / "data", out=redirected)
    assert path.read_text(encoding="utf-8").strip() == "Other-Pw-2!"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
