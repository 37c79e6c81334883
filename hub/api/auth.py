"""Who is calling: the `Principal` every route depends on, and role checks.

Each route declares the roles it admits with `Depends(require(Role.OPERATOR, …))`
and receives the caller's `Principal`. Data is filtered by the principal's
jurisdiction scope (`Principal.scope_paths`, materialized paths such as
`/150102/150102001/`): a record outside the scope is answered as 404, never 403,
so its existence does not leak.

How a caller is authenticated (session cookie, API key) lives in
`current_principal`; tests of other features override that one dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request

from hub.api.problems import Problem

__all__ = [
    "Principal",
    "Role",
    "current_principal",
    "not_found",
    "require",
]


class Role(StrEnum):
    """What a user or API key may do."""

    OPERATOR = "operator"  # alarm console: see, acknowledge, handle alarms
    DISPATCHER = "dispatcher"  # police/center dispatch integrations: receive and read alarms
    MAINTENANCE = "maintenance"  # device health, registry upkeep
    ADMIN = "admin"  # everything, including users and configuration
    AUDITOR = "auditor"  # reads the audit log


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and the jurisdiction subtrees it may see."""

    subject: str
    role: Role
    scope_paths: tuple[str, ...]
    #: "session" (browser), "api_key" (integration)
    via: str = "session"
    remote_addr: str | None = None

    @property
    def sees_everything(self) -> bool:
        """True for a scope rooted at the whole tree (`/`)."""
        return "/" in self.scope_paths

    def can_see(self, jurisdiction_path: str | None) -> bool:
        """True if a record at `jurisdiction_path` lies within the caller's scope.

        A record with no jurisdiction is visible only to callers who see everything.
        """
        if self.sees_everything:
            return True
        if jurisdiction_path is None:
            return False
        return any(jurisdiction_path.startswith(prefix) for prefix in self.scope_paths)


async def current_principal(request: Request) -> Principal:
    """The authenticated caller; 401 when there is none."""
    resolver = getattr(request.app.state, "authenticate", None)
    if resolver is None:
        raise Problem(401, "Not authenticated", "no authentication is configured")
    principal: Principal | None = await resolver(request)
    if principal is None:
        raise Problem(401, "Not authenticated", "log in or send an API key")
    return principal


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency admitting only `roles` (admin is always admitted); 403 otherwise."""
    allowed = frozenset(roles) | {Role.ADMIN}

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if principal.role not in allowed:
            raise Problem(403, "Forbidden", f"role {principal.role.value} may not do this")
        return principal

    return dependency


def not_found(what: str = "resource") -> Problem:
    """The 404 answered both for missing records and for records outside the scope."""
    return Problem(404, "Not Found", f"no such {what}")
