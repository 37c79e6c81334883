"""The API documentation without internet, the ways in it names, and JSON answers' headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from hub.config import load_settings
from hub.runtime import Hub
from tests.integration.console_support import (
    SCREENSHOTS,
    launch_browser,
    require_browser_peers,
    serve_hub,
)
from tests.integration.mqtt_support import unique_prefix


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    async with Hub(load_settings(None, data_dir=tmp_path)) as running:
        yield running


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        yield c


async def test_docs_pages_load_their_assets_from_the_hub(client: httpx.AsyncClient) -> None:
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = (await client.get(page)).text
        assert f"/docs/assets/{asset}" in html
        assert "https://" not in html and "http://" not in html
        served = await client.get(f"/docs/assets/{asset}")
        assert served.status_code == 200 and len(served.content) > 100_000
    css = await client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


async def test_openapi_names_api_keys_and_the_session_cookie(
    client: httpx.AsyncClient, hub: Hub
) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    assert "Authorization: Bearer gw_" in schemes["apiKey"]["description"]
    assert schemes["session"] == {**schemes["session"], "in": "cookie", "name": "gw_session"}
    assert {"apiKey": []} in spec["security"] and {"session": []} in spec["security"]
    # What the document says works: a key as a bearer token reads the API.
    key = await hub.auth.create_api_key("integrator", "dispatcher", ("/",), actor="system:test")
    assert key.token.startswith("gw_")
    response = await client.get("/api/alarms", headers={"Authorization": f"Bearer {key.token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/healthz", {}),
        ("/openapi.json", {}),
        ("/api/devices", {}),  # 401, a problem+json body
        ("/api/alarms", {"Authorization": "Bearer gw_nope_nope"}),
    ],
)
async def test_json_answers_are_not_sniffed_nor_cached(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    response = await client.get(path, headers=headers)
    assert "json" in response.headers["content-type"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


async def test_the_console_keeps_its_own_cache_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "json" not in page.headers["content-type"]


@pytest.mark.browser
@pytest.mark.mqtt
async def test_docs_render_in_chromium_with_the_network_blocked(tmp_path: Path) -> None:
    require_browser_peers()
    outside: list[str] = []

    async def only_the_hub(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort("internetdisconnected")

    with serve_hub(tmp_path, unique_prefix()) as running:
        async with launch_browser() as browser:
            context = await browser.new_context()
            await context.route("**/*", only_the_hub)
            page = await context.new_page()
            await page.goto(running.base_url + "/docs")
            await page.wait_for_selector(".swagger-ui .opblock-tag", timeout=30_000)
            await page.wait_for_selector(".swagger-ui button.authorize", timeout=10_000)
            assert await page.locator(".swagger-ui .opblock").count() > 20
            await page.click(".swagger-ui button.authorize")
            dialog = page.locator(".swagger-ui .modal-ux")
            await dialog.wait_for(timeout=10_000)
            text = await dialog.inner_text()
            assert "apiKey" in text and "session" in text
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOTS / "api-docs-offline.png"), full_page=False)
            await context.close()
    assert outside == [], f"the docs asked the internet for {outside}"
