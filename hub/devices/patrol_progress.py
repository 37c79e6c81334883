"""How far a patrol pass has got: counts the API, the CLI and the console show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["PatrolProgress"]


@dataclass(slots=True)
class PatrolProgress:
    """How far a patrol pass has got."""

    run_id: int | None
    trigger: str
    started_at: datetime
    total: int
    done: int = 0
    failed: int = 0
    degraded: int = 0
    finished_at: datetime | None = None
    transitions: int = 0
    events: int = 0
    #: Cameras this pass found not online: (device id, observed, reason), capped.
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        """True until the pass has finished."""
        return self.finished_at is None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "run_id": self.run_id,
            "trigger": self.trigger,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "running": self.running,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "degraded": self.degraded,
            "transitions": self.transitions,
            "events": self.events,
        }
