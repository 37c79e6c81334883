"""One login-failure budget per camera, shared by every protocol that logs in. No I/O.

Many cameras lock the client's address after 5-7 refused logins. ONVIF, RTSP
probes, snapshots (and GB/T 28181) all log in with the same stored login, so
they share one budget per camera:

- every refused login counts, whoever tried it;
- after `refusals_to_block` refusals in a row the camera is `auth_failed`: no
  protocol tries that login again for `retry_after_s`, except once per
  `retry_after_s` (the first caller that asks after that time gets the one try);
- a changed stored login (another `login_version`) starts the budget afresh;
- an accepted login clears it.

Time is always passed in; the budget never reads a clock. It is not
thread-safe: call it from one event loop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LoginBudget", "LoginPolicy", "LoginState", "LoginStatus", "login_version"]


class LoginState(StrEnum):
    """Where a camera's stored login stands."""

    #: Never refused since the last acceptance or change.
    OK = "ok"
    #: Refused, fewer times than the budget allows: still tried.
    FAILING = "failing"
    #: Refused too often: tried at most once per retry interval or after a change.
    AUTH_FAILED = "auth_failed"


class LoginPolicy(BaseModel):
    """How many refusals a camera's login may collect, and how often it is retried then."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refusals_to_block: int = Field(
        3,
        ge=1,
        le=20,
        title="Refusals before auth_failed",
        description="Refused logins in a row (any protocol) before the camera is auth_failed.",
    )
    retry_after_s: float = Field(
        3600.0,
        ge=60,
        le=7 * 86_400,
        title="Retry interval (s)",
        description="An auth_failed camera's login is tried again at most this often.",
    )


@dataclass(frozen=True, slots=True)
class LoginStatus:
    """A camera's login budget as the health API shows it."""

    device_id: str
    state: LoginState
    refusals: int = 0
    last_refused_at: datetime | None = None
    last_source: str | None = None
    #: When an auth_failed camera's login will next be tried (None: any time).
    retry_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (times as datetimes for the API's encoder)."""
        return {
            "state": self.state.value,
            "refusals": self.refusals,
            "last_refused_at": self.last_refused_at,
            "last_source": self.last_source,
            "retry_at": self.retry_at,
        }


def login_version(stored: bytes | None) -> str:
    """An opaque version of a device's stored (encrypted) login: it changes whenever the
    login is stored again, and reveals nothing of it."""
    if stored is None:
        return "none"
    return hashlib.sha256(stored).hexdigest()[:32]


@dataclass(slots=True)
class _Entry:
    version: str
    refusals: int = 0
    last_refused_at: datetime | None = None
    last_source: str | None = None
    retry_at: datetime | None = None


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None:
        raise ValueError("login budget times must be timezone-aware")


class LoginBudget:
    """The login-failure budgets of every camera."""

    def __init__(self, policy: LoginPolicy | None = None) -> None:
        self.policy = policy or LoginPolicy()
        self._entries: dict[str, _Entry] = {}

    def _entry(self, device_id: str, version: str) -> _Entry | None:
        entry = self._entries.get(device_id)
        if entry is not None and entry.version != version:
            # The stored login changed: the old refusals say nothing about the new one.
            del self._entries[device_id]
            return None
        return entry

    def may_try(self, device_id: str, login_version: str, at: datetime) -> bool:
        """True if a protocol may log in to `device_id` with its stored login now.

        While auth_failed this answers True once per retry interval and reserves
        that try (the next caller waits for the next interval).
        """
        _require_aware(at)
        entry = self._entry(device_id, login_version)
        if entry is None or entry.refusals < self.policy.refusals_to_block:
            return True
        if entry.retry_at is not None and at < entry.retry_at:
            return False
        entry.retry_at = at + timedelta(seconds=self.policy.retry_after_s)
        return True

    def refused(self, device_id: str, login_version: str, at: datetime, source: str) -> LoginStatus:
        """Count one refused login (by `source`: onvif, rtsp_probe, snapshot, ...)."""
        _require_aware(at)
        entry = self._entry(device_id, login_version)
        if entry is None:
            entry = self._entries[device_id] = _Entry(login_version)
        entry.refusals += 1
        entry.last_refused_at = at
        entry.last_source = source
        if entry.refusals >= self.policy.refusals_to_block:
            entry.retry_at = at + timedelta(seconds=self.policy.retry_after_s)
        return self.status(device_id)

    def accepted(self, device_id: str) -> bool:
        """The stored login worked: clear the budget. True if it had refusals."""
        return self._entries.pop(device_id, None) is not None

    def status(self, device_id: str) -> LoginStatus:
        """Where `device_id`'s login stands now."""
        entry = self._entries.get(device_id)
        if entry is None:
            return LoginStatus(device_id, LoginState.OK)
        blocked = entry.refusals >= self.policy.refusals_to_block
        return LoginStatus(
            device_id,
            LoginState.AUTH_FAILED if blocked else LoginState.FAILING,
            refusals=entry.refusals,
            last_refused_at=entry.last_refused_at,
            last_source=entry.last_source,
            retry_at=entry.retry_at if blocked else None,
        )

    def blocked_reason(self, device_id: str) -> str:
        """Why a protocol does not try `device_id`'s login now (for its error message)."""
        status = self.status(device_id)
        retry = status.retry_at.isoformat() if status.retry_at else "later"
        return (
            f"the camera refused its stored login {status.refusals} times in a row "
            f"(last by {status.last_source}); not tried again before {retry} "
            "or until the stored login is changed"
        )

    def troubled(self) -> list[LoginStatus]:
        """Every camera whose login was refused since it last worked."""
        return [self.status(device_id) for device_id in sorted(self._entries)]
