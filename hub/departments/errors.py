"""What the department service refuses, each answered with its own HTTP status."""

from __future__ import annotations

__all__ = ["DepartmentError", "TaskConflict", "TaskNotFound"]


class TaskNotFound(LookupError):
    """No such task or alarm, or one the caller may not see (answered as 404)."""


class DepartmentError(ValueError):
    """Input the service refuses, with a message for the caller (answered as 422)."""


class TaskConflict(Exception):
    """A change that collides with the stored state (answered as 409)."""
