"""Text the database cannot hold is refused at the door: a NUL character in any path,
query or JSON body field of any route answers 422 naming the field, on PostgreSQL (which
rejects NUL in text) as on SQLite. Routes are enumerated from the app, so a route added
later is covered without a line here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import RouteContext, iter_route_contexts
from pydantic import BaseModel

from hub.api.validation import NUL_MESSAGE
from hub.config import load_settings
from hub.runtime import Hub
from tests.helpers import act_as

NUL = "a\x00b"
BACKENDS = [pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"]


@pytest.fixture(params=BACKENDS)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(None, data_dir=tmp_path, storage={"url": url})
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    app = hub.app()
    act_as(app, role="admin")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        yield c


def routes(app: FastAPI) -> list[RouteContext]:
    """Every HTTP route with parameters FastAPI resolves (not the docs pages)."""
    return [
        context
        for context in iter_route_contexts(app.routes)
        if context.methods and getattr(context, "dependant", None) is not None
    ]


def parameters(route: RouteContext, kind: type[params.Param]) -> list[str]:
    """Names of the route's path or query parameters, its dependencies' included."""
    return [
        field.alias or field.name
        for field in get_flat_params(route.dependant)
        if isinstance(field.field_info, kind)
    ]


def fill(path: str, value: str) -> str:
    """The route path with every path parameter set to `value` (URL-encoded)."""
    return re.sub(r"\{[^}]+\}", quote(value, safe=""), path)


def body_fields(route: RouteContext) -> list[str]:
    """Top-level field names of the route's JSON body model (empty without one)."""
    if route.body_field is None:
        return []
    model = route.body_field.field_info.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def nul_fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, (response.request.url, response.status_code)
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert all(e["message"] == NUL_MESSAGE for e in errors), errors
    return {str(e["field"]) for e in errors}


async def send(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    return await client.request(method, url, **kwargs)


async def test_every_text_input_of_every_route_refuses_nul_with_422(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    checked: dict[str, int] = {"path": 0, "query": 0, "body": 0}
    for route in routes(app):
        path = str(route.path)
        in_path, in_query = parameters(route, params.Path), parameters(route, params.Query)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            where = f"{method} {path}"
            if in_path:
                response = await send(client, method, fill(path, NUL))
                assert nul_fields(response) >= {f"path.{name}" for name in in_path}, where
                checked["path"] += 1
            for name in in_query:
                url = fill(path, "x")
                response = await send(client, method, url, params={name: NUL})
                assert f"query.{name}" in nul_fields(response), where
                checked["query"] += 1
            fields = body_fields(route)
            if fields:
                body = {field: NUL for field in fields}
                response = await send(client, method, fill(path, "x"), json=body)
                assert nul_fields(response) == {f"body.{f}" for f in fields}, where
                checked["body"] += 1
    # The families an operator types into: searches, filters, notes, logins.
    assert checked["path"] >= 10 and checked["query"] >= 20 and checked["body"] >= 10, checked


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/devices", "query.q"),
        ("/api/alarms", "query.q"),
        ("/api/devices/export", "query.q"),
    ],
)
async def test_searches_with_nul_name_the_field(
    client: httpx.AsyncClient, url: str, field: str
) -> None:
    response = await client.get(url, params={"q": "gate\x00"})
    assert nul_fields(response) == {field}


async def test_nested_body_text_and_keys_are_checked(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/alarms/00000000-0000-0000-0000-000000000007/note",
        json={"note": "ok", "extra": [{"deep": "x\x00"}], "k\x00": 1},
    )
    assert nul_fields(response) == {"body.extra.0.deep", "body.k\x00"}
    # Without NUL the same request reaches the route (404: no such alarm).
    fine = await client.post(
        "/api/alarms/00000000-0000-0000-0000-000000000007/note", json={"note": "ok"}
    )
    assert fine.status_code == 404
