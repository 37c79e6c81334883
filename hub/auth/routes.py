"""Console login: sessions with cookies, the caller's identity, password change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from hub.api.deps import get_auth, get_settings
from hub.api.problems import Problem, problem_response
from hub.auth.guards import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    Role,
    client_addr,
    current_principal,
)
from hub.auth.schemas import Login, LoginOut, Me, PasswordChange
from hub.auth.service import AccountError, Authenticator, LoginRefused
from hub.config import Settings

__all__ = ["ANY_ROLE", "router"]

router = APIRouter(prefix="/api/auth", tags=["auth"])

#: Every role: for routes any authenticated caller may use.
ANY_ROLE = tuple(Role)


def _secure(request: Request, settings: Settings) -> bool:
    mode = settings.auth.cookie_secure
    if mode == "always":
        return True
    if mode == "never":
        return False
    return request.url.scheme == "https"


@router.post(
    "/login",
    response_model=LoginOut,
    responses={401: {"description": "wrong credentials"}, 429: {"description": "locked"}},
)
async def login(
    body: Login,
    request: Request,
    response: Response,
    auth: Annotated[Authenticator, Depends(get_auth)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> LoginOut | JSONResponse:
    """Check the password, open a session and set its cookies."""
    now = datetime.now(UTC)
    try:
        result = await auth.login(body.username, body.password, client_addr(request), now)
    except LoginRefused as exc:
        refused = problem_response(exc.status, "Login refused", exc.reason)
        if exc.retry_after_s is not None:
            refused.headers["Retry-After"] = str(exc.retry_after_s)
        return refused
    secure = _secure(request, settings)
    max_age = settings.auth.session_max_hours * 3600
    response.set_cookie(
        SESSION_COOKIE,
        result.session_token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    # Readable by the console's script, which echoes it in X-CSRF-Token; a
    # foreign page can neither read it nor make the browser send the header.
    response.set_cookie(
        CSRF_COOKIE,
        result.csrf_token,
        max_age=max_age,
        httponly=False,
        samesite="strict",
        secure=secure,
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    paths = await _scope(auth, result.user.jurisdictions)
    return LoginOut(
        username=result.user.username,
        display_name=result.user.display_name,
        role=Role(result.user.role),
        scope_paths=list(paths),
        via="session",
        must_change_password=result.user.must_change_password,
        csrf_token=result.csrf_token,
        expires_at=result.expires_at,
    )


async def _scope(auth: Authenticator, entries: tuple[str, ...]) -> tuple[str, ...]:
    async with auth.store.reading() as tx:
        return await auth.scope_paths(tx, entries)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    auth: Annotated[Authenticator, Depends(get_auth)],
) -> Response:
    """End the caller's session and clear its cookies."""
    token = request.cookies.get(SESSION_COOKIE)
    if token and principal.via == "session":
        await auth.logout(token, principal.actor, client_addr(request))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    return response


@router.get("/me", response_model=Me)
async def me(
    principal: Annotated[Principal, Depends(current_principal)],
    auth: Annotated[Authenticator, Depends(get_auth)],
) -> Me:
    """Who the caller is, with role and jurisdiction scope."""
    must_change = False
    display_name = ""
    if principal.via == "session":
        user = await auth.user(principal.subject)
        if user is not None:
            must_change = user.must_change_password
            display_name = user.display_name
    return Me(
        username=principal.subject,
        role=principal.role,
        scope_paths=list(principal.scope_paths),
        via=principal.via,
        must_change_password=must_change,
        display_name=display_name,
    )


@router.post("/password", status_code=204, response_class=Response)
async def change_password(
    body: PasswordChange,
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    auth: Annotated[Authenticator, Depends(get_auth)],
) -> Response:
    """Change one's own password (the current one is checked); other sessions end."""
    if principal.via != "session":
        raise Problem(403, "Forbidden", "API keys have no password")
    try:
        await auth.set_password(
            principal.subject,
            body.new_password,
            actor=principal.actor,
            remote_addr=client_addr(request),
            current_password=body.current_password,
        )
    except AccountError as exc:
        raise Problem(422, "Password not changed", str(exc)) from exc
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict")
    return response
