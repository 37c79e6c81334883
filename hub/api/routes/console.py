"""The operator console: static HTML, CSS and ES modules from `hub/console/`, no build step.

These files are public (the login page is among them); everything they show
comes from the API, which checks role and jurisdiction on every call.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from hub.api.deps import get_settings
from hub.auth.guards import Principal, Role, not_found, require
from hub.config import Settings

__all__ = [
    "CONSOLE_DIR",
    "CONTENT_SECURITY_POLICY",
    "MapConfigOut",
    "api_router",
    "content_security_policy",
    "router",
]

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "console"
#: Only the hub's own scripts, styles, media and sockets; no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def content_security_policy(tile_url: str | None) -> str:
    """The page's policy; a configured tile server is the one other origin images come from."""
    if not tile_url or tile_url.startswith("/"):
        return CONTENT_SECURITY_POLICY
    scheme, _, rest = tile_url.partition("://")
    labels = rest.split("/", 1)[0].split(".")
    # Subdomains ({s}) become a wildcard, which a policy allows only as the first label.
    if "{s}" in labels[0]:
        labels[0] = "*"
    host = ".".join(labels)
    source = f"{scheme}://{host}" if "{" not in host and "}" not in host else f"{scheme}:"
    return CONTENT_SECURITY_POLICY.replace(
        "img-src 'self' data: blob:", f"img-src 'self' data: blob: {source}"
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
api_router = APIRouter(prefix="/api/console", tags=["console"])
Reader = Annotated[Principal, Depends(require(Role.OPERATOR, Role.MAINTENANCE, Role.DISPATCHER))]


class MapConfigOut(BaseModel):
    """How the console draws its map (tiles only when the site has a tile server)."""

    tile_url: str | None
    subdomains: str
    attribution: str
    max_zoom: int
    center: tuple[float, float] | None = Field(description="[latitude, longitude] or null")
    zoom: int


@api_router.get("/map", response_model=MapConfigOut)
async def map_config(
    principal: Reader, settings: Annotated[Settings, Depends(get_settings)]
) -> MapConfigOut:
    """The map's tile source and start view."""
    m = settings.map
    center = None
    if m.center_latitude is not None and m.center_longitude is not None:
        center = (m.center_latitude, m.center_longitude)
    return MapConfigOut(
        tile_url=m.tile_url,
        subdomains=m.subdomains,
        attribution=m.attribution,
        max_zoom=m.max_zoom,
        center=center,
        zoom=m.zoom,
    )


def _file(path: Path, headers: dict[str, str] = _HEADERS) -> FileResponse:
    media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=media_type or "application/octet-stream", headers=headers)


@router.get("/")
async def index(settings: Annotated[Settings, Depends(get_settings)]) -> FileResponse:
    """The console's single page."""
    policy = content_security_policy(settings.map.tile_url)
    return _file(CONSOLE_DIR / "index.html", {**_HEADERS, "Content-Security-Policy": policy})


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
