"""The JSON body of one task revision: what a department's sink receives and the change
log carries (schema: adapters/sinks/schemas/task.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alarms.tasks import Task, TaskHistoryEntry
from hub.alarms.storage import StoredAlarm

__all__ = ["task_dict", "task_payload"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def task_dict(task: Task) -> dict[str, Any]:
    """A task as JSON (sink bodies, the change log)."""
    return {
        "id": str(task.id),
        "alarm_id": str(task.alarm_id),
        "department_id": task.department_id,
        "priority": task.priority.level,
        "state": task.state.value,
        "instructions": task.instructions,
        "dispatched_at": _iso(task.dispatched_at),
        "report_in_due": _iso(task.report_in_due),
        "on_site_due": _iso(task.on_site_due),
        "feedback_due": _iso(task.feedback_due),
        "reported_in_at": _iso(task.reported_in_at),
        "on_site_at": _iso(task.on_site_at),
        "feedback_at": _iso(task.feedback_at),
        "finished_at": _iso(task.finished_at),
        "feedback": task.feedback,
        "escalation_level": task.escalation_level,
        "sent_back": task.sent_back,
        "missed": sorted(stage.value for stage in task.missed),
        "revision": task.revision,
    }


def task_payload(task: Task, entry: TaskHistoryEntry, stored: StoredAlarm) -> dict[str, Any]:
    """The body every sink (and the change log) carries for one task revision."""
    alarm = stored.alarm
    location = stored.details.get("location") if isinstance(stored.details, dict) else None
    return {
        "event": f"task.{entry.action.value}",
        "task_id": str(task.id),
        "alarm_id": str(alarm.id),
        "department_id": task.department_id,
        "revision": task.revision,
        "task": task_dict(task),
        "alarm": {
            "id": str(alarm.id),
            "type": alarm.type,
            "priority": alarm.priority.level,
            "state": alarm.state.value,
            "title": alarm.title,
            "sop": alarm.sop,
            "device_id": alarm.device_id,
            "jurisdiction": alarm.jurisdiction,
            "opened_at": _iso(alarm.opened_at),
            "is_drill": alarm.is_drill,
        },
        "location": location if isinstance(location, dict) else None,
        "change": {
            "at": _iso(entry.at),
            "actor": entry.actor,
            "action": entry.action.value,
            "from_state": entry.from_state.value if entry.from_state else None,
            "to_state": entry.to_state.value,
            "note": entry.note,
            "details": dict(entry.details),
        },
    }
