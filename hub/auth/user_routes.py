"""User administration (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from hub.api.deps import get_auth
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, client_addr, not_found, require
from hub.auth.schemas import UserIn, UserOut, UserPatch
from hub.auth.service import AccountError, Authenticator
from hub.auth.storage import UserRecord

__all__ = ["router", "user_out"]

router = APIRouter(prefix="/api/users", tags=["users"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Auth = Annotated[Authenticator, Depends(get_auth)]


def user_out(user: UserRecord) -> UserOut:
    """A user as the API shows it."""
    return UserOut(
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        jurisdictions=list(user.jurisdictions),
        disabled=user.disabled,
        locked_until=user.locked_until,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


@router.get("", response_model=list[UserOut])
async def list_users(principal: Admin, auth: Auth) -> list[UserOut]:
    """Every user."""
    return [user_out(u) for u in await auth.users()]


@router.post("", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, request: Request, principal: Admin, auth: Auth) -> UserOut:
    """Add a user; 409 when the name is taken, 422 for a weak password."""
    try:
        user = await auth.create_user(
            body.username,
            body.password,
            body.role,
            body.jurisdictions,
            actor=principal.actor,
            remote_addr=client_addr(request),
            must_change=body.must_change_password,
            display_name=body.display_name,
        )
    except AccountError as exc:
        status = 409 if "exists" in str(exc) else 422
        raise Problem(status, "User not created", str(exc)) from exc
    return user_out(user)


@router.get("/{username}", response_model=UserOut)
async def get_user(username: str, principal: Admin, auth: Auth) -> UserOut:
    """One user."""
    user = await auth.user(username)
    if user is None:
        raise not_found("user")
    return user_out(user)


@router.patch("/{username}", response_model=UserOut)
async def update_user(
    username: str, body: UserPatch, request: Request, principal: Admin, auth: Auth
) -> UserOut:
    """Change role, scope, display name, disabled flag, unlock, or reset the password."""
    if await auth.user(username) is None:
        raise not_found("user")
    addr = client_addr(request)
    try:
        if body.password is not None:
            await auth.set_password(
                username, body.password, actor=principal.actor, remote_addr=addr, must_change=True
            )
        user = await auth.update_user(
            username,
            actor=principal.actor,
            remote_addr=addr,
            role=body.role,
            jurisdictions=body.jurisdictions,
            disabled=body.disabled,
            display_name=body.display_name,
            unlock=body.unlock,
        )
    except AccountError as exc:
        raise Problem(422, "User not changed", str(exc)) from exc
    return user_out(user)
