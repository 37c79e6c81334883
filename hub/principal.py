"""Who is calling: roles and the `Principal` (subject, role, jurisdiction scope).

Kept apart from the HTTP layer so that services below it (authentication,
live view) can name a principal without importing FastAPI routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Principal", "Role"]


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
