"""The audit log, for auditors and admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from hub.api.deps import get_store
from hub.api.problems import Problem
from hub.auth import audit_storage as audit_log
from hub.auth.guards import Principal, Role, require
from hub.auth.schemas import AuditEntryOut, AuditPage
from hub.storage import SqlStore

__all__ = ["router"]

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
async def read_audit(
    principal: Annotated[Principal, Depends(require(Role.AUDITOR))],
    store: Annotated[SqlStore, Depends(get_store)],
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=200, description="`alarm.` matches a prefix"),
    target: str | None = Query(None, max_length=200),
    before: int | None = Query(None, ge=1, description="id from `next_before` of the last page"),
    limit: int = Query(100, ge=1, le=1000),
) -> AuditPage:
    """Audit rows, newest first."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise Problem(422, "Invalid request", f"{name} needs a time zone (e.g. Z or +08:00)")
    entries = await audit_log.query(
        store,
        since=since,
        until=until,
        actor=actor,
        action=action,
        target=target,
        before_id=before,
        limit=limit,
    )
    items = [
        AuditEntryOut(
            id=e.id,
            at=e.at,
            actor=e.actor,
            action=e.action,
            target=e.target,
            remote_addr=e.remote_addr,
            details=dict(e.details),
        )
        for e in entries
    ]
    next_before = items[-1].id if len(items) == limit else None
    return AuditPage(items=items, next_before=next_before)
