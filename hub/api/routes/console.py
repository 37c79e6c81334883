"""The operator console: static HTML, CSS and ES modules from `hub/console/`, no build step.

These files are public (the login page is among them); everything they show
comes from the API, which checks role and jurisdiction on every call.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from hub.auth.guards import not_found

__all__ = ["CONSOLE_DIR", "CONTENT_SECURITY_POLICY", "router"]

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
#: Only the hub's own scripts, styles, media and sockets; no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["console"], include_in_schema=False)


def _file(path: Path) -> FileResponse:
    media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=media_type or "application/octet-stream", headers=_HEADERS)


@router.get("/")
async def index() -> FileResponse:
    """The console's single page."""
    return _file(CONSOLE_DIR / "index.html")


@router.get("/console/{name:path}")
async def asset(name: str) -> FileResponse:
    """A console script, style sheet or sound; nothing outside the console folder."""
    candidate = (CONSOLE_DIR / name).resolve()
    if (
        not candidate.is_relative_to(CONSOLE_DIR)
        or candidate.suffix == ".py"
        or not candidate.is_file()
    ):
        raise not_found("file")
    return _file(candidate)
