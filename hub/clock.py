"""The hub's one clock: the current time, timezone-aware UTC.

Services take a `Clock` argument defaulting to `utcnow`, so tests hand in a
clock they move by hand. Local time (Asia/Shanghai) exists only at the edge.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "utcnow"]

#: A source of the current time (timezone-aware UTC).
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)
