"""What authentication hands back: a refused login, a session started, the principal
behind a session, and a new API key (its secret is shown once, never stored).

Plain types of `hub.auth.service`, read by the auth routes and guards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.auth import storage as repo
from hub.auth.principal import Principal


class LoginRefused(Exception):
    """A login that did not succeed; `status` is 401, or 429 while the account is locked."""

    def __init__(self, status: int, reason: str, retry_after_s: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A new session: the cookie token and CSRF token go to the browser once."""

    session_token: str
    csrf_token: str
    expires_at: datetime
    user: repo.UserRecord


@dataclass(frozen=True, slots=True)
class SessionPrincipal:
    """A caller authenticated by session cookie, with what CSRF checks need."""

    principal: Principal
    csrf_hash: str
    must_change_password: bool
    session_id: str


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A created key; `token` is shown once and never stored."""

    record: repo.ApiKeyRecord
    token: str
