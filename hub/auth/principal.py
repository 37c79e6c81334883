"""Who is calling: roles and the `Principal` (subject, role, jurisdiction scope).

Kept apart from the HTTP layer so that services below it (authentication,
live view) can name a principal without importing FastAPI routes.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ACTOR_KINDS",
    "Principal",
    "Role",
    "check_actor",
    "cli_actor",
    "key_actor",
    "system_actor",
    "user_actor",
]

#: The one form of every actor in the audit log and alarm history:
#: `user:<username>` (a console user), `key:<api key name>` (an integration),
#: `system:<component>` (the hub itself: `system:auth`, `system:drill`,
#: `system:cli:<os user>` for the command line, ...).
ACTOR_KINDS = ("user", "key", "system")


class Role(StrEnum):
    """What a user or API key may do."""

    OPERATOR = "operator"  # alarm console: see, acknowledge, handle alarms
    DISPATCHER = "dispatcher"  # police/center dispatch integrations: receive and read alarms
    MAINTENANCE = "maintenance"  # device health, registry upkeep
    ADMIN = "admin"  # everything, including users and configuration
    AUDITOR = "auditor"  # reads the audit log
    DEPARTMENT = "department"  # a department: its own dispatched tasks only (report in, feed back)


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

    @property
    def actor(self) -> str:
        """How this caller is named in the audit log: `user:<name>` or `key:<name>`."""
        if self.via == "api_key":
            return key_actor(self.subject.removeprefix("key:"))
        return user_actor(self.subject)


def _actor(kind: str, name: str) -> str:
    if not name or not name.strip():
        raise ValueError(f"a {kind} actor needs a name")
    return f"{kind}:{name}"


def user_actor(username: str) -> str:
    """The audit actor of a console user: `user:<username>`."""
    return _actor("user", username)


def key_actor(name: str) -> str:
    """The audit actor of an API key: `key:<key name>`."""
    return _actor("key", name)


def system_actor(component: str) -> str:
    """The audit actor of the hub itself: `system:<component>`."""
    return _actor("system", component)


def cli_actor() -> str:
    """The audit actor of the command line: `system:cli:<os user>`."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return system_actor(f"cli:{who}")


def check_actor(actor: str) -> str:
    """Return `actor` if it has the one accepted form `<user|key|system>:<name>`, else raise."""
    kind, sep, name = actor.partition(":")
    if not sep or kind not in ACTOR_KINDS or not name.strip():
        raise ValueError(
            f"audit actor {actor!r} must be user:<name>, key:<name> or system:<component>"
        )
    return actor
