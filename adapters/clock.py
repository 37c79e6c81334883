"""The adapters' clock: the current time, timezone-aware UTC.

Adapters may not import the hub, so they share this helper (the hub's own is
`hub.clock`, which gives the same time). I/O modules take a clock argument
defaulting to `utcnow`, so tests hand in a fake one.
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
