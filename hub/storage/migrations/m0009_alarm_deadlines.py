"""Schema 9: the SLA deadlines an alarm opened with, kept apart from the running ones.

Escalation moves `ack_due`/`resolve_due` on; `ack_due_first`/`resolve_due_first`
never move, so an ignored alarm shows how long it is overdue. Alarms never
escalated take theirs from the running deadlines; for escalated ones the first
deadline is no longer known and stays empty. Finished alarms lose their running
deadlines.

Also: failed logins under names that are no account (or a disabled one) are
counted like an account's, so after a lockout an unknown name gets the same
answer as an existing one and user names cannot be probed.
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
        """CREATE TABLE login_throttle (
            username TEXT PRIMARY KEY,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until {TS},
            updated_at {TS} NOT NULL
        )""",
        "CREATE INDEX login_throttle_updated ON login_throttle (updated_at)",
    ],
)
