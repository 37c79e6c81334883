"""API keys for machine integrations such as police dispatch (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from hub.api.deps import get_auth
from hub.api.problems import Problem
from hub.auth.guards import Principal, Role, client_addr, not_found, require
from hub.auth.schemas import ApiKeyIn, ApiKeyOut, NewApiKeyOut
from hub.auth.service import AccountError, Authenticator
from hub.auth.storage import ApiKeyRecord

__all__ = ["router"]

router = APIRouter(prefix="/api/apikeys", tags=["api keys"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Auth = Annotated[Authenticator, Depends(get_auth)]


def _out(record: ApiKeyRecord) -> ApiKeyOut:
    return ApiKeyOut(
        id=record.id,
        name=record.name,
        role=record.role,
        jurisdictions=list(record.jurisdictions),
        created_by=record.created_by,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
    )


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(principal: Admin, auth: Auth) -> list[ApiKeyOut]:
    """Every key, without secrets."""
    return [_out(k) for k in await auth.api_keys()]


@router.post("", response_model=NewApiKeyOut, status_code=201)
async def create_key(
    body: ApiKeyIn, request: Request, principal: Admin, auth: Auth
) -> NewApiKeyOut:
    """A new key; its token (`gw_<id>_<secret>`) is in this answer only."""
    try:
        created = await auth.create_api_key(
            body.name,
            body.role,
            body.jurisdictions,
            actor=principal.actor,
            remote_addr=client_addr(request),
        )
    except AccountError as exc:
        status = 409 if "exists" in str(exc) else 422
        raise Problem(status, "API key not created", str(exc)) from exc
    return NewApiKeyOut(**_out(created.record).model_dump(), token=created.token)


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: str, request: Request, principal: Admin, auth: Auth) -> Response:
    """Revoke a key at once."""
    if not await auth.revoke_api_key(
        key_id, actor=principal.actor, remote_addr=client_addr(request)
    ):
        raise not_found("API key")
    return Response(status_code=204)
