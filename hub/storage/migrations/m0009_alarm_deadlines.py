"""Schema 9: the SLA deadlines an alarm opened with, kept apart from the running ones.

Escalation moves `ack_due`/`resolve_due` on; `ack_due_first`/`resolve_due_first`
never move, so an ignored alarm shows how long it is overdue. Alarms never
escalated take theirs from the running deadlines; for escalated ones the first
deadline is no longer known and stays empty. Finished alarms lose their running
deadlines.
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=9,
    name="alarm_deadlines",
    statements=[
        "ALTER TABLE alarms ADD COLUMN ack_due_first {TS}",
        "ALTER TABLE alarms ADD COLUMN resolve_due_first {TS}",
        """UPDATE alarms SET ack_due_first = ack_due, resolve_due_first = resolve_due
            WHERE escalation_level = 0""",
        """UPDATE alarms SET ack_due = NULL, resolve_due = NULL
            WHERE state IN ('resolved', 'closed', 'false_alarm')""",
    ],
)
