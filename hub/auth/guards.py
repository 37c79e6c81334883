"""Who is calling: the `Principal` every route depends on, and role checks.

Each route declares the roles it admits with `Depends(require(Role.OPERATOR, …))`
and receives the caller's `Principal`. Data is filtered by the principal's
jurisdiction scope (`Principal.scope_paths`, materialized paths such as
`/150102/150102001/`): a record outside the scope is answered as 404, never 403,
so its existence does not leak.

How a caller is authenticated lives behind `current_principal` (tests of other
features override that one dependency): `authenticate_connection` accepts

- a session cookie (`gw_session`, HttpOnly, SameSite=Strict) from the console;
  unsafe methods must also carry the session's CSRF token in `X-CSRF-Token`
  (the console reads it from the `gw_csrf` cookie, double-submit style);
- an API key, `Authorization: Bearer gw_<id>_<secret>`, for machine
  integrations (no cookie, so no CSRF check).

Both work for HTTP routes and WebSocket handshakes (`current_principal` takes an
`HTTPConnection`). WebSocket handshakes from a foreign `Origin` are refused for
every route by `OriginGuard`.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request, WebSocketException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.api.problems import Problem
from hub.auth.principal import Principal, Role

if TYPE_CHECKING:
    from hub.auth.service import Authenticator

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "OriginGuard",
    "Principal",
    "Role",
    "authenticate_connection",
    "client_addr",
    "current_principal",
    "metrics_access",
    "not_found",
    "origin_allowed",
    "require",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "gw_session"
CSRF_COOKIE = "gw_csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What an account that must change its password may still do.
_PASSWORD_CHANGE_PATHS = frozenset({"/api/auth/me", "/api/auth/logout", "/api/auth/password"})


def client_addr(conn: HTTPConnection) -> str | None:
    """The caller's address as the server saw it (after uvicorn's proxy-header handling)."""
    return conn.client.host if conn.client else None


def _sha256(token: str) -> str:
    # The same digest `hub.auth.service.token_hash` stores for the session's CSRF token.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _authenticator(conn: HTTPConnection) -> Authenticator | None:
    services = getattr(conn.app.state, "services", None)
    auth: Authenticator | None = getattr(services, "auth", None)
    return auth


async def authenticate_connection(conn: HTTPConnection) -> Principal | None:
    """The caller of an HTTP request or WebSocket handshake, or None (401).

    Raises a 403 problem for a cookie-authenticated unsafe request without the
    session's CSRF token, and for accounts that must change their password first.
    """
    auth = _authenticator(conn)
    if auth is None:
        return None
    now = datetime.now(UTC)
    addr = client_addr(conn)
    header = conn.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return await auth.api_key(token.strip(), addr, now)
    cookie = conn.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found = await auth.session(cookie, addr, now)
    if found is None:
        return None
    method = conn.scope.get("method")
    if conn.scope["type"] == "http" and method not in _SAFE_METHODS:
        sent = conn.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(_sha256(sent), found.csrf_hash):
            raise Problem(403, "CSRF check failed", f"send the {CSRF_HEADER} header of the session")
    if found.must_change_password and conn.url.path not in _PASSWORD_CHANGE_PATHS:
        raise Problem(403, "Password change required", "change your password first")
    return found.principal


def _refuse(connection: HTTPConnection, status: int, title: str, detail: str) -> Exception:
    """A problem for HTTP; for a WebSocket handshake, a close with policy violation (1008)
    whose reason starts with the HTTP status it stands for."""
    if connection.scope["type"] == "websocket":
        return WebSocketException(code=1008, reason=f"{status} {title}")
    return Problem(status, title, detail)


async def current_principal(connection: HTTPConnection) -> Principal:
    """The authenticated caller; 401 when there is none."""
    resolver = getattr(connection.app.state, "authenticate", None)
    if resolver is None:
        raise _refuse(connection, 401, "Not authenticated", "no authentication is configured")
    try:
        principal: Principal | None = await resolver(connection)
    except Problem as exc:
        raise _refuse(connection, exc.status, exc.title, exc.detail) from exc
    if principal is None:
        raise _refuse(connection, 401, "Not authenticated", "log in or send an API key")
    return principal


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only `roles` (admin is always admitted); 403 otherwise."""
    allowed = frozenset(roles) | {Role.ADMIN}

    async def dependency(
        connection: HTTPConnection,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if principal.role not in allowed:
            detail = f"role {principal.role.value} may not do this"
            raise _refuse(connection, 403, "Forbidden", detail)
        return principal

    return dependency


def not_found(what: str = "resource") -> Problem:
    """The 404 answered both for missing records and for records outside the scope."""
    return Problem(404, "Not Found", f"no such {what}")


def _loopback(addr: str | None) -> bool:
    if addr is None:
        return False
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


async def metrics_access(request: Request) -> None:
    """Admit /metrics from loopback (when configured) or for admin/maintenance callers."""
    services = getattr(request.app.state, "services", None)
    settings = getattr(services, "settings", None)
    local_ok = settings is not None and settings.auth.metrics_from_loopback
    if local_ok and _loopback(client_addr(request)):
        return
    # Called here rather than as a sub-dependency so loopback scrapers never hit a 401;
    # looked up through the overrides so tests acting as a principal still apply.
    resolve = request.app.dependency_overrides.get(current_principal, current_principal)
    takes_connection = bool(inspect.signature(resolve).parameters)
    principal: Principal = await (resolve(request) if takes_connection else resolve())
    if principal.role not in (Role.ADMIN, Role.MAINTENANCE):
        raise Problem(403, "Forbidden", f"role {principal.role.value} may not read metrics")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(origin: str | None, host: str | None, extra: Iterable[str] = ()) -> bool:
    """True when a WebSocket handshake's Origin is the hub itself or explicitly allowed.

    A handshake without Origin (not a browser: a script or integration) is allowed;
    it still has to authenticate.
    """
    if origin is None:
        return True
    normalized = origin.strip().lower()
    if normalized in {_origin_of(e) for e in extra}:
        return True
    if not host:
        return False
    parts = urlsplit(normalized)
    return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()


class OriginGuard:
    """ASGI middleware refusing cross-origin WebSocket handshakes (403) on every route.

    Browsers send cookies with a WebSocket handshake whatever page opened it
    (there is no CORS for WebSockets), so a foreign page could otherwise read
    the alarm stream with the operator's session.
    """

    def __init__(self, app: ASGIApp, extra_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.extra_origins = tuple(extra_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the handshake, then pass through."""
        if scope["type"] == "websocket":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            origin = headers.get("origin")
            if not origin_allowed(origin, headers.get("host"), self.extra_origins):
                log.warning("refused a WebSocket handshake from origin %s", origin)
                # Closing before accepting makes the server answer the handshake 403.
                await send({"type": "websocket.close", "code": 1008, "reason": "origin"})
                return
        await self.app(scope, receive, send)
