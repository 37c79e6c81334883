"""The API's own documentation, readable on a closed network, and the JSON answers' headers.

`/docs` (Swagger UI) and `/redoc` load their scripts and styles from the hub itself:
the assets ship in the `fastapi-offline` package, so a dispatch integrator on a video
network without internet still reads the API. The OpenAPI document names both ways in:
an API key as a bearer token (``Authorization: Bearer gw_…``) for machines, and the
console's session cookie (with its CSRF header for changes) for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.auth.guards import CSRF_HEADER, SESSION_COOKIE

__all__ = ["ASSETS_URL", "SECURITY_SCHEMES", "JsonAnswerHeaders", "install_api_docs"]

#: Where the documentation's assets are served.
ASSETS_URL = "/docs/assets"
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "gw_<id>_<secret>",
        "description": (
            "An API key (created by an admin: `gridwatch apikeys add` or POST /api/apikeys), "
            "sent as `Authorization: Bearer gw_…`. For machines: no cookie, no CSRF token."
        ),
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": (
            "The console's session cookie from POST /api/auth/login. Changes (POST, PUT, "
            f"PATCH, DELETE) also carry the session's CSRF token in `{CSRF_HEADER}`."
        ),
    },
}


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc from local assets and add the security schemes to /openapi.json.

    The app must be built with ``docs_url=None, redoc_url=None`` (their CDN versions).
    """
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS_DIR), name="api-docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
            # Either way in is accepted on every route that needs a login.
            schema["security"] = [{"apiKey": []}, {"session": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


class JsonAnswerHeaders:
    """Every answer gets `X-Content-Type-Options: nosniff`; JSON answers `Cache-Control: no-store`.

    Alarm, device and user data must not be sniffed into something else by a browser,
    nor kept by a browser or proxy cache. A route that sets its own Cache-Control keeps it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                content_type = next(
                    (value for name, value in headers if name.lower() == b"content-type"), b""
                )
                if b"json" in content_type.lower() and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
