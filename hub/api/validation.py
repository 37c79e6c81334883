"""Request checks every route shares, made once before any route code runs.

Text with a NUL character is refused with 422 naming the field: PostgreSQL
cannot store or compare it (a query would fail with a server error), and no
operator or integrator means it. Path, query and JSON body fields are checked,
at any depth of the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection, Request

__all__ = ["NUL_MESSAGE", "reject_nul_text"]

NUL_MESSAGE = "must not contain a NUL character (\\u0000)"
_NUL = "\x00"


def _nul_paths(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Where in a decoded JSON document a NUL character occurs (keys included)."""
    if isinstance(value, str):
        if _NUL in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if _NUL in key:
                yield (*path, key)
            yield from _nul_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, (*path, index))


async def _body_paths(request: Request) -> list[tuple[str | int, ...]]:
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return []
    if "json" not in request.headers.get("content-type", ""):
        return []
    body = await request.body()  # kept by the request: the route reads it again
    if b"\\u0000" not in body and b"\x00" not in body:
        return []
    try:
        document = json.loads(body)
    except ValueError:
        return []  # not JSON: the route's own validation answers it
    return list(_nul_paths(document, ("body",)))


async def reject_nul_text(connection: HTTPConnection) -> None:
    """Refuse a request (or WebSocket handshake) with NUL in any text it carries."""
    found: list[tuple[str | int, ...]] = [
        ("path", name)
        for name, value in connection.path_params.items()
        if isinstance(value, str) and _NUL in value
    ]
    found.extend(
        ("query", name)
        for name, value in connection.query_params.multi_items()
        if _NUL in name or _NUL in value
    )
    if isinstance(connection, Request):
        found.extend(await _body_paths(connection))
    if found:
        unique = list(dict.fromkeys(found))
        raise RequestValidationError(
            [{"loc": loc, "msg": NUL_MESSAGE, "type": "string_nul"} for loc in unique]
        )
