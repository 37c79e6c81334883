"""Request and response bodies of logins, users, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub.auth.principal import Role

__all__ = [
    "ApiKeyIn",
    "ApiKeyOut",
    "AuditEntryOut",
    "AuditPage",
    "Login",
    "LoginOut",
    "Me",
    "NewApiKeyOut",
    "PasswordChange",
    "UserIn",
    "UserOut",
    "UserPatch",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_Body):
    """User name and password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class Me(BaseModel):
    """The caller as the console shows it."""

    username: str
    role: Role
    scope_paths: list[str]
    via: str
    must_change_password: bool = False
    display_name: str = ""


class LoginOut(Me):
    """A new session; `csrf_token` goes in X-CSRF-Token on every write."""

    csrf_token: str
    expires_at: datetime


class PasswordChange(_Body):
    """Change one's own password."""

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class UserIn(_Body):
    """A new user (admin only)."""

    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    role: Role
    jurisdictions: list[str] = Field(
        min_length=1, description="Jurisdiction codes the user sees, or ['/'] for everything."
    )
    display_name: str = Field("", max_length=128)
    must_change_password: bool = True


class UserPatch(_Body):
    """Changes to a user; omitted fields stay as they are."""

    role: Role | None = None
    jurisdictions: list[str] | None = Field(None, min_length=1)
    disabled: bool | None = None
    display_name: str | None = Field(None, max_length=128)
    unlock: bool = False
    password: str | None = Field(
        None, min_length=1, max_length=256, description="Reset; the user must change it."
    )


class UserOut(BaseModel):
    """A user as admins see it (never the hash)."""

    username: str
    display_name: str
    role: str
    jurisdictions: list[str]
    disabled: bool
    locked_until: datetime | None
    must_change_password: bool
    created_at: datetime
    last_login_at: datetime | None


class ApiKeyIn(_Body):
    """A new API key for a machine integration."""

    name: str = Field(min_length=2, max_length=64)
    role: Role
    jurisdictions: list[str] = Field(min_length=1)


class ApiKeyOut(BaseModel):
    """An API key without its secret."""

    id: str
    name: str
    role: str
    jurisdictions: list[str]
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewApiKeyOut(ApiKeyOut):
    """A created key: `token` is shown this once."""

    token: str


class AuditEntryOut(BaseModel):
    """One audit row."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    remote_addr: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    """Audit rows, newest first; pass `next_before` as `before` for the next page."""

    items: list[AuditEntryOut]
    next_before: int | None
