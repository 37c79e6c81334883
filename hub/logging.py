"""Logging set-up with a redaction layer: no secret reaches a log line.

Redacted: the password in URLs (`rtsp://user:pass@host`, also URL-encoded as
`rtsp%3A%2F%2Fuser%3Apass%40host`), and the values of fields whose name says
password, passwd, secret, token, api_key or authorization, whether written
`key=value`, `key: value` or as JSON `"key": "value"`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from camera_registry.urls import REDACTED, mask_passwords

__all__ = [
    "HTTP_CLIENT_LOGGERS",
    "REDACTED",
    "RedactingFormatter",
    "RedactionFilter",
    "configure_logging",
    "redact",
]

_SECRET_NAMES = r"(?:password|passwd|pwd|secret|token|api[_-]?key|authorization|credentials?)"  # noqa: S105 - names, not a secret
_JSON_FIELD = re.compile(
    r'(?P<head>"[A-Za-z0-9_\-]*' + _SECRET_NAMES + r'[A-Za-z0-9_\-]*"\s*:\s*)"(?:[^"\\]|\\.)*"',
    re.IGNORECASE,
)
_REPR_FIELD = re.compile(
    r"(?P<head>'[A-Za-z0-9_\-]*" + _SECRET_NAMES + r"[A-Za-z0-9_\-]*'\s*:\s*)'(?:[^'\\]|\\.)*'",
    re.IGNORECASE,
)
_KV_FIELD = re.compile(
    r"(?P<head>\b[A-Za-z0-9_\-]*" + _SECRET_NAMES + r"[A-Za-z0-9_\-]*\s*[=:]\s*)"
    r"(?!\*\*\*)(?:(?:Bearer|Basic|Digest)\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s,;&}\]]+)",
    re.IGNORECASE,
)


_AUTH_SCHEME = re.compile(r"(?P<head>\b(?:Bearer|Basic|Digest)\s+)[A-Za-z0-9+/=._~\-]{6,}")


def redact(text: str) -> str:
    """Return `text` with every recognisable secret replaced by `***`."""
    text = _AUTH_SCHEME.sub(lambda m: m.group("head") + REDACTED, text)
    text = mask_passwords(text)
    text = _JSON_FIELD.sub(lambda m: m.group("head") + f'"{REDACTED}"', text)
    text = _REPR_FIELD.sub(lambda m: m.group("head") + f"'{REDACTED}'", text)
    return _KV_FIELD.sub(lambda m: m.group("head") + REDACTED, text)


class RedactionFilter(logging.Filter):
    """Rewrites a record's message (with its arguments applied) through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RedactingFormatter(logging.Formatter):
    """A formatter whose whole output, tracebacks included, goes through `redact`."""

    def __init__(self, *, json_lines: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        if not self.json_lines:
            return redact(super().format(record))
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False))


#: Libraries that log every HTTP request at INFO (one line per camera snapshot or probe).
HTTP_CLIENT_LOGGERS = ("httpx", "httpcore")


def configure_logging(
    level: str = "INFO",
    *,
    json_lines: bool = False,
    http_client_level: str = "WARNING",
    log_file: Path | None = None,
    file_level: str = "INFO",
) -> None:
    """Install a redacting stderr handler on the root logger; quiet the HTTP clients.

    With `log_file`, records from `file_level` up also go to that file (the demo keeps
    the terminal for its own lines and the hub's log in its data directory).
    """
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(http_client_level)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(level)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        handlers[1].setLevel(file_level)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    for handler in handlers:
        handler.setFormatter(RedactingFormatter(json_lines=json_lines))
        handler.addFilter(RedactionFilter())
        root.addHandler(handler)
    levels = [logging.getLevelName(h.level) for h in handlers]
    root.setLevel(min(levels))
